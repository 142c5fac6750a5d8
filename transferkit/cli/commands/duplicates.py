"""``transferkit duplicates``: near-duplicate images within a cache entry, or leaks between two."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from typing import Any

from .._common import EXIT_OK, echo, open_cache, select_entry, short_key
from .._options import (
    UsageError,
    add_command,
    add_entry_options,
    name_text,
    output_path,
    path_text,
    png_output,
    positive_int,
)

__all__ = ["add_parser", "run"]


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"expected a cosine similarity in [-1, 1], e.g. 0.9; received {text!r}")
    return value


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``duplicates`` command to ``subparsers``."""
    p = add_command(
        subparsers, parents,
        "duplicates", "find near-duplicate images in an entry, or test images leaked from train",
        "Pairs of images whose features are nearly the same (cosine similarity of their "
        "features at or above --threshold): within one entry, or, with --against, each image "
        "of a second entry (e.g. the test split) paired with its nearest image of the first "
        "(e.g. the training split), the leaks that inflate a test score. Both entries must "
        "come from the same extractor.",
        "  transferkit duplicates --cache f.h5 --split train --against test --plot pairs.png\n"
        "  transferkit duplicates --cache f.h5 --key 9c1e --threshold 0.95 --csv pairs.csv",
    )
    add_entry_options(p, "train")
    p.add_argument("--against", choices=("train", "test"),
                   help="the split of the second entry, paired with the first (e.g. test)")
    p.add_argument("--against-key", type=name_text, metavar="KEY",
                   help="the second entry by key (or a unique prefix) instead of --against")
    p.add_argument("--threshold", type=_threshold, metavar="T",
                   help="cosine similarity at or above which two images are near-duplicates "
                        "(default: transferkit.search.DEFAULT_DUPLICATE_THRESHOLD, calibrated "
                        "on augmented copies)")
    p.add_argument("--center", action="store_true",
                   help="centre the features on the first entry's mean first (spreads the "
                        "similarities of features that are alike for every image)")
    p.add_argument("--csv", type=path_text, metavar="FILE", help="write every pair to a CSV file")
    p.add_argument("--plot", type=path_text, metavar="PNG",
                   help="draw the closest pairs (re-reads the images from where `extract` "
                        "found them)")
    p.add_argument("--show", type=positive_int, default=10, metavar="N",
                   help="pairs to print, and at most 3N to draw (default 10)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``transferkit duplicates``; returns the exit code."""
    from ...search import DEFAULT_DUPLICATE_THRESHOLD, find_duplicates, index_entry

    if args.against is not None and args.against_key is not None:
        raise UsageError("pass --against SPLIT or --against-key KEY, not both")
    plot = png_output("--plot", args.plot)
    csv = output_path("--csv", args.csv) if args.csv is not None else None
    cache = open_cache(args.cache)
    entry, prov = select_entry(cache, args, natural_split="train")
    index = index_entry(cache, entry.key, center=args.center)
    other = other_prov = None
    if args.against is not None or args.against_key is not None:
        choose = copy.copy(args)
        choose.key, choose.split, choose.extractor = args.against_key, args.against, None
        other, other_prov = select_entry(cache, choose, natural_split="test")
        if other.key == entry.key:
            raise UsageError("--against selects the same entry as the first; pick another "
                             "split or key")
    against = index_entry(cache, other.key, center=args.center) if other is not None else None
    threshold = DEFAULT_DUPLICATE_THRESHOLD if args.threshold is None else args.threshold
    report = find_duplicates(index, against=against, threshold=threshold)
    queries = other if other is not None else entry
    what = (f"images of entry {short_key(other.key)} with a near-duplicate in entry "
            f"{short_key(entry.key)}" if other is not None
            else f"images of entry {short_key(entry.key)} with a near-duplicate in it")
    echo(f"{report.n_queries_with_match} of {queries.n_images} {what} (cosine similarity >= "
         f"{threshold:.3f}); {len(report)} pairs")
    shown_q = shown_m = None
    if plot is not None:
        from .._entry_images import entry_images

        shown_m = entry_images(prov)
        shown_q = entry_images(other_prov) if other is not None else shown_m
    names = index.class_names
    q_labels = (against or index).labels
    for q, m, s in list(zip(report.query_rows, report.match_rows, report.similarities,
                            strict=True))[: args.show]:
        label = ""
        if q_labels is not None and index.labels is not None:
            a, b = q_labels[q], index.labels[m]
            label = (f"  {names[a]} / {names[b]}" if names else f"  {a} / {b}")
        echo(f"  row {int(q):>6} ~ row {int(m):>6}  {float(s):.3f}{label}")
    if csv is not None:
        report.to_csv(csv)
        echo(f"csv: {csv}")
    if plot is not None and shown_q is not None and shown_m is not None and len(report):
        from ...plots import plot_image_pairs

        top = slice(0, 3 * args.show)
        plot_image_pairs(shown_q.read(report.query_rows[top]), shown_m.read(report.match_rows[top]),
                         plot, similarities=report.similarities[top],
                         titles_a=[shown_q.name(r) for r in report.query_rows[top]],
                         titles_b=[shown_m.name(r) for r in report.match_rows[top]],
                         title=what)
        echo(f"plot: {plot}")
    return EXIT_OK
