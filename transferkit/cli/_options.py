"""Options shared by the commands: option types, path and memory checks, argument groups.

A bad value found by argparse (an option type below) or after parsing (a
:class:`UsageError`) is a usage error, exit code 2, whose message names the option.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "EXPORT_SUFFIXES",
    "PARAM_OPTIONS",
    "HelpFormatter",
    "UsageError",
    "add_command",
    "add_entry_options",
    "add_extractor_options",
    "add_head_file_options",
    "block_count",
    "check_extraction_memory",
    "check_read_memory",
    "common_options",
    "export_target",
    "fraction",
    "input_file",
    "input_folder",
    "name_text",
    "options_checked",
    "output_path",
    "parse_int_list",
    "path_text",
    "png_output",
    "positive_float",
    "positive_int",
    "seed",
    "weights_file",
]


class UsageError(Exception):
    """A command-line usage problem found after parsing (exit code 2)."""


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    """Comma-separated positive integers (``"512,128"``); ``""`` is the empty tuple."""
    text = text.strip()
    if not text:
        return ()
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise UsageError(
            f"{option} must be comma-separated positive integers such as 256 or 512,128; "
            f"received {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise UsageError(f"{option} must hold positive integers; received {text!r}")
    return values


# --------------------------------------------------------------------------- option values
# Types given to argparse: a bad value is a usage error (exit code 2) whose message names
# the option, e.g. "argument --limit: expected a positive integer; received '0'".

#: Largest seed: what every random generator involved (NumPy, Keras, TensorFlow) accepts.
_MAX_SEED = 2**31 - 1


def _int_type(what: str, low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {what}; received {text!r}")
        return value

    return parse


def _float_type(
    what: str, low: float, high: float | None = None, *, low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and (value > low if low_open else value >= low) and (
            high is None or (value < high if high_open else value <= high)
        )
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {what}; received {text!r}")
        return value

    return parse


def _text_type(what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"expected {what}; received {text!r}")
        return text

    return parse


positive_int = _int_type("a positive integer", 1)
seed = _int_type(f"an integer in [0, {_MAX_SEED}]", 0, _MAX_SEED)
positive_float = _float_type("a positive number", 0.0, low_open=True)
fraction = _float_type("a number in [0, 1)", 0.0, 1.0, high_open=True)
path_text = _text_type("a path")
name_text = _text_type("a name")


def block_count(text: str) -> int | str:
    """``--blocks``: a non-negative integer (0: the head alone) or ``all``."""
    if text.strip().lower() == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a non-negative integer or 'all'; received {text!r}"
        )
    return value


# --------------------------------------------------------------------------- paths


def input_file(option: str, text: str | None) -> Path | None:
    """A file the command reads: a folder there is a usage error.

    A missing file is left to the code that reads it: a transferkit error (exit code 1),
    as for any missing file.
    """
    if text is None:
        return None
    path = Path(text).expanduser()
    if path.is_dir():
        raise UsageError(f"{option} must name a file; received {text!r}, which is a folder")
    return path


def input_folder(option: str, text: str | None) -> Path | None:
    """A folder the command reads: a file there is a usage error (missing: exit code 1)."""
    if text is None:
        return None
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} must name a folder; received {text!r}, which is a file")
    return path


def output_path(option: str, text: str | None, *, folder: bool = False,
                probe: bool = True) -> Path | None:
    """Check, before any work, that the command can write ``text`` (a file, or a folder).

    The path must not be of the other kind, its nearest existing ancestor must be a
    folder (missing folders are created when writing), and with ``probe`` that folder
    must be writable: a file is created in it and removed again.
    """
    if text is None:
        return None
    path = Path(text).expanduser()
    if folder and path.exists() and not path.is_dir():
        raise UsageError(f"{option} must name a folder; received {text!r}, which is a file")
    if not folder and path.is_dir():
        raise UsageError(
            f"{option} must name a file to write; received {text!r}, which is a folder"
        )
    parent = path if folder else path.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(
            f"{option} {text!r} cannot be written: {str(existing)!r} is a file, not a folder"
        )
    if not probe:
        return path
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"{option} {text!r} cannot be written: the folder {str(existing)!r} is not "
            "writable; choose another location"
        )
    if existing == parent:
        import tempfile

        try:
            fd, probe_file = tempfile.mkstemp(prefix=".transferkit-probe-", dir=parent)
            os.close(fd)
            os.unlink(probe_file)
        except OSError as exc:
            raise UsageError(
                f"{option} {text!r} cannot be written: creating a file in the folder "
                f"{str(parent)!r} failed ({exc.strerror or exc}); choose another location"
            ) from None
    return path


def png_output(option: str, text: str | None) -> Path | None:
    """A ``.png`` file the command writes (see :func:`output_path`)."""
    if text is not None and Path(text).suffix.lower() != ".png":
        raise UsageError(f"{option} must name a .png file; received {text!r}")
    return output_path(option, text)


#: Suffix of an exported classifier file -> its format (anything else: see export_target).
EXPORT_SUFFIXES = {".keras": "keras", ".tflite": "tflite"}


def export_target(option: str, text: str, fmt: str | None) -> tuple[Path, str]:
    """Where and in which format to export a classifier, checked before any work.

    Without ``fmt`` the suffix decides: ``.keras`` a Keras file, ``.tflite`` TensorFlow
    Lite, none a SavedModel folder; another suffix (``.h5``...) is a usage error, as is
    a suffix that does not fit ``fmt``. The location must be writable
    (:func:`output_path`).
    """
    path = Path(text).expanduser()
    suffix = path.suffix
    wanted = {v: k for k, v in EXPORT_SUFFIXES.items()}
    if fmt is None:
        if suffix in EXPORT_SUFFIXES:
            fmt = EXPORT_SUFFIXES[suffix]
        elif not suffix:
            fmt = "saved_model"
        else:
            raise UsageError(
                f"{option} must end in .keras (a Keras file) or .tflite (TensorFlow Lite), or "
                f"name a folder without a suffix (a SavedModel); received {text!r} (or pass "
                "--format)"
            )
    elif fmt in wanted and suffix != wanted[fmt]:
        raise UsageError(f"{option} must end in {wanted[fmt]} for --format {fmt}; "
                         f"received {text!r}")
    elif fmt == "saved_model" and suffix in EXPORT_SUFFIXES:
        raise UsageError(f"{option}: --format saved_model writes a folder, not a "
                         f"{suffix} file; received {text!r}")
    output_path(option, text, folder=fmt == "saved_model")
    return path, fmt


def weights_file(args: argparse.Namespace) -> None:
    """``--weights`` is imagenet, none or a weights file (not a folder)."""
    weights = getattr(args, "weights", None)
    if weights is not None and weights.lower() not in ("imagenet", "none"):
        input_file("--weights", weights)


# --------------------------------------------------------------------------- library errors

#: Constructor parameters of extractors and CifarCNN, and the options that set them.
PARAM_OPTIONS = {
    "layer": "--layer",
    "pooling": "--pooling",
    "input_size": "--input-size",
    "batch_size": "--batch-size",
    "epochs": "--epochs",
    "conv_filters": "--conv-filters",
    "dense_units": "--dense-units",
    "learning_rate": "--learning-rate",
    "validation_split": "--validation-split",
    "early_stopping": "--early-stopping",
    "preset": "--preset",
    "random_state": "--seed",
    "trainable_blocks": "--blocks",
    "max_minutes": "--max-minutes",
    "checkpoint_dir": "--checkpoint-dir",
}


@contextlib.contextmanager
def options_checked(allowed: Sequence[str]) -> Iterator[None]:
    """Re-raise a parameter error of the library as a usage error naming the option.

    Only :class:`InvalidInputError`/:class:`InvalidTypeError` whose message starts by
    naming one of the ``allowed`` parameters are converted: ``--layer: `layer` must be
    one of [...]``. Other errors (a missing weights file...) pass unchanged.
    """
    from ..exceptions import InvalidInputError, InvalidTypeError

    try:
        yield
    except (InvalidInputError, InvalidTypeError) as exc:
        match = re.match(r"`(\w+)", str(exc))
        if match and match.group(1) in allowed and match.group(1) in PARAM_OPTIONS:
            raise UsageError(f"{PARAM_OPTIONS[match.group(1)]}: {exc}") from exc
        raise


# --------------------------------------------------------------------------- memory


def check_read_memory(option: str, size: tuple[int, int], n: int) -> None:
    """Refuse, before reading, ``n`` images of ``size`` that this machine's memory cannot hold."""
    from .._validation import format_bytes, memory_limit_bytes

    limit = memory_limit_bytes()
    needed = int(n) * int(size[0]) * int(size[1]) * 3
    if limit is not None and needed > limit:
        raise UsageError(
            f"{option}: reading {n} image{'s' if n > 1 else ''} of {size[0]}x{size[1]} needs "
            f"{format_bytes(needed)} of memory, more than the {format_bytes(limit)} this "
            f"machine has; choose a smaller {option}"
        )


def check_extraction_memory(
    extractor: Any, size: tuple[int, int], *, batch: int | None, option: str,
    read_option: str | None = None,
) -> None:
    """Refuse, before building or running the backbone, sizes this machine cannot compute.

    One batch of ``batch`` images needs at least the images as float32 plus the
    backbone's largest activation (:meth:`BaseExtractor.estimate`, which loads no
    weights). Beyond the machine's memory, the extraction would end in TensorFlow's
    out-of-memory error or a crash; here it is a usage error naming ``option`` (the
    model's size) or ``read_option`` (the images' size), whichever weighs more.
    """
    from .._validation import format_bytes, memory_limit_bytes

    limit = memory_limit_bytes()
    if limit is None:
        return
    height, width = int(size[0]), int(size[1])
    image_bytes = height * width * 3 * 4
    read_option = read_option or option
    activation = 0
    model_size = (height, width)
    if image_bytes <= limit:  # else the images alone are too large: no need to ask the model
        try:
            estimate = extractor.estimate(1, (height, width))
        except Exception:  # noqa: BLE001 - advisory: the extraction reports its own errors
            estimate = None
        if estimate is not None:
            activation = int(estimate.activation_bytes_per_image or 0)
            model_size = tuple(int(s) for s in estimate.model_input_size)
    if batch is None:
        batch = int(getattr(extractor, "default_batch_size", lambda: 64)())
    per_image = image_bytes + activation
    if batch * per_image <= limit:
        return
    resizes = model_size != (height, width)
    blame = option if resizes and activation > image_bytes else read_option
    hint = f"choose a smaller {blame}"
    if per_image <= limit:
        hint += f" or a smaller --batch-size (more than {limit // per_image} cannot fit)"
    resized = f" resized to {model_size[0]}x{model_size[1]}" if resizes else ""
    raise UsageError(
        f"{blame}: extracting features of {height}x{width} images{resized} needs at least "
        f"{format_bytes(batch * per_image)} of memory for one batch of {batch} "
        f"image{'s' if batch > 1 else ''} (the images as float32 and the backbone's largest "
        f"activation), more than the {format_bytes(limit)} this machine has; {hint}"
    )


# =========================================================================== parser pieces


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions' line breaks; appends meaningful defaults to option help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or not action.option_strings
            or default is None
            or default is False
            or default is argparse.SUPPRESS
        ):
            return text
        return text + " (default: %(default)s)"


def common_options() -> argparse.ArgumentParser:
    """Options accepted both before and after the command name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")
    common.add_argument("--progress", choices=("auto", "bar", "lines", "off"),
                        default=argparse.SUPPRESS,
                        help="progress display on stderr: a bar on a terminal, a line every "
                             "10%% otherwise (auto; $TRANSFERKIT_PROGRESS overrides), or off")
    return common


def add_command(
    subparsers: Any, parents: Sequence[argparse.ArgumentParser], name: str, help_text: str,
    description: str, examples: str,
) -> argparse.ArgumentParser:
    """Add the parser of command ``name``: its help, description and examples.

    Prose paragraphs of ``description`` are wrapped; indented blocks (lists of heads)
    are kept as they are.
    """
    paragraphs = [
        p if p.startswith("  ") or "\n  " in p
        else textwrap.fill(p, width=79, break_on_hyphens=False)
        for p in description.split("\n\n")
    ]
    return subparsers.add_parser(
        name, help=help_text, description="\n\n".join(paragraphs),
        epilog="examples:\n" + examples, parents=list(parents), formatter_class=HelpFormatter,
    )


def add_extractor_options(
    p: argparse.ArgumentParser, *, with_cnn: bool = True,
    batch_help: str = "images per forward pass",
) -> None:
    """The ``extractor`` group: --extractor, --weights, --layer, ... (and --cnn).

    ``batch_help`` is the help of --batch-size (a command that also trains says so).
    """
    g = p.add_argument_group("extractor")
    g.add_argument("--extractor", type=name_text, metavar="NAME",
                   help="registered extractor (`python -c 'import transferkit; print("
                        "transferkit.list_extractors())'`); default vgg16")
    g.add_argument("--weights", type=name_text, metavar="W",
                   help="backbone weights: imagenet (the default), none (random, seeded) or a "
                        "weights file")
    g.add_argument("--layer", type=name_text, metavar="L",
                   help="backbone layer whose output are the features (VGG-16: block5_pool by "
                        "default); several, comma-separated (block5,block6,top), are pooled "
                        "and concatenated")
    g.add_argument("--pooling", type=name_text, metavar="P",
                   help="feature map to vector: avg (default), max, avgmax or flatten")
    g.add_argument("--input-size", type=positive_int, metavar="N",
                   help="side images are resized to inside the model (VGG-16 default: the "
                        "images' own size)")
    g.add_argument("--batch-size", type=positive_int, metavar="N", help=batch_help)
    if with_cnn:
        g.add_argument("--cnn", type=path_text, metavar="PATH.keras",
                       help="a trained CifarCNN (from `transferkit train-cnn`) as the extractor")


def add_entry_options(p: argparse.ArgumentParser, natural: str) -> None:
    """The ``cache entry`` group: --cache and the options choosing one of its entries."""
    g = p.add_argument_group(
        "cache entry",
        f"Which entry of --cache: --key, or the entry matching --extractor/--split (by "
        f"default the {natural} split when entries record one); several matches are an "
        "error unless --latest.",
    )
    g.add_argument("--cache", type=path_text, required=True, metavar="FILE",
                   help="feature cache (HDF5) file")
    g.add_argument("--key", type=name_text,
                   help="entry key, or a unique prefix of it (see `transferkit info`)")
    g.add_argument("--extractor", type=name_text, metavar="NAME",
                   help="only entries of this extractor")
    g.add_argument("--split", choices=("train", "test"), help="only entries of this split")
    g.add_argument("--latest", action="store_true", help="the newest of the matching entries")


def add_head_file_options(p: argparse.ArgumentParser) -> None:
    """--trust and --allow-pickle: how far to trust a head file when loading it."""
    p.add_argument("--trust", type=name_text, action="append", metavar="TYPE",
                   help="extra type to trust when loading a scikit-learn head (repeatable)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="load heads saved with pickle (runs code from the file: trusted only)")
