"""``transferkit predict``: image files -> top-k classes, with a CifarCNN, a head or a model."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._common import (
    EXIT_OK,
    ProgressExtractor,
    build_extractor,
    check_head_extractor,
    echo,
    extractor_summary,
    load_head,
    note,
    progress_mode,
)
from .._options import (
    UsageError,
    add_command,
    add_extractor_options,
    add_head_file_options,
    check_extraction_memory,
    check_read_memory,
    input_file,
    path_text,
    png_output,
    positive_int,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``predict`` command to ``subparsers``."""
    p = add_command(
        subparsers, parents,
        "predict", "classify image files",
        "Top-k classes with probabilities for image files (paths, folders or globs), with a "
        "trained CifarCNN (--cnn), an extractor + a head (--head) or an exported classifier "
        "(--model, from `fine-tune` or `export`). A head written by `transferkit fit` knows "
        "its extractor and image size; other heads need --extractor and its options.",
        "  transferkit predict cat.jpg dog.png --cnn cifar_cnn.keras\n"
        "  transferkit predict photos/ --model fine_tuned.keras --top-k 1\n"
        "  transferkit predict 'photos/*.jpg' --head head.tkhead --top-k 5 --plot preds.png\n"
        "  transferkit predict img/ --head head.tkhead --extractor vgg16 --input-size 64 "
        "--ignore-fingerprint",
    )
    p.add_argument("images", nargs="+", type=path_text, metavar="IMAGE",
                   help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("--head", type=path_text, metavar="FILE", help="head file (from `fit`)")
    p.add_argument("--model", type=path_text, metavar="PATH",
                   help="an exported classifier: a .keras file or a SavedModel folder (from "
                        "`fine-tune` or `export`)")
    add_extractor_options(p)
    p.add_argument("--image-size", type=positive_int, metavar="N",
                   help="side images are resized to when read (default: the --model's or "
                        "--cnn's size, what the head was trained on, else --input-size, else "
                        "224)")
    p.add_argument("--top-k", type=positive_int, default=3, metavar="K",
                   help="classes shown per image")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--plot", type=path_text, metavar="PNG",
                   help="also save a grid of the images with their top-k bars")
    p.add_argument("--plot-max", type=positive_int, default=32, metavar="N",
                   help="--plot: most images drawn")
    p.add_argument("--ignore-fingerprint", action="store_true",
                   help="use the extractor even if it differs from the head's")
    add_head_file_options(p)
    p.set_defaults(func=run, needs_tf=True)


def _with_cnn(args: argparse.Namespace, files: list[Path]) -> tuple[Any, Any, list[str], str]:
    """Images, probabilities, classes and a description, with the CifarCNN of --cnn."""
    from ...datasets.images import read_images
    from ...extractors import CifarCNN

    if args.extractor or any(v is not None for v in (args.weights, args.layer, args.pooling,
                                                     args.input_size)):
        raise UsageError("--extractor/--weights/--layer/--pooling/--input-size need --head")
    model = CifarCNN.load(input_file("--cnn", args.cnn) or Path(args.cnn))
    if args.batch_size is not None:
        model.set_params(batch_size=args.batch_size)
    size = tuple(int(s) for s in model.image_shape_[:2])
    if args.image_size is not None and (args.image_size, args.image_size) != size:
        raise UsageError(f"--image-size: this CNN takes {size[0]}x{size[1]} images")
    check_read_memory("--image-size", size, len(files))  # type: ignore[arg-type]
    images = read_images(files, size)  # type: ignore[arg-type]
    probs = model.predict_proba(images)
    classes = [str(c) for c in model.classes_.tolist()]
    return images, probs, classes, f"CifarCNN {args.cnn}"


def _with_model(args: argparse.Namespace, files: list[Path]) -> tuple[Any, Any, list[str], str]:
    """Images, probabilities, classes and a description, with the classifier of --model."""
    from ...datasets.images import read_images
    from ...exceptions import InvalidInputError
    from ...export import load_classifier

    given = [o for o, v in (("--extractor", args.extractor), ("--weights", args.weights),
                            ("--layer", args.layer), ("--pooling", args.pooling),
                            ("--input-size", args.input_size)) if v is not None]
    if given:
        raise UsageError(f"{', '.join(given)} do{'es' if len(given) == 1 else ''} not apply to "
                         "--model: an exported classifier holds its backbone and head")
    path = Path(args.model).expanduser()
    if path.is_file() and path.suffix != ".keras":
        raise UsageError(
            f"--model must be a .keras file or a SavedModel folder (from `transferkit "
            f"fine-tune` or `transferkit export`); received {args.model!r}"
            + (": TensorFlow Lite files are for TFLite runtimes" if path.suffix == ".tflite"
               else "")
        )
    if not path.exists():
        raise InvalidInputError(
            f"`--model` must be a classifier exported by `transferkit fine-tune` or "
            f"`transferkit export`; {str(path)!r} does not exist."
        )
    classifier = load_classifier(path)
    size = classifier.image_size
    if args.image_size is not None:
        size = (args.image_size, args.image_size)  # the model resizes to its own size
    check_read_memory("--image-size", size, len(files))  # type: ignore[arg-type]
    images = read_images(files, size)  # type: ignore[arg-type]
    probs = classifier.predict_proba(images, batch_size=args.batch_size or 64)
    classes = [str(c) for c in classifier.classes_.tolist()]
    return images, probs, classes, f"classifier {args.model}"


def _with_head(args: argparse.Namespace, files: list[Path]) -> tuple[Any, Any, list[str], str]:
    """Images, probabilities, classes and a description, with --head and its extractor."""
    import numpy as np

    from ...datasets.images import read_images
    from ...heads import class_probabilities

    head, prov = load_head(args)
    saved = prov.get("extractor") or {}
    if not saved and args.extractor is None:
        raise UsageError(
            "this head file does not say which extractor made its features (it was not "
            "written by `transferkit fit`): pass --extractor NAME and its options"
        )
    extractor, _ = build_extractor(args, saved)
    check_head_extractor(extractor, saved, ignore=args.ignore_fingerprint)
    size_option = "--image-size"
    if args.image_size is not None:
        size = (args.image_size, args.image_size)
    elif prov.get("image_size"):
        size = tuple(int(s) for s in prov["image_size"])  # type: ignore[assignment]
    elif getattr(extractor, "input_size", None):
        size = (extractor.input_size, extractor.input_size)
        size_option = "--input-size" if args.input_size is not None else size_option
    else:
        size = (224, 224)
    check_read_memory(size_option, size, len(files))  # type: ignore[arg-type]
    check_extraction_memory(extractor, size, batch=args.batch_size,  # type: ignore[arg-type]
                            option="--input-size", read_option=size_option)
    images = read_images(files, size)  # type: ignore[arg-type]
    wrapped = ProgressExtractor(extractor, desc="extracting", mode=progress_mode(args))
    feats = np.concatenate([f for _, f in wrapped.iter_features(images)], axis=0)
    probs = class_probabilities(head, feats)
    names = prov.get("class_names")
    classes = [str(c) for c in np.asarray(head.classes_).tolist()]
    if names and np.asarray(head.classes_).dtype.kind in "iu":
        classes = [names[int(c)] if 0 <= int(c) < len(names) else str(c)
                   for c in head.classes_]
    return images, probs, classes, f"{extractor_summary(extractor.describe())} + head {args.head}"


def run(args: argparse.Namespace) -> int:
    """Run ``transferkit predict``; returns the exit code."""
    import numpy as np

    from ...datasets.images import expand_image_paths

    given = [o for o, v in (("--cnn", args.cnn), ("--head", args.head), ("--model", args.model))
             if v is not None]
    if len(given) != 1:
        received = f"; received {' and '.join(given)}" if given else ""
        raise UsageError("pass one of --cnn PATH.keras, --head PATH (with its extractor) or "
                         f"--model PATH (an exported classifier){received}")
    plot = png_output("--plot", args.plot)
    files = expand_image_paths(args.images)
    if args.model is not None:
        images, probs, classes, what = _with_model(args, files)
    elif args.cnn is not None:
        images, probs, classes, what = _with_cnn(args, files)
    else:
        images, probs, classes, what = _with_head(args, files)
    k = min(args.top_k, len(classes))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    if args.json:
        echo(json.dumps([
            {"path": str(f), "top": [{"class": classes[j], "probability": float(probs[i, j])}
                                     for j in order[i]]}
            for i, f in enumerate(files)
        ], indent=2))
    else:
        echo(f"{len(files)} images, {what}:")
        width = max(len(c) for c in classes)
        for i, f in enumerate(files):
            echo(str(f))
            for rank, j in enumerate(order[i], start=1):
                bar = "█" * int(round(20 * float(probs[i, j])))
                echo(f"  {rank}. {classes[j]:<{width}}  {probs[i, j]:6.1%}  {bar}")
    if plot is not None:
        from ...plots import plot_predictions_grid

        titles = [f"{f.parent.name}/{f.name}" for f in files]
        plot_predictions_grid(images, probs, classes, plot, top_k=k, titles=titles,
                              max_images=args.plot_max)
        (note if args.json else echo)(f"plot: {plot}")
    return EXIT_OK
