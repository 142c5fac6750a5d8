"""CifarCNN training throughput: one device against MirroredStrategy, side by side.

    python benchmarks/multi_device.py                      # 2 logical CPUs (any machine)
    python benchmarks/multi_device.py --gpus               # every GPU of this machine

Both runs use the same global batch (``--batch``): one device trains on it directly, the
strategy with ``--batch / replicas`` images per replica. Throughput is training images per
second of an epoch, timed by a Keras callback, the median over the epochs after the first
(which also traces the step) of ``--repeats`` interleaved fits. On CPUs, logical devices
share the same cores, so this shows the strategy's overhead, not a speed-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="synthetic 32x32 training images")
    p.add_argument("--devices", type=int, default=2, help="logical CPU devices (CPU mode)")
    p.add_argument("--gpus", action="store_true", help="use the machine's GPUs instead")
    p.add_argument("--filters", type=int, nargs="+", default=[16, 32, 32])
    p.add_argument("--batch", type=int, default=128, help="global batch size")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()

    import tensorflow as tf

    if args.gpus:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    else:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(args.devices)]
        )
        devices = [f"/cpu:{i}" for i in range(args.devices)]
    import keras

    from transferkit.extractors import CifarCNN, cifar_cnn

    epoch_times: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: object = None) -> None:
            epoch_times.append(time.perf_counter() - self.t)

    fit_model = cifar_cnn.fit_model

    def timed_fit_model(model, strategy, *a, callbacks=(), **kw):  # type: ignore[no-untyped-def]
        return fit_model(model, strategy, *a, callbacks=[*callbacks, EpochTimer()], **kw)

    cifar_cnn.fit_model = timed_fit_model  # this script only: time each epoch of fit

    strategy = tf.distribute.MirroredStrategy(devices)
    k = strategy.num_replicas_in_sync
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, size=args.n)
    x = rng.integers(0, 256, size=(args.n, 32, 32, 3), dtype=np.uint8)
    base = dict(preset="fast", conv_filters=tuple(args.filters), random_state=0)
    runs = {
        "1 device": dict(batch_size=args.batch),
        f"MirroredStrategy x{k}": dict(batch_size=args.batch // k, strategy=strategy),
    }
    print(f"{args.n} images 32x32, conv_filters={tuple(args.filters)}, global batch "
          f"{args.batch}, {os.cpu_count()} CPU cores, load {os.getloadavg()[0]:.1f}, "
          f"devices {devices}", flush=True)
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, kw in runs.items():
            epoch_times.clear()
            CifarCNN(**base, **kw, epochs=args.epochs).fit(x, y)
            n_train = args.n - args.n % (k if "strategy" in kw else 1)  # as fit keeps them
            steady = epoch_times[1:]
            rates[name].extend(n_train / t for t in steady)
            print(f"  {name}: first epoch {epoch_times[0]:.1f} s, then "
                  + ", ".join(f"{n_train / t:.0f}" for t in steady) + " images/s", flush=True)
    print(f"\n{'run':<24}{'images/s (median)':>18}{'ratio':>8}")
    ref = statistics.median(next(iter(rates.values())))
    for name, values in rates.items():
        med = statistics.median(values)
        print(f"{name:<24}{med:>18.0f}{med / ref:>8.2f}")


if __name__ == "__main__":
    main()
