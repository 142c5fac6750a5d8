"""``transferkit fine-tune``: a head + its backbone -> a fine-tuned classifier, exported."""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .._common import (
    EXIT_OK,
    ProgressExtractor,
    build_extractor,
    check_head_extractor,
    echo,
    extractor_summary,
    fit_with_progress,
    load_head,
    note,
    progress_mode,
    tag_entry,
)
from .._options import (
    UsageError,
    add_command,
    add_extractor_options,
    add_head_file_options,
    block_count,
    check_extraction_memory,
    check_read_memory,
    export_target,
    fraction,
    input_folder,
    options_checked,
    output_path,
    path_text,
    png_output,
    positive_float,
    positive_int,
    seed,
)
from .export import FORMATS, check_convertible

__all__ = ["add_parser", "run"]

#: FineTuner parameters set by options, for errors the library finds (see options_checked).
_FIT_PARAMS = ("trainable_blocks", "max_minutes", "learning_rate", "batch_size", "epochs",
               "validation_split", "checkpoint_dir")


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``fine-tune`` command to ``subparsers``."""
    p = add_command(
        subparsers, parents,
        "fine-tune", "fine-tune a backbone with its head and export the classifier",
        "Warm-start from a head fitted on frozen features (--head, a file from `transferkit "
        "fit`, which records its extractor, image size and dataset; or --extractor, with a "
        "logistic regression fitted on the spot on the training images' features), train "
        "the top --blocks of the backbone together with the head on the images, print the "
        "test accuracy before and after, and export the fine-tuned classifier "
        "(`predict --model` reads it).\n\n"
        "Data: CIFAR-10 (--data, as for `extract`), an image folder (--images DIR: "
        "DIR/<class>/<image>, or DIR/train/ and DIR/test/; without those, --test-size "
        "images, 20% by default, are held out), or by default the image folder the head's "
        "features came from, else CIFAR-10 (offline: the bundled sample).\n\n"
        "Each completed epoch is checkpointed: after Ctrl-C, SIGTERM or a crash, the same "
        "command resumes from the last one.",
        "  transferkit fine-tune --head head.tkhead --blocks 2 --epochs 5 --output ft.keras\n"
        "  transferkit fine-tune --extractor efficientnet_lite0 --input-size 224 --data "
        "cifar10-jpg/ --train-size 5000 --test-size 1000 --max-minutes 30 --plot curves.png\n"
        "  transferkit fine-tune --head flowers.tkhead --images flowers/ --blocks all "
        "--learning-rate 0.003 --save-extractor flowers-backbone.keras",
    )
    g = p.add_argument_group("warm start")
    g.add_argument("--head", type=path_text, metavar="FILE",
                   help="head file (from `fit --head logreg` or `--head dense`); without "
                        "it, a logistic regression is fitted on --extractor's features")
    g.add_argument("--cache", type=path_text, metavar="FILE",
                   help="feature cache (HDF5) for the frozen features of the training and "
                        "test images (read if there, else stored)")
    g.add_argument("--ignore-fingerprint", action="store_true",
                   help="use the extractor even if it differs from the head's")
    add_extractor_options(p, batch_help="images per training step (and per forward pass); "
                                        "default 64")
    g = p.add_argument_group("data")
    g.add_argument("--data", type=path_text, metavar="PATH",
                   help="CIFAR-10: archive, cifar-10-batches-py/ or JPEG tree (default: the "
                        "head's image folder, else local copies, Keras' download, then the "
                        "bundled sample)")
    g.add_argument("--images", type=path_text, metavar="DIR",
                   help="your own images, DIR/<class>/<image>, or DIR/train/ and DIR/test/")
    g.add_argument("--image-size", type=positive_int, metavar="N",
                   help="--images: side images are resized to when read (default: the head's, "
                        "--input-size, or 224)")
    g.add_argument("--train-size", type=positive_int, metavar="N",
                   help="training images, spread evenly over the classes (default all)")
    g.add_argument("--test-size", type=positive_int, metavar="N",
                   help="test images, spread evenly over the classes (default all; for a "
                        "folder without test/, 20%% held out)")
    g = p.add_argument_group("training")
    g.add_argument("--blocks", type=block_count, default=2, metavar="N|all",
                   help="top blocks of the backbone to train (0: the head alone)")
    g.add_argument("--epochs", type=positive_int, default=5, metavar="N",
                   help="training epochs (with --max-minutes: at most)")
    g.add_argument("--max-minutes", type=positive_float, metavar="F",
                   help="time budget of the whole training: the epochs are planned to end "
                        "within it")
    g.add_argument("--learning-rate", type=positive_float, default=0.01, metavar="F",
                   help="peak learning rate of the head (the backbone's is 0.1 times it)")
    g.add_argument("--validation-split", type=fraction, default=0.0, metavar="F",
                   help="fraction of the training images held out to monitor val_accuracy")
    g.add_argument("--seed", type=seed, default=0, metavar="N",
                   help="seed of augmentation, shuffling and splits")
    ckpt = g.add_mutually_exclusive_group()
    ckpt.add_argument("--checkpoint-dir", type=path_text, metavar="DIR",
                      help="folder of the per-epoch checkpoints (default: "
                           "$TRANSFERKIT_DATA/checkpoints)")
    ckpt.add_argument("--no-checkpoint", action="store_true",
                      help="no checkpoints: an interrupted run starts over")
    g = p.add_argument_group("outputs")
    g.add_argument("--output", "-o", type=path_text, default="fine_tuned.keras",
                   metavar="PATH", help="the fine-tuned classifier: PATH.keras, PATH.tflite "
                                        "or a SavedModel folder")
    g.add_argument("--format", choices=FORMATS,
                   help="keras, saved_model or tflite (default: from --output's suffix)")
    g.add_argument("--save-extractor", type=path_text, metavar="PATH.keras",
                   help="also save the fine-tuned backbone as an extractor (FineTunedExtractor)")
    g.add_argument("--plot", type=path_text, metavar="PNG",
                   help="also save the training curves as a PNG")
    add_head_file_options(p)
    p.set_defaults(func=run, needs_tf=True)


# =========================================================================== data


def _count(n: int, unit: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{n} {unit}{'' if n == 1 else 's'}"


def _image_size(
    args: argparse.Namespace, prov: dict[str, Any], extractor: Any, build: dict[str, Any],
) -> tuple[tuple[int, int], str]:
    """The size folder images are read at, and the option that sets it."""
    recorded = prov.get("image_size")
    recorded = tuple(int(s) for s in recorded) if recorded else None
    if args.image_size is not None:
        size = (args.image_size, args.image_size)
        if recorded is not None and size != recorded:
            raise UsageError(
                f"--image-size: the head was fitted on features of {recorded[0]}x{recorded[1]} "
                f"images, not {size[0]}x{size[1]}; leave --image-size out or fit a head on "
                "features of that size"
            )
        return size, "--image-size"
    if recorded is not None:
        return recorded, "--image-size"  # type: ignore[return-value]
    if build.get("name") == "cifar_cnn":
        return tuple(int(s) for s in extractor.image_shape_[:2]), "--image-size"  # type: ignore
    if getattr(extractor, "input_size", None):
        side = int(extractor.input_size)
        return (side, side), "--input-size" if args.input_size is not None else "--image-size"
    return (224, 224), "--image-size"


def _held_out(labels: Any, n_test: int, rng: Any) -> tuple[Any, Any]:
    """Indices (train, test) with ``n_test`` test images spread over the classes."""
    import numpy as np

    from ...datasets import balanced_subset

    order = rng.permutation(len(labels))
    test, _ = balanced_subset(order, labels[order], n_test)
    mask = np.ones(len(labels), dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask), np.sort(test)


def _folder_data(
    args: argparse.Namespace, root: Path, test_root: Path | None, size: tuple[int, int],
    size_option: str,
) -> dict[str, Any]:
    """Training and test images of an image folder (and its test folder, if any)."""
    import numpy as np

    from ...datasets import balanced_subset, load_image_folder

    if test_root is None and (root / "train").is_dir() and (root / "test").is_dir():
        root, test_root = root / "train", root / "test"
    check_read_memory(size_option, size, 1)
    ds = load_image_folder(root, image_size=size)
    names = list(ds.class_names)
    if test_root is not None:
        test_ds = load_image_folder(test_root, image_size=size, classes=names)
        x_train, y_train = balanced_subset(ds, ds.labels, args.train_size)
        x_test, y_test = balanced_subset(test_ds, test_ds.labels, args.test_size)
        check_read_memory(size_option, size, len(y_train) + len(y_test))
        where = f"image folders {root} and {test_root}"
    else:
        n = len(ds)
        n_test = args.test_size if args.test_size is not None else max(1, round(0.2 * n))
        if n_test >= n:
            raise UsageError(
                f"--test-size must leave training images: {root} holds {n} images, "
                f"received {n_test}"
            )
        train_idx, test_idx = _held_out(ds.labels, n_test, np.random.default_rng(args.seed))
        train_idx, _ = balanced_subset(train_idx, ds.labels[train_idx], args.train_size)
        check_read_memory(size_option, size, len(train_idx) + len(test_idx))
        x_train, y_train = ds[train_idx], ds.labels[train_idx]
        x_test, y_test = ds[test_idx], ds.labels[test_idx]
        where = f"image folder {root} ({len(test_idx)} images held out for testing)"
    base = {"dataset": "image-folder", "image_size": [int(size[0]), int(size[1])]}
    return {
        "x_train": np.asarray(x_train), "y_train": np.asarray(y_train),
        "x_test": np.asarray(x_test), "y_test": np.asarray(y_test), "class_names": names,
        "size": size, "source": where,
        "meta_train": {**base, "root": str(root.resolve()), "split": "train"},
        "meta_test": {**base, "root": str((test_root or root).resolve()), "split": "test"},
    }


def _cifar_data(args: argparse.Namespace) -> dict[str, Any]:
    """Training and test images of CIFAR-10 (or the bundled sample)."""
    from ...datasets import CIFAR10_CLASSES, balanced_subset, load_cifar10_or_sample

    if args.image_size is not None:
        raise UsageError("--image-size applies to --images; CIFAR-10 images are 32x32")
    (x_train, y_train), (x_test, y_test), source = load_cifar10_or_sample(args.data)
    x_train, y_train = balanced_subset(x_train, y_train, args.train_size)
    x_test, y_test = balanced_subset(x_test, y_test, args.test_size)
    base = {"dataset": "cifar10", "source": source, "image_size": [32, 32],
            "data": str(Path(args.data).expanduser().resolve()) if args.data else None}
    return {
        "x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
        "class_names": list(CIFAR10_CLASSES), "size": (32, 32), "source": source,
        "meta_train": {**base, "split": "train"}, "meta_test": {**base, "split": "test"},
    }


def _load_data(
    args: argparse.Namespace, prov: dict[str, Any], extractor: Any, build: dict[str, Any],
) -> tuple[dict[str, Any], str]:
    """The training and test images (the options', else the head's dataset), and a size option."""
    dataset = prov.get("dataset") or {}
    if args.images is not None:
        input_folder("--images", args.images)
        size, option = _image_size(args, prov, extractor, build)
        return _folder_data(args, Path(args.images).expanduser(), None, size, option), option
    if args.data is None and dataset.get("dataset") == "image-folder" and dataset.get("root"):
        root = Path(dataset["root"])
        test_root = None
        if dataset.get("split") == "train" and (root.parent / "test").is_dir():
            test_root = root.parent / "test"
        size, option = _image_size(args, prov, extractor, build)
        note(f"data: the head's image folder {root}")
        return _folder_data(args, root, test_root, size, option), option
    recorded = prov.get("image_size")
    if recorded and tuple(recorded) != (32, 32):
        note(f"note: the head was fitted on features of {recorded[0]}x{recorded[1]} images; "
             "CIFAR-10's are 32x32")
    return _cifar_data(args), "--input-size"


def _targets(head: Any, class_names: list[str], labels: Any, what: str) -> Any:
    """Labels as the head's classes: names (or integer labels, for an integer head)."""
    import numpy as np

    from ...exceptions import InvalidInputError

    classes = np.asarray(head.classes_)
    labels = np.asarray(labels)
    values = labels if classes.dtype.kind in "iu" else np.asarray(class_names)[labels]
    missing = sorted({str(v) for v in np.unique(values)} - {str(c) for c in classes})
    if missing:
        raise InvalidInputError(
            f"The {what} images' classes {missing} are not classes of the head "
            f"({[str(c) for c in classes]}): fine-tune on images of the classes the head was "
            "fitted on, or start from --extractor (a head fitted on these images)."
        )
    return values


def _features(
    extractor: Any, images: Any, *, cache: Any, labels: Any, class_names: list[str],
    meta: dict[str, Any], args: argparse.Namespace, desc: str,
) -> Any:
    """Frozen features of ``images``: through the cache (``--cache``), or computed."""
    import numpy as np

    wrapped = ProgressExtractor(extractor, desc=desc, mode=progress_mode(args))
    if cache is None:
        return np.concatenate([f for _, f in wrapped.iter_features(
            images, batch_size=args.batch_size)], axis=0)
    key = cache.key(extractor, images)
    try:
        feats = cache.extract(wrapped, images, labels=labels, class_names=class_names,
                              batch_size=args.batch_size)
    finally:
        with contextlib.suppress(Exception):
            tag_entry(cache, key, meta)
    return np.asarray(feats)


# =========================================================================== training


@contextlib.contextmanager
def _warnings_as_notes() -> Iterator[None]:
    """Show FineTuner's warnings (resumed, stopped by the time budget) as notes."""
    with warnings.catch_warnings():
        original = warnings.showwarning

        def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                 line: Any = None) -> None:
            text = str(message)
            if text.startswith("FineTuner"):
                note(f"note: {text}")
            else:
                original(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def _check_blocks(args: argparse.Namespace, extractor: Any, size: tuple[int, int]) -> int:
    """The backbone's number of blocks; --blocks beyond it is a usage error (before training)."""
    from ...extractors import layer_blocks

    blocks = layer_blocks(extractor.feature_model(size))
    if args.blocks != "all" and args.blocks > len(blocks):
        raise UsageError(
            f"--blocks must be at most {len(blocks)}, the blocks of this backbone "
            f"({', '.join(name for name, _ in blocks)}), or 'all'; received {args.blocks}"
        )
    return len(blocks)


def _fine_tune(args: argparse.Namespace, tuner: Any, x: Any, y: Any) -> float:
    """Fit ``tuner``, with progress; interruptions say what was kept."""
    from ...exceptions import Terminated

    try:
        with _warnings_as_notes(), options_checked(_FIT_PARAMS):
            return fit_with_progress(tuner, x, y, mode=progress_mode(args), desc="fine-tune")
    except (KeyboardInterrupt, Terminated) as exc:
        kept = ("the completed epochs are checkpointed; run the same command again to resume"
                if tuner.checkpoint_dir is not None else
                "nothing was kept (--no-checkpoint)")
        if isinstance(exc, Terminated):
            raise Terminated(f"terminated (SIGTERM); {kept}") from exc
        raise KeyboardInterrupt(kept) from exc


def run(args: argparse.Namespace) -> int:
    """Run ``transferkit fine-tune``; returns the exit code."""
    import numpy as np

    from ...cache import FeatureCache
    from ...fine_tune import FineTuner

    if args.head is None and args.extractor is None and args.cnn is None:
        raise UsageError("pass --head FILE (from `transferkit fit`) or --extractor NAME (a "
                         "logistic regression is then fitted on its features)")
    if args.images is not None and args.data is not None:
        raise UsageError("pass either --data (CIFAR-10) or --images, not both")
    target, fmt = export_target("--output", args.output, args.format)
    save_extractor = None
    if args.save_extractor is not None:
        if Path(args.save_extractor).suffix != ".keras":
            raise UsageError(f"--save-extractor must end in .keras; received "
                             f"{args.save_extractor!r}")
        save_extractor = output_path("--save-extractor", args.save_extractor)
    plot = png_output("--plot", args.plot)
    checkpoint: Any = "auto"
    if args.no_checkpoint:
        checkpoint = None
    elif args.checkpoint_dir is not None:
        checkpoint = output_path("--checkpoint-dir", args.checkpoint_dir, folder=True)
    cache = None
    if args.cache is not None:
        output_path("--cache", args.cache, probe=False)  # a read-only cache still serves hits
        cache = FeatureCache(Path(args.cache).expanduser())

    head, prov = load_head(args) if args.head is not None else (None, {})
    saved = prov.get("extractor") or {}
    if head is not None and not saved and args.extractor is None and args.cnn is None:
        raise UsageError(
            "this head file does not say which extractor made its features (it was not "
            "written by `transferkit fit`): pass --extractor NAME and its options"
        )
    extractor, build = build_extractor(args, saved)
    if head is not None:
        check_head_extractor(extractor, saved, ignore=args.ignore_fingerprint)
        check_convertible(head)
    data, size_option = _load_data(args, prov, extractor, build)
    size = data["size"]
    check_extraction_memory(extractor, size, batch=args.batch_size, option="--input-size",
                            read_option=size_option)
    n_blocks = _check_blocks(args, extractor, size)
    names = data["class_names"]
    echo(f"data: {data['source']}: {len(data['y_train'])} train / {len(data['y_test'])} test "
         f"images {size[0]}x{size[1]}, {len(np.unique(data['y_train']))} classes")
    echo(f"extractor: {extractor_summary(extractor.describe())} -> "
         f"{extractor.output_dim(size)} features, {n_blocks} blocks")
    tagged = {"extractor": build}

    if head is None:
        from sklearn.linear_model import LogisticRegression

        from ...heads import SklearnHead

        feats = _features(extractor, data["x_train"], cache=cache, labels=data["y_train"],
                          class_names=names, meta={**data["meta_train"], **tagged}, args=args,
                          desc="extracting train")
        head = SklearnHead(LogisticRegression(max_iter=2000))
        t = time.perf_counter()
        head.fit(feats, np.asarray(names)[data["y_train"]])
        echo(f"head: logistic regression fitted on {len(feats)} frozen features "
             f"({time.perf_counter() - t:.1f} s)")
    else:
        echo(f"head: {args.head} ({type(head).__name__}, {len(head.classes_)} classes)")
    y_train = _targets(head, names, data["y_train"], "training")
    y_test = _targets(head, names, data["y_test"], "test")
    feats = _features(extractor, data["x_test"], cache=cache, labels=data["y_test"],
                      class_names=names, meta={**data["meta_test"], **tagged}, args=args,
                      desc="extracting test")
    warm = float(head.score(feats, y_test))
    echo(f"warm start (frozen backbone + head): test accuracy {warm:.4f} "
         f"({len(y_test)} images)")

    tuner = FineTuner(
        extractor=extractor, head=head, trainable_blocks=args.blocks, epochs=args.epochs,
        batch_size=args.batch_size or 64, max_minutes=args.max_minutes,
        learning_rate=args.learning_rate, validation_split=args.validation_split,
        checkpoint_dir=checkpoint, random_state=args.seed,
    )
    blocks = "all" if args.blocks == "all" else args.blocks
    echo(f"fine-tuning: {blocks} of {n_blocks} blocks, {_count(args.epochs, 'epoch')}"
         f"{f' within {args.max_minutes:g} min' if args.max_minutes else ''}, learning rate "
         f"{args.learning_rate:g} (backbone x0.1), batch {tuner.batch_size}")
    _fine_tune(args, tuner, data["x_train"], y_train)
    if tuner.resumed_from_epoch_:
        echo(f"  resumed after epoch {tuner.resumed_from_epoch_} (checkpoint)")
    trained = ", ".join(tuner.blocks_trained_) or "none (the head alone)"
    last = ", ".join(f"{k} {v[-1]:.3f}" for k, v in tuner.history_.items()
                     if v and "accuracy" in k)
    echo(f"trained {_count(tuner.n_iter_, 'epoch')} in {tuner.fit_seconds_ / 60:.1f} min"
         f"{f' (last epoch: {last})' if last else ''}; blocks trained: {trained}")
    accuracy = float(tuner.score(data["x_test"], y_test))
    echo(f"fine-tuned: test accuracy {accuracy:.4f} ({len(y_test)} images), "
         f"{accuracy - warm:+.4f} over the warm start")
    tuner.export(target, format=fmt)
    echo(f"saved {target} ({fmt})")
    if save_extractor is not None:
        tuner.extractor_.save(save_extractor)
        echo(f"extractor: {save_extractor}")
    if plot is not None:
        if tuner.history_:
            from ...plots import plot_training_curves

            plot_training_curves(tuner.history_, plot,
                                 title=f"fine-tune: test accuracy {warm:.3f} -> {accuracy:.3f}")
            echo(f"plot: {plot}")
        else:
            note("note: no epoch was trained in this run: no training curves to plot")
    return EXIT_OK
