"""Distributed extraction against one process, side by side, in one run.

The same images (the first ``--n`` of the bundled CIFAR-10 sample, real 32x32 photos)
and the same backbone (VGG-16, ``weights=None``: random weights, as the ImageNet ones
cannot be downloaded on the development machines; the compute is the same) are
extracted into a fresh feature cache:

(a) in this process: ``FeatureCache.extract`` (TensorFlow uses every core);
(b) with ``extract_distributed`` on a local Dask cluster of ``--workers`` worker
    processes, one thread and ``cores / workers`` TensorFlow threads each, with
    ``--workers`` shards and with twice as many.

Two kinds of timings:

* cold, as a first call pays it: importing TensorFlow and building the model (in this
  process for (a); in every worker, plus starting the cluster, for (b));
* warm, the steady state of a long job: the model built already (for (b) a persistent
  cluster whose workers keep their model between jobs). Warm variants take turns,
  round by round, so the machine's other load affects them alike; medians.

Each timing covers extraction, the cache writes and, for (b), sending the images,
the shards and the merge. It reports images/s, the ratio to (a), the largest
difference between the features of (a) and (b), and the merge alone (metadata only).

    python benchmarks/distributed_extract.py                 # ~2.5 min on 2 cores
    python benchmarks/distributed_extract.py --n 2000 --rounds 1

On a machine with few cores the workers share the cores (a) already uses, so expect
no speed-up there; the run shows what the overheads cost.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from statistics import median

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4000, help="images (at most 5000)")
    parser.add_argument("--batch", type=int, default=32, help="batch size")
    parser.add_argument("--workers", type=int, default=2, help="local Dask worker processes")
    parser.add_argument("--rounds", type=int, default=2, help="warm rounds (median)")
    args = parser.parse_args()

    import numpy as np
    from distributed import Client, LocalCluster

    from transferkit import FeatureCache, VGG16Extractor
    from transferkit.datasets import load_cifar10_sample
    from transferkit.distributed import extract_distributed, merge_shards, plan_shards
    from transferkit.distributed._dask import cpu_count as _cpu_count

    (x, _), _ = load_cifar10_sample()
    x = np.ascontiguousarray(x[: args.n])
    n, workers, cores = len(x), args.workers, _cpu_count()
    tf_threads = max(1, cores // workers)
    tmp = Path(tempfile.mkdtemp(prefix="tk-dist-bench-"))
    counter = iter(range(10**6))

    def vgg() -> VGG16Extractor:
        return VGG16Extractor(weights=None, batch_size=args.batch)

    def fresh() -> FeatureCache:
        return FeatureCache(tmp / f"c{next(counter)}.h5")

    print(f"{n} CIFAR-10 images 32x32, VGG-16 (weights=None, block5_pool, avg) -> 512 "
          f"features, batch {args.batch}; {cores} cores; {workers} Dask workers x 1 thread, "
          f"TF {tf_threads} thread(s) each")

    # -- cold ------------------------------------------------------------------------
    single_extractor = vgg()
    t = time.perf_counter()
    reference = fresh().extract(single_extractor, x)
    cold = {"one": time.perf_counter() - t}
    t = time.perf_counter()
    extract_distributed(vgg(), x, fresh(), n_shards=workers, n_workers=workers,
                        threads_per_worker=1, tf_threads=tf_threads)
    cold["dist"] = time.perf_counter() - t

    # -- warm ------------------------------------------------------------------------
    t = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=logging.ERROR,
                      env={"TF_NUM_INTRAOP_THREADS": str(tf_threads)}) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(workers)
        start_s = time.perf_counter() - t
        # Build the model in every worker (it is kept for later jobs of the same model).
        extract_distributed(vgg(), x[: args.batch * workers], fresh(), client=client,
                            n_shards=workers, tf_threads=tf_threads)
        variants = {"one": None, "dist": workers, "dist2": 2 * workers}
        warm: dict[str, list[float]] = {k: [] for k in variants}
        diffs: dict[str, float] = {}
        merge_s = None
        for _ in range(args.rounds):
            for name, n_shards in variants.items():
                cache = fresh()
                t = time.perf_counter()
                if n_shards is None:
                    cache.extract(single_extractor, x)
                else:
                    out = extract_distributed(vgg(), x, cache, client=client,
                                              n_shards=n_shards, tf_threads=tf_threads)
                warm[name].append(time.perf_counter() - t)
                if n_shards is not None:
                    diffs[name] = float(np.max(np.abs(out - reference)))
                    if merge_s is None:
                        plan = plan_shards(vgg(), x, cache)
                        t = time.perf_counter()
                        merge_shards(cache, plan)
                        merge_s = time.perf_counter() - t

    def line(label: str, wall: float, base: float, diff: str) -> str:
        return f"{label:<44} {wall:7.1f} {n / wall:9.1f} {base / wall:6.2f}x {diff:>10}"

    print(f"\n{'variant':<44} {'wall s':>7} {'images/s':>9} {'vs one':>7} {'max|diff|':>10}")
    print("cold (TF import + model build included)")
    print(line("  one process", cold["one"], cold["one"], "-"))
    print(line(f"  dask, {workers} shards (own local cluster)", cold["dist"], cold["one"], "-"))
    print(f"warm (models built; median of {args.rounds} interleaved rounds)")
    base = median(warm["one"])
    print(line("  one process", base, base, "0"))
    for name, n_shards in list(variants.items())[1:]:
        print(line(f"  dask, {n_shards} shards", median(warm[name]), base, f"{diffs[name]:.2g}"))
    print(f"\nstarting a local cluster of {workers} worker processes: {start_s:.1f} s")
    print(f"merge of {workers} shards alone (metadata only): {1000 * merge_s:.0f} ms")


if __name__ == "__main__":
    main()
