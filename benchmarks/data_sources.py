"""Peak memory of extraction from streamed sources: flat in the number of images.

Each source yields the same synthetic 32x32 images (a function of the index, so every
pass gives the same ones) and is extracted through ``FeatureCache.extract`` into a fresh
cache, each run in its own subprocess so that ``ru_maxrss`` is that run's peak RSS:

* ``tf.data``: ``tf.data.Dataset.range(n).map(make).batch(256)`` (scanned once for the
  key, then read again for the features, each image checked against the scan);
* ``PyDataset``: a ``keras.utils.PyDataset`` of 256-image batches;
* ``ImageStream``: transferkit's own stream, keyed by a given fingerprint (no scan);
* ``numpy array``: the same images materialised first, for reference (grows with n).

The extractor is small on purpose (VGG-16 with random weights, cut after ``block1_pool``,
64 features): the figures are about the data path, not the backbone.

    python benchmarks/data_sources.py --sizes 10000 100000
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
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

SIZE = 32
BATCH = 256


def _images_np(start: int, stop: int) -> Any:
    """Images ``start .. stop - 1``: a function of the index, as every source yields them."""
    import numpy as np

    idx = np.arange(start, stop, dtype=np.uint32)[:, None, None, None]
    yy, xx, cc = np.meshgrid(np.arange(SIZE), np.arange(SIZE), np.arange(3), indexing="ij")
    return ((idx * 7 + yy * 3 + xx * 5 + cc * 11) % 256).astype(np.uint8)


def _source(kind: str, n: int) -> Any:
    if kind == "tf.data":
        import tensorflow as tf

        grid = tf.constant(_images_np(0, 1)[0].astype("int32") - 0)  # the index-0 image

        def make(i: Any) -> Any:
            return tf.cast((tf.cast(i, tf.int32) * 7 + grid) % 256, tf.uint8)

        return tf.data.Dataset.range(n).map(make).batch(BATCH)
    if kind == "PyDataset":
        import keras

        class Batches(keras.utils.PyDataset):
            def __len__(self) -> int:
                return -(-n // BATCH)

            def __getitem__(self, i: int) -> Any:
                return _images_np(i * BATCH, min(n, (i + 1) * BATCH))

        return Batches()
    if kind == "ImageStream":
        from transferkit.datasets import ImageStream

        return ImageStream(_images_np, n, (SIZE, SIZE), fingerprint=f"bench-{n}")
    import numpy as np  # numpy array: the same images materialised, built a batch at a time

    out = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    for start in range(0, n, BATCH):
        out[start:start + BATCH] = _images_np(start, min(n, start + BATCH))
    return out


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    from transferkit import FeatureCache, VGG16Extractor

    ext = VGG16Extractor(weights=None, layer="block1_pool", batch_size=BATCH)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        images = _source(spec["kind"], spec["n"])
        cache = FeatureCache(Path(tmp) / "f.h5")
        feats = cache.extract(ext, images, lazy=True)
        seconds = time.perf_counter() - t
        shape = list(feats.shape)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"seconds": seconds, "rss_mb": rss, "shape": shape}


def run(spec: dict[str, Any], timeout: float = 1800) -> dict[str, Any] | None:
    proc = subprocess.run([sys.executable, str(HERE), "--worker", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(f"  ! {spec} failed (exit {proc.returncode}):\n{proc.stderr[-1500:]}", flush=True)
        return None
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--kinds", nargs="+",
                   default=["tf.data", "PyDataset", "ImageStream", "numpy array"])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    from _machine import machine_line

    print(machine_line(), flush=True)
    print(f"{SIZE}x{SIZE} uint8 images, VGG-16 (random) to block1_pool, batch {BATCH}; "
          "peak RSS of each run in its own process", flush=True)
    sizes = sorted(args.sizes)
    print(f"{'source':<12} " + " ".join(f"{f'{n:,} MB':>12} {'img/s':>7}" for n in sizes)
          + f" {'RSS ratio':>9}", flush=True)
    for kind in args.kinds:
        results = [run({"kind": kind, "n": n}) for n in sizes]
        cells = [f"{r['rss_mb']:>12.0f} {n / r['seconds']:>7.0f}" if r else f"{'-':>12} {'-':>7}"
                 for n, r in zip(sizes, results, strict=True)]
        ratio = (f"{results[-1]['rss_mb'] / results[0]['rss_mb']:>9.2f}"
                 if results[0] and results[-1] else f"{'-':>9}")
        print(f"{kind:<12} " + " ".join(cells) + " " + ratio, flush=True)
    print(machine_line(), flush=True)


if __name__ == "__main__":
    main()
