"""``transferkit evaluate``: a head + a cache entry -> accuracy, report, confusion matrix."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from .._common import (
    EXIT_OK,
    config_difference,
    echo,
    extractor_summary,
    load_head,
    note,
    open_cache,
    select_entry,
    short_key,
)
from .._options import (
    add_command,
    add_entry_options,
    add_head_file_options,
    path_text,
    png_output,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``evaluate`` command to ``subparsers``."""
    p = add_command(
        subparsers, parents,
        "evaluate", "score a saved head on a cache entry",
        "Accuracy, per-class precision/recall/F1 (scikit-learn's classification report) and "
        "the confusion matrix of a saved head on a cache entry (by default the test split).",
        "  transferkit evaluate --head head.tkhead --cache f.h5\n"
        "  transferkit evaluate --head head.tkhead --cache f.h5 --key 9c1e --plot "
        "confusion.png --normalize true\n"
        "  transferkit evaluate --head head.tkhead --cache f.h5 --json | jq .accuracy",
    )
    p.add_argument("--head", type=path_text, required=True, metavar="FILE",
                   help="head file (from `fit`)")
    add_entry_options(p, "test")
    p.add_argument("--plot", type=path_text, metavar="PNG",
                   help="also save the confusion matrix as a PNG")
    p.add_argument("--normalize", choices=("none", "true", "pred", "all"), default="none",
                   help="--plot: counts, or fractions of each true class / prediction / all")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_head_file_options(p)
    p.set_defaults(func=run)


def _confusion_text(cm: Any, names: list[str]) -> str:
    """The confusion matrix as a table: rows the true classes, columns the predicted ones."""
    short = [n[:6] for n in names]
    width = max(4, max(len(s) for s in short), len(str(int(cm.max())))) + 1
    label_w = max(len(n) for n in names)
    lines = [" " * (label_w + 2) + "".join(f"{s:>{width}}" for s in short) + "   <- predicted"]
    for name, row in zip(names, cm, strict=True):
        lines.append(f"{name:>{label_w}}  " + "".join(f"{int(v):>{width}d}" for v in row))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``transferkit evaluate``; returns the exit code."""
    import numpy as np
    from sklearn.metrics import classification_report, confusion_matrix

    from ..._labels import labels_to_names
    from ...exceptions import CacheError, InvalidInputError

    plot = png_output("--plot", args.plot)
    head, head_prov = load_head(args)
    cache = open_cache(args.cache)
    entry, prov = select_entry(cache, args, natural_split="test")
    labels = cache.labels(entry.key)
    if labels is None:
        raise CacheError(f"Entry {short_key(entry.key)} has no labels to evaluate against.")
    if int(head.n_features_in_) != entry.feature_dim:
        raise InvalidInputError(
            f"The head expects {head.n_features_in_} features per image but entry "
            f"{short_key(entry.key)} holds {entry.feature_dim} "
            f"({extractor_summary(entry.extractor_config)}); evaluate it on an entry made "
            "by the extractor it was trained with."
        )
    trained_fp = (head_prov.get("extractor") or {}).get("fingerprint")
    if trained_fp and trained_fp != entry.extractor_fingerprint:
        difference = config_difference(
            entry.extractor_config, head_prov["extractor"].get("config"), "entry", "head"
        )
        raise InvalidInputError(
            f"Entry {short_key(entry.key)} was made by another extractor than the head was "
            f"trained on: {difference}. Its accuracy would be meaningless. Choose an entry "
            "with --key/--extractor."
        )
    X = np.asarray(cache.load(entry.key))
    names = entry.class_names or head_prov.get("class_names")
    classes = np.asarray(head.classes_)
    y_true = labels_to_names(labels, names) if classes.dtype.kind in "US" \
        else np.asarray(labels)
    if not set(np.unique(y_true).tolist()) & set(classes.tolist()):
        raise InvalidInputError(
            f"The head's classes ({classes.tolist()[:10]}) and the labels of entry "
            f"{short_key(entry.key)} ({np.unique(y_true).tolist()[:10]}) have nothing in "
            "common; evaluate the head on data with the classes it was trained on."
        )
    y_pred = head.predict(X)
    order = [c for c in (names or []) if c in set(classes.tolist())] if classes.dtype.kind in "US"\
        else sorted(set(classes.tolist()) | set(np.unique(y_true).tolist()))
    order = order or classes.tolist()
    target = [str(c) for c in order]
    if classes.dtype.kind not in "US" and names and all(
        isinstance(c, int | np.integer) and 0 <= c < len(names) for c in order
    ):
        target = [names[int(c)] for c in order]
    accuracy = float(np.mean(y_pred == y_true))
    cm = confusion_matrix(y_true, y_pred, labels=order)
    same = head_prov.get("key") == entry.key
    if args.json:
        report = classification_report(y_true, y_pred, labels=order, target_names=target,
                                       zero_division=0, output_dict=True)
        echo(json.dumps({
            "accuracy": accuracy, "n_samples": int(len(y_true)), "key": entry.key,
            "class_names": target, "confusion_matrix": cm.tolist(), "report": report,
            "trained_on_this_entry": same,
        }, indent=2))
    else:
        split = prov.get("split")
        where = f" ({prov['dataset']}{' ' + split if split else ''})" if prov.get("dataset") \
            else ""
        echo(f"entry {short_key(entry.key)}{where}: {len(y_true)} images, "
             f"{extractor_summary(entry.extractor_config)}")
        echo(f"head: {args.head} ({type(head).__name__})")
        if same:
            echo("note: the head was trained on this entry; this accuracy is optimistic")
        echo(f"accuracy: {accuracy:.4f} ({int(np.sum(y_pred == y_true))}/{len(y_true)})")
        echo("")
        echo(classification_report(y_true, y_pred, labels=order, target_names=target,
                                   zero_division=0, digits=3))
        echo("confusion matrix (rows: true class, columns: predicted class):")
        echo(_confusion_text(cm, target))
    if plot is not None:
        from ...plots import plot_confusion_matrix

        index = {c: i for i, c in enumerate(order)}
        t_idx = np.asarray([index[c] for c in y_true.tolist()])
        p_idx = np.asarray([index.get(c, -1) for c in y_pred.tolist()])
        keep = p_idx >= 0
        normalize = None if args.normalize == "none" else args.normalize
        plot_confusion_matrix(t_idx[keep], p_idx[keep], target, plot, normalize=normalize)
        (note if args.json else echo)(f"plot: {plot}")
    return EXIT_OK
