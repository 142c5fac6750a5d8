"""``transferkit fit``: a cache entry -> a trained head file, with a validation report."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._common import (
    EXIT_OK,
    echo,
    extractor_summary,
    fit_with_progress,
    import_tensorflow_quietly,
    open_cache,
    progress_mode,
    select_entry,
    short_key,
)
from .._options import (
    UsageError,
    add_command,
    add_entry_options,
    fraction,
    output_path,
    parse_int_list,
    path_text,
    positive_float,
    positive_int,
    seed,
)

__all__ = ["HEAD_CHOICES", "add_parser", "run"]

#: Heads that ``transferkit fit --head`` can train.
HEAD_CHOICES: dict[str, str] = {
    "dense": "DenseHead: a Keras softmax network (--hidden-units, --dropout, --epochs)",
    "logreg": "SklearnHead(LogisticRegression(C))",
    "linear-svm": "SklearnHead(CalibratedClassifierCV(LinearSVC(C))), with probabilities",
    "svm": "SklearnHead(SVC(C, probability=True)), RBF kernel; slow beyond ~10,000 samples",
    "knn": "SklearnHead(KNeighborsClassifier(--neighbors))",
    "random-forest": "SklearnHead(RandomForestClassifier(--trees))",
}
#: The options of some heads only, and the heads they apply to.
_HEAD_OPTIONS = {
    "epochs": ("dense",),
    "hidden_units": ("dense",),
    "dropout": ("dense",),
    "learning_rate": ("dense",),
    "C": ("logreg", "linear-svm", "svm"),
    "neighbors": ("knn",),
    "trees": ("random-forest",),
}


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``fit`` command to ``subparsers``."""
    p = add_command(
        subparsers, parents,
        "fit", "train a head on a cache entry and save it",
        "Train a classifier head on the features and labels of a cache entry, report its "
        "accuracy on the training part and on a held-out validation split, and save it.\n\n"
        "heads:\n" + "\n".join(f"  {k:<14} {v}" for k, v in HEAD_CHOICES.items()),
        "  transferkit fit --cache f.h5 --head logreg --output logreg.tkhead\n"
        "  transferkit fit --cache f.h5 --key 3f2a --head dense --epochs 50 "
        "--hidden-units 512,128\n"
        "  transferkit fit --cache f.h5 --extractor vgg16 --split train --latest --head knn",
    )
    add_entry_options(p, "train")
    g = p.add_argument_group("head")
    g.add_argument("--head", choices=tuple(HEAD_CHOICES), default="logreg",
                   help="kind of head (see above)")
    g.add_argument("--epochs", type=positive_int, metavar="N",
                   help="dense: most epochs (default 30; early stopping)")
    g.add_argument("--hidden-units", metavar="N[,N...]",
                   help="dense: hidden layer widths, '' for none (default 256)")
    g.add_argument("--dropout", type=fraction, metavar="F",
                   help="dense: dropout rate (default 0.5)")
    g.add_argument("--learning-rate", type=positive_float, metavar="F",
                   help="dense: Adam's learning rate (default 0.001)")
    g.add_argument("--C", type=positive_float, dest="C", metavar="F",
                   help="logreg/svm/linear-svm: inverse regularization strength (default 1.0)")
    g.add_argument("--neighbors", type=positive_int, metavar="N",
                   help="knn: neighbours (default 10)")
    g.add_argument("--trees", type=positive_int, metavar="N",
                   help="random-forest: trees (default 200)")
    g.add_argument("--validation-split", type=fraction, default=0.2, metavar="F",
                   help="fraction held out (stratified) to report validation accuracy; 0: none")
    g.add_argument("--refit", action="store_true",
                   help="after the report, train again on all samples and save that head")
    g.add_argument("--seed", type=seed, default=0, metavar="N",
                   help="seed of the split and the head")
    p.add_argument("--output", "-o", type=path_text, default="head.tkhead", metavar="FILE",
                   help="head file to write")
    p.set_defaults(func=run)


def _make_head(args: argparse.Namespace) -> Any:
    """The head ``--head`` names, with its options (defaults for the absent ones)."""
    from ...heads import DenseHead, SklearnHead

    kind = args.head
    for option, heads in _HEAD_OPTIONS.items():
        if getattr(args, option) is not None and kind not in heads:
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag} applies to --head {' or '.join(heads)}, not {kind!r}")
    if kind == "dense":
        return DenseHead(
            hidden_units=parse_int_list(
                args.hidden_units if args.hidden_units is not None else "256", "--hidden-units"
            ),
            dropout=0.5 if args.dropout is None else args.dropout,
            epochs=30 if args.epochs is None else args.epochs,
            learning_rate=1e-3 if args.learning_rate is None else args.learning_rate,
            random_state=args.seed,
        )
    c = 1.0 if args.C is None else args.C
    if kind == "logreg":
        from sklearn.linear_model import LogisticRegression

        return SklearnHead(LogisticRegression(C=c, max_iter=2000))
    if kind == "linear-svm":
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import LinearSVC

        return SklearnHead(CalibratedClassifierCV(LinearSVC(C=c), cv=3))
    if kind == "svm":
        from sklearn.svm import SVC

        return SklearnHead(SVC(C=c, probability=True, random_state=args.seed))
    if kind == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        return SklearnHead(KNeighborsClassifier(10 if args.neighbors is None else args.neighbors))
    from sklearn.ensemble import RandomForestClassifier

    return SklearnHead(RandomForestClassifier(
        200 if args.trees is None else args.trees, random_state=args.seed
    ))


def _check_neighbors(args: argparse.Namespace, n_samples: int, where: str) -> None:
    """k-nearest neighbours need at least k training samples (checked before training)."""
    if args.head == "knn":
        k = 10 if args.neighbors is None else args.neighbors
        if k > n_samples:
            raise UsageError(
                f"--neighbors must be at most the number of training samples; received {k}, "
                f"but {where} has {n_samples} (lower --neighbors or --validation-split)"
            )


def _save_head(head: Any, path: Path, provenance: dict[str, Any]) -> None:
    """``head.save(path)`` plus a ``provenance.json`` member (how to make its features)."""
    from ...heads import save_head

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_head(head, path, provenance=provenance)  # one atomic write, provenance included
    except OSError as exc:  # a full disk...: name the head file, not the temporary one
        raise OSError(exc.errno, f"could not write the head file {str(path)!r} (--output): "
                                 f"{exc.strerror or exc}") from exc


def run(args: argparse.Namespace) -> int:
    """Run ``transferkit fit``; returns the exit code."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    from ..._labels import labels_to_names
    from ...exceptions import CacheError

    output_path("--output", args.output)
    output = Path(args.output).expanduser()
    head = _make_head(args)
    if args.head == "dense" and not args.verbose:
        import_tensorflow_quietly()
    cache = open_cache(args.cache)
    entry, prov = select_entry(cache, args, natural_split="train")
    labels = cache.labels(entry.key)
    if labels is None:
        raise CacheError(
            f"Entry {short_key(entry.key)} has no labels to train on; extract it with labels "
            "(`transferkit extract` stores them)."
        )
    X = np.asarray(cache.load(entry.key))
    y = labels_to_names(labels, entry.class_names)
    where = f" on {prov['dataset']} {prov.get('split') or ''}".rstrip() if prov else ""
    echo(f"entry {short_key(entry.key)}: {extractor_summary(entry.extractor_config)}{where}, "
         f"{entry.n_images}x{entry.feature_dim}")
    echo(f"head: {args.head}: {HEAD_CHOICES[args.head]}")
    mode = progress_mode(args)
    report: dict[str, Any] = {}
    if args.validation_split > 0:
        _, counts = np.unique(y, return_counts=True)
        X_tr, X_val, y_tr, y_val = train_test_split(
            X, y, test_size=args.validation_split, random_state=args.seed,
            stratify=y if counts.min() >= 2 else None,
        )
        _check_neighbors(args, len(y_tr), "the training part")
        fit_s = fit_with_progress(head, X_tr, y_tr, mode=mode, desc="dense head")
        train_acc = float(head.score(X_tr, y_tr))
        val_acc = float(head.score(X_val, y_val))
        echo(f"  train:      {len(y_tr):6d} samples, accuracy {train_acc:.3f}   "
             f"(fit {fit_s:.1f} s)")
        echo(f"  validation: {len(y_val):6d} samples, accuracy {val_acc:.3f}   "
             f"(held out, {args.validation_split:.0%})")
        report = {"train_samples": len(y_tr), "train_accuracy": train_acc,
                  "validation_samples": len(y_val), "validation_accuracy": val_acc}
        if args.refit:
            fit_s = fit_with_progress(head, X, y, mode=mode, desc="dense head")
            echo(f"  refit on all {len(y)} samples (fit {fit_s:.1f} s)")
            report["refit"] = True
    else:
        _check_neighbors(args, len(y), "the entry")
        fit_s = fit_with_progress(head, X, y, mode=mode, desc="dense head")
        train_acc = float(head.score(X, y))
        echo(f"  train: {len(y)} samples, accuracy {train_acc:.3f}   (fit {fit_s:.1f} s; "
             "no validation split)")
        report = {"train_samples": len(y), "train_accuracy": train_acc}
    provenance = {
        "cache": str(cache.path.resolve()),
        "key": entry.key,
        "extractor": {
            **(prov.get("extractor") or {"name": entry.extractor, "params": None, "cnn": None}),
            "fingerprint": entry.extractor_fingerprint,
            "config": entry.extractor_config,
        },
        "image_size": prov.get("image_size"),
        "dataset": {k: prov.get(k) for k in ("dataset", "split", "source", "root") if k in prov},
        "class_names": entry.class_names,
        "head": args.head,
        "report": report,
    }
    _save_head(head, output, provenance)
    echo(f"saved {output}")
    return EXIT_OK
