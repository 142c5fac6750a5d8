"""``transferkit export``: a head file + its extractor -> one classifier model file."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._common import (
    EXIT_OK,
    build_extractor,
    check_head_extractor,
    echo,
    extractor_summary,
    load_head,
)
from .._options import (
    UsageError,
    add_command,
    add_extractor_options,
    add_head_file_options,
    export_target,
    path_text,
    positive_int,
)

__all__ = ["add_parser", "run"]

#: The formats of --format, as transferkit.export.export_classifier names them.
FORMATS = ("keras", "saved_model", "tflite")


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``export`` command to ``subparsers``."""
    p = add_command(
        subparsers, parents,
        "export", "save an extractor + a head as one classifier model",
        "Join a head file and the extractor whose features it was fitted on into one Keras "
        "model (uint8 images of any size -> class probabilities, the class names inside) and "
        "save it as a .keras file, a TensorFlow SavedModel folder (for serving) or a "
        "TensorFlow Lite file. `predict --model` reads the first two. A head written by "
        "`transferkit fit` knows its extractor and image size; other heads need --extractor "
        "and its options (and --image-size when the extractor does not resize).\n\n"
        "The format follows --output: .keras, .tflite (its class names go to a .json beside "
        "it), or a folder name without a suffix for a SavedModel; --format overrides.",
        "  transferkit export --head head.tkhead --output classifier.keras\n"
        "  transferkit export --head head.tkhead --output serving/classifier\n"
        "  transferkit export --head api.tkhead --extractor vgg16 --input-size 64 "
        "--image-size 32 --output phone.tflite",
    )
    p.add_argument("--head", type=path_text, required=True, metavar="FILE",
                   help="head file (from `fit`)")
    add_extractor_options(p)
    p.add_argument("--output", "-o", type=path_text, required=True, metavar="PATH",
                   help="classifier to write: PATH.keras, PATH.tflite or a SavedModel folder")
    p.add_argument("--format", choices=FORMATS,
                   help="keras, saved_model or tflite (default: from --output's suffix)")
    p.add_argument("--image-size", type=positive_int, metavar="N",
                   help="side images are resized to first, as when the head's features were "
                        "extracted (default: what the head file records, else --input-size)")
    p.add_argument("--ignore-fingerprint", action="store_true",
                   help="use the extractor even if it differs from the head's")
    add_head_file_options(p)
    p.set_defaults(func=run, needs_tf=True)


def head_image_size(
    args: argparse.Namespace, prov: dict[str, Any], extractor: Any, build: dict[str, Any],
) -> tuple[int, int] | None:
    """The size images are resized to before the backbone: --image-size, the head's, or None.

    None leaves it to the extractor (its ``input_size``, a CifarCNN's image size); an
    extractor that computes features at the images' own size needs one (usage error).
    """
    if args.image_size is not None:
        return (args.image_size, args.image_size)
    if prov.get("image_size"):
        return tuple(int(s) for s in prov["image_size"])  # type: ignore[return-value]
    if getattr(extractor, "input_size", None) or build.get("name") == "cifar_cnn":
        return None
    raise UsageError(
        "--image-size is needed: the head file does not record the size of the images its "
        f"features were extracted from, and the {build.get('name')!r} extractor takes the "
        "images' own size (no --input-size)"
    )


def check_convertible(head: Any) -> None:
    """Refuse, as a usage error naming --head, a head that cannot become a Keras layer."""
    from ...exceptions import InvalidInputError
    from ...heads import head_to_keras

    try:
        head_to_keras(head)
    except InvalidInputError as exc:
        raise UsageError(f"--head: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    """Run ``transferkit export``; returns the exit code."""
    from ...export import export_classifier

    target, fmt = export_target("--output", args.output, args.format)
    head, prov = load_head(args)
    saved = prov.get("extractor") or {}
    if not saved and args.extractor is None and args.cnn is None:
        raise UsageError(
            "this head file does not say which extractor made its features (it was not "
            "written by `transferkit fit`): pass --extractor NAME and its options"
        )
    extractor, build = build_extractor(args, saved)
    check_head_extractor(extractor, saved, ignore=args.ignore_fingerprint)
    size = head_image_size(args, prov, extractor, build)
    check_convertible(head)
    export_classifier(extractor, target, format=fmt, head=head, image_size=size)
    classes = [str(c) for c in getattr(head, "classes_", [])]
    shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
    resized = f"{size[0]}x{size[1]}" if size else "the extractor's size"
    echo(f"classifier: {extractor_summary(extractor.describe())} + head {args.head}")
    echo(f"  images resized to {resized}; {len(classes)} classes: {shown}")
    echo(f"saved {target} ({fmt})")
    if fmt == "tflite":
        echo(f"class names: {Path(target).with_suffix('.json')}")
    return EXIT_OK
