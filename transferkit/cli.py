"""The ``transferkit`` command line.

Commands (``transferkit COMMAND --help`` documents each):

* ``extract``: images (CIFAR-10 or an image folder) -> features in an HDF5 cache entry.
* ``fit``: a cache entry -> a trained head file, with a held-out validation report.
* ``evaluate``: a head + a cache entry -> accuracy, per-class report, confusion matrix.
* ``info``: the entries of a cache, with their settings, shapes, sizes and dates.
* ``train-cnn``: train the talk's CNN (``CifarCNN``) on CIFAR-10 and save it.
* ``predict``: image files -> top-k classes, with a CifarCNN or an extractor + a head.
* ``demo``: the talk's transfer-learning flow end to end, offline if need be.

Results go to standard output; progress (a bar on a terminal, plain lines
otherwise; ``--progress``) and errors go to standard error.

Exit codes: 0 success, 1 a transferkit error (message printed, no traceback unless
``--verbose``), 2 bad command-line usage (an unknown option, a bad option value, such
as a size too large for this machine's memory or an output path that cannot be
written, or options that do not go together), 130 interrupted (Ctrl-C), 143
terminated (SIGTERM, e.g. a batch scheduler stopping the job). An interrupted or
terminated extraction keeps every batch it finished and resumes when run again.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import os
import re
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "HEAD_CHOICES",
    "build_parser",
    "main",
]

#: Exit code of a successful command.
EXIT_OK = 0
#: Exit code when transferkit reports an error (bad data, missing file, ...).
EXIT_ERROR = 1
#: Exit code of a command-line usage error.
EXIT_USAGE = 2
#: Exit code after Ctrl-C.
EXIT_INTERRUPTED = 130
#: Exit code after SIGTERM (128 + 15): a batch scheduler or container stopped the job.
EXIT_TERMINATED = 143

#: Heads that ``transferkit fit --head`` can train.
HEAD_CHOICES: dict[str, str] = {
    "dense": "DenseHead: a Keras softmax network (--hidden-units, --dropout, --epochs)",
    "logreg": "SklearnHead(LogisticRegression(C))",
    "linear-svm": "SklearnHead(CalibratedClassifierCV(LinearSVC(C))), with probabilities",
    "svm": "SklearnHead(SVC(C, probability=True)), RBF kernel; slow beyond ~10,000 samples",
    "knn": "SklearnHead(KNeighborsClassifier(--neighbors))",
    "random-forest": "SklearnHead(RandomForestClassifier(--trees))",
}
_HEAD_OPTIONS = {
    "epochs": ("dense",),
    "hidden_units": ("dense",),
    "dropout": ("dense",),
    "learning_rate": ("dense",),
    "C": ("logreg", "linear-svm", "svm"),
    "neighbors": ("knn",),
    "trees": ("random-forest",),
}
_PROVENANCE_ATTR = "provenance"  # JSON attribute the CLI adds to the cache entries it writes


class _UsageError(Exception):
    """A command-line usage problem found after parsing (exit code 2)."""


def _print(*args: Any) -> None:
    print(*args, flush=True)


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# =========================================================================== helpers


def _progress_mode(args: argparse.Namespace) -> str:
    return getattr(args, "progress", "auto")


class _ProgressExtractor:
    """Wraps an extractor so that its batches advance a :class:`Progress` display.

    The feature cache only uses an extractor's ``fingerprint``, ``describe``,
    ``output_dim``, ``batch_size`` and ``iter_features``; everything but
    ``iter_features`` is passed through unchanged, so keys and features are the
    same as with the bare extractor.
    """

    def __init__(self, inner: Any, *, desc: str, mode: str) -> None:
        self._inner = inner
        self._desc = desc
        self._mode = mode

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def iter_features(
        self, X: Any, *, start: int = 0, batch_size: int | None = None
    ) -> Iterator[tuple[int, Any]]:
        from .progress import Progress

        batches = self._inner.iter_features(X, start=start, batch_size=batch_size)
        try:
            with Progress(len(X), desc=self._desc, unit="image", initial=start,
                          mode=self._mode) as bar:
                for offset, feats in batches:
                    yield offset, feats
                    bar.update_to(offset + len(feats))
        finally:
            close = getattr(batches, "close", None)
            if callable(close):
                close()  # stops the extractor's prefetching thread, if any


@contextlib.contextmanager
def _keras_progress(mode: str, desc: str) -> Iterator[None]:
    """Show Keras training progress (:func:`transferkit.progress.keras_callback`).

    ``CifarCNN.fit`` and ``DenseHead.fit`` take no ``callbacks`` argument, so while this
    context is active ``keras.Model.fit`` adds the progress callback (and turns Keras'
    own stdout display off). The original method is restored on exit.
    """
    from .progress import keras_callback, resolve_mode

    if resolve_mode(mode) == "off":
        yield
        return
    import keras

    original = keras.Model.fit

    def fit(self: Any, *a: Any, **kw: Any) -> Any:
        callbacks = list(kw.pop("callbacks", None) or [])
        callbacks.append(keras_callback(desc=desc, mode=mode))
        kw["verbose"] = 0
        return original(self, *a, callbacks=callbacks, **kw)

    keras.Model.fit = fit
    try:
        yield
    finally:
        keras.Model.fit = original


def _fit_with_progress(estimator: Any, X: Any, y: Any, *, mode: str, desc: str) -> float:
    """Fit ``estimator``, showing Keras training progress; returns the seconds it took."""
    t = time.perf_counter()
    fit_params = inspect.signature(estimator.fit).parameters
    if "callbacks" in fit_params:  # estimators that accept Keras callbacks directly
        from .progress import keras_callback

        estimator.fit(X, y, callbacks=[keras_callback(desc=desc, mode=mode)])
    elif _is_keras_estimator(estimator):
        with _keras_progress(mode, desc):
            estimator.fit(X, y)
    else:
        estimator.fit(X, y)
    return time.perf_counter() - t


def _is_keras_estimator(estimator: Any) -> bool:
    from .extractors import CifarCNN
    from .heads import DenseHead

    return isinstance(estimator, CifarCNN | DenseHead)


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.1f}"


def _short(key: str) -> str:
    return key[:12]


def _weights_label(weights: Any) -> str:
    if weights is None:
        return "none"
    if isinstance(weights, str):
        return weights
    if isinstance(weights, dict):
        if "random_seed" in weights:
            return f"random(seed={weights['random_seed']})"
        if "file_hash" in weights:
            return f"file:{str(weights['file_hash'])[:8]}"
        if "trained_hash" in weights:
            return f"trained:{str(weights['trained_hash'])[:8]}"
    return json.dumps(weights, sort_keys=True)


def _extractor_summary(config: dict[str, Any]) -> str:
    parts = [f"weights={_weights_label(config.get('weights'))}"]
    for key in ("layer", "pooling", "input_size"):
        if config.get(key) is not None:
            parts.append(f"{key}={config[key]}")
    return f"{config.get('extractor', '?')} ({', '.join(parts)})"


def _parse_int_list(text: str, option: str) -> tuple[int, ...]:
    text = text.strip()
    if not text:
        return ()
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise _UsageError(
            f"{option} must be comma-separated positive integers such as 256 or 512,128; "
            f"received {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise _UsageError(f"{option} must hold positive integers; received {text!r}")
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


_positive_int = _int_type("a positive integer", 1)
_seed = _int_type(f"an integer in [0, {_MAX_SEED}]", 0, _MAX_SEED)
_positive_float = _float_type("a positive number", 0.0, low_open=True)
_fraction = _float_type("a number in [0, 1)", 0.0, 1.0, high_open=True)
_path = _text_type("a path")
_name = _text_type("a name")


# --------------------------------------------------------------------------- paths


def _input_file(option: str, text: str | None) -> Path | None:
    """A file the command reads: a folder there is a usage error.

    A missing file is left to the code that reads it: a transferkit error (exit code 1),
    as for any missing file.
    """
    if text is None:
        return None
    path = Path(text).expanduser()
    if path.is_dir():
        raise _UsageError(f"{option} must name a file; received {text!r}, which is a folder")
    return path


def _input_folder(option: str, text: str | None) -> Path | None:
    """A folder the command reads: a file there is a usage error (missing: exit code 1)."""
    if text is None:
        return None
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise _UsageError(f"{option} must name a folder; received {text!r}, which is a file")
    return path


def _output_path(option: str, text: str | None, *, folder: bool = False,
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
        raise _UsageError(f"{option} must name a folder; received {text!r}, which is a file")
    if not folder and path.is_dir():
        raise _UsageError(
            f"{option} must name a file to write; received {text!r}, which is a folder"
        )
    parent = path if folder else path.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise _UsageError(
            f"{option} {text!r} cannot be written: {str(existing)!r} is a file, not a folder"
        )
    if not probe:
        return path
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _UsageError(
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
            raise _UsageError(
                f"{option} {text!r} cannot be written: creating a file in the folder "
                f"{str(parent)!r} failed ({exc.strerror or exc}); choose another location"
            ) from None
    return path


def _png_output(option: str, text: str | None) -> Path | None:
    if text is not None and Path(text).suffix.lower() != ".png":
        raise _UsageError(f"{option} must name a .png file; received {text!r}")
    return _output_path(option, text)


def _weights_file(args: argparse.Namespace) -> None:
    """``--weights`` is imagenet, none or a weights file (not a folder)."""
    weights = getattr(args, "weights", None)
    if weights is not None and weights.lower() not in ("imagenet", "none"):
        _input_file("--weights", weights)


# --------------------------------------------------------------------------- library errors

#: Constructor parameters of extractors and CifarCNN, and the options that set them.
_PARAM_OPTIONS = {
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
}


@contextlib.contextmanager
def _options_checked(allowed: Sequence[str]) -> Iterator[None]:
    """Re-raise a parameter error of the library as a usage error naming the option.

    Only :class:`InvalidInputError`/:class:`InvalidTypeError` whose message starts by
    naming one of the ``allowed`` parameters are converted: ``--layer: `layer` must be
    one of [...]``. Other errors (a missing weights file...) pass unchanged.
    """
    from .exceptions import InvalidInputError, InvalidTypeError

    try:
        yield
    except (InvalidInputError, InvalidTypeError) as exc:
        match = re.match(r"`(\w+)", str(exc))
        if match and match.group(1) in allowed and match.group(1) in _PARAM_OPTIONS:
            raise _UsageError(f"{_PARAM_OPTIONS[match.group(1)]}: {exc}") from exc
        raise


# --------------------------------------------------------------------------- memory


def _check_read_memory(option: str, size: tuple[int, int], n: int) -> None:
    """Refuse, before reading, ``n`` images of ``size`` that this machine's memory cannot hold."""
    from ._validation import format_bytes, memory_limit_bytes

    limit = memory_limit_bytes()
    needed = int(n) * int(size[0]) * int(size[1]) * 3
    if limit is not None and needed > limit:
        raise _UsageError(
            f"{option}: reading {n} image{'s' if n > 1 else ''} of {size[0]}x{size[1]} needs "
            f"{format_bytes(needed)} of memory, more than the {format_bytes(limit)} this "
            f"machine has; choose a smaller {option}"
        )


def _check_extraction_memory(
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
    from ._validation import format_bytes, memory_limit_bytes

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
        batch = int(getattr(extractor, "_effective_batch_size", lambda: 64)())
    per_image = image_bytes + activation
    if batch * per_image <= limit:
        return
    resizes = model_size != (height, width)
    blame = option if resizes and activation > image_bytes else read_option
    hint = f"choose a smaller {blame}"
    if per_image <= limit:
        hint += f" or a smaller --batch-size (more than {limit // per_image} cannot fit)"
    resized = f" resized to {model_size[0]}x{model_size[1]}" if resizes else ""
    raise _UsageError(
        f"{blame}: extracting features of {height}x{width} images{resized} needs at least "
        f"{format_bytes(batch * per_image)} of memory for one batch of {batch} "
        f"image{'s' if batch > 1 else ''} (the images as float32 and the backbone's largest "
        f"activation), more than the {format_bytes(limit)} this machine has; {hint}"
    )


# --------------------------------------------------------------------------- fingerprints


def _config_difference(mine: Any, theirs: Any, mine_label: str, theirs_label: str) -> str:
    """What differs between two extractor configurations (``describe()``), in words.

    ``input_size: 64 vs 32; pooling: max vs avg``; when the recorded settings are the
    same although the fingerprints differ, it says so instead.
    """
    missing = object()
    a = mine if isinstance(mine, dict) else {}
    b = theirs if isinstance(theirs, dict) else {}

    def shown(key: str, value: Any) -> str:
        if value is missing:
            return "(not recorded)"
        text = _weights_label(value) if key == "weights" else (
            json.dumps(value, sort_keys=True, default=str) if isinstance(value, dict | list)
            else str(value)
        )
        return text if len(text) <= 40 else text[:37] + "..."

    diffs = [
        f"{key}: {shown(key, a.get(key, missing))} vs {shown(key, b.get(key, missing))}"
        for key in sorted(set(a) | set(b))
        if a.get(key, missing) != b.get(key, missing)
    ]
    if diffs:
        return f"{'; '.join(diffs)} ({mine_label} vs {theirs_label})"
    if not b:
        return f"the {theirs_label} settings were not recorded, and the fingerprints differ"
    return (
        f"the recorded settings are identical ({_extractor_summary(a)}) but the fingerprints "
        "differ: another transferkit version computed one of them, so the features may "
        "differ too"
    )


# --------------------------------------------------------------------------- data


def _load_dataset(args: argparse.Namespace, image_size: tuple[int, int] | None) -> dict[str, Any]:
    """The images to extract, with their labels, class names and a description."""
    from .datasets import CIFAR10_CLASSES, balanced_subset, load_cifar10_or_sample

    limit = args.limit
    if args.image_folder is not None:
        from .datasets import load_image_folder

        if args.data is not None:
            raise _UsageError("pass either --data (CIFAR-10) or --image-folder, not both")
        _input_folder("--image-folder", args.image_folder)
        root = Path(args.image_folder).expanduser()
        split = args.split
        if split is not None and (root / split).is_dir():
            root = root / split
        size: Any
        size_option = "--image-size"
        if args.image_size is not None:
            size = (args.image_size, args.image_size)
        elif image_size is not None:
            size = image_size
        elif args.input_size is not None:
            size, size_option = (args.input_size, args.input_size), "--input-size"
        else:
            size = (224, 224)
        _check_read_memory(size_option, size, 1)  # a batch: _check_extraction_memory
        ds = load_image_folder(
            root, image_size=size, batch_size=64 if args.batch_size is None else args.batch_size
        )
        images: Any = ds
        labels = ds.labels
        if limit is not None and limit < len(ds):
            images, labels = balanced_subset(ds, ds.labels, limit)
        return {
            "images": images,
            "labels": labels,
            "size_option": size_option,
            "class_names": list(ds.class_names),
            "describe": f"image folder {root}: {len(labels)} images "
                        f"{size[0]}x{size[1]}, {len(ds.class_names)} classes",
            "meta": {
                "dataset": "image-folder",
                "root": str(root.resolve()),
                "split": split,
                "image_size": [int(size[0]), int(size[1])],
                "limit": limit,
            },
        }
    if args.image_size is not None:
        raise _UsageError("--image-size applies to --image-folder; CIFAR-10 images are 32x32")
    split = args.split or "train"
    (x_train, y_train), (x_test, y_test), source = load_cifar10_or_sample(args.data)
    x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
    x, y = balanced_subset(x, y, limit)
    return {
        "images": x,
        "labels": y,
        "size_option": "--input-size",
        "class_names": list(CIFAR10_CLASSES),
        "describe": f"{source}: {split} split, {len(y)} images 32x32, 10 classes",
        "meta": {
            "dataset": "cifar10",
            "source": source,
            "data": str(Path(args.data).expanduser().resolve()) if args.data else None,
            "split": split,
            "image_size": [32, 32],
            "limit": limit,
        },
    }


# --------------------------------------------------------------------------- extractors


def _extractor_params(args: argparse.Namespace) -> dict[str, Any]:
    """Constructor parameters given on the command line (absent ones left to defaults)."""
    params: dict[str, Any] = {}
    if args.weights is not None:
        if args.weights.lower() == "none":
            params["weights"] = None
        elif args.weights.lower() == "imagenet":
            params["weights"] = "imagenet"
        else:
            params["weights"] = str(Path(args.weights).expanduser().resolve())
    for name in ("layer", "pooling", "input_size", "batch_size"):
        value = getattr(args, name, None)
        if value is not None:
            params[name] = value
    return params


def _build_extractor(
    args: argparse.Namespace, saved: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any]]:
    """The extractor the options describe (over ``saved`` settings, if any).

    Returns the extractor and how to rebuild it: ``{"name", "params", "cnn"}``.
    """
    from .extractors import CifarCNN, create_extractor, get_extractor_class, list_extractors

    saved = saved or {}
    cnn = getattr(args, "cnn", None)
    name = args.extractor
    if name is not None and name not in list_extractors():
        raise _UsageError(
            f"--extractor must be one of {', '.join(list_extractors())}; received {name!r}"
        )
    _weights_file(args)
    if cnn is None and name is None and saved.get("name") == "cifar_cnn":
        cnn = saved.get("cnn")
    if cnn is not None:
        if name not in (None, "cifar_cnn"):
            raise _UsageError("pass either --cnn (a trained CifarCNN) or --extractor, not both")
        given = [o for o, v in (("--weights", args.weights), ("--layer", args.layer),
                                ("--pooling", args.pooling), ("--input-size", args.input_size))
                 if v is not None]
        if given:
            raise _UsageError(f"{', '.join(given)} do not apply to --cnn (a trained CifarCNN)")
        path = _input_file("--cnn", cnn) or Path(cnn)
        if not path.is_file():
            from .exceptions import InvalidInputError

            raise InvalidInputError(
                f"`--cnn` must be a CifarCNN file written by `transferkit train-cnn` or "
                f"`CifarCNN.save`; {str(path)!r} does not exist."
            )
        model = CifarCNN.load(path)
        if args.batch_size is not None:
            model.set_params(batch_size=args.batch_size)
        return model, {"name": "cifar_cnn", "params": {}, "cnn": str(path.resolve())}
    if name is None:
        name = saved.get("name") or "vgg16"
    params = dict(saved.get("params") or {}) if name == saved.get("name") else {}
    given = _extractor_params(args)
    params.update(given)
    cls = get_extractor_class(name)
    if getattr(cls, "trainable", False):
        raise _UsageError(
            f"the {name!r} extractor must be trained first: train one with `transferkit "
            "train-cnn` and pass it with --cnn PATH.keras"
        )
    unknown = sorted(set(given) - set(cls._get_param_names()))
    if unknown:
        options = ", ".join(_PARAM_OPTIONS.get(k, "--" + k.replace("_", "-")) for k in unknown)
        raise _UsageError(f"{options} do{'es' if len(unknown) == 1 else ''} not apply to "
                          f"the {name!r} extractor")
    extractor = create_extractor(name, **params)
    with _options_checked(list(given)):  # a missing weights file stays exit code 1
        extractor.check_params()
    return extractor, {"name": name, "params": params, "cnn": None}


# --------------------------------------------------------------------------- cache entries


def _tag_entry(cache: Any, key: str, meta: dict[str, Any]) -> None:
    """Record where an entry's images came from and how its extractor was built.

    Stored as the entry's ``provenance`` annotation (JSON), written under the cache's
    own locks so readers and writers in other processes are never disturbed.
    """
    if cache.path.is_file() and key in {e.key for e in cache.entries(include_incomplete=True)}:
        cache.annotate(key, **{_PROVENANCE_ATTR: meta})


def _provenances(cache: Any) -> dict[str, dict[str, Any]]:
    """The provenance the CLI recorded for each entry of a cache (by key)."""
    if not cache.path.is_file():
        return {}
    return {
        e.key: e.annotations[_PROVENANCE_ATTR]
        for e in cache.entries(include_incomplete=True)
        if isinstance(e.annotations.get(_PROVENANCE_ATTR), dict)
    }


def _entry_line(entry: Any, prov: dict[str, Any]) -> str:
    data = prov.get("dataset")
    split = prov.get("split")
    where = f", {data}{' ' + split if split else ''}" if data else ""
    status = "" if entry.complete else f", incomplete {entry.n_done}/{entry.n_images}"
    return (f"  {_short(entry.key)}  {_extractor_summary(entry.extractor_config)}, "
            f"{entry.n_images}x{entry.feature_dim}{where}, {entry.created}{status}")


def _open_cache(path_text: str) -> Any:
    from .cache import FeatureCache
    from .exceptions import CacheError

    path = _input_file("--cache", path_text) or Path(path_text)
    if not path.is_file():
        raise CacheError(
            f"The feature cache {str(path)!r} does not exist; create it with "
            "`transferkit extract --cache PATH ...`."
        )
    return FeatureCache(path)


def _select_entry(
    cache: Any, args: argparse.Namespace, natural_split: str
) -> tuple[Any, dict[str, Any]]:
    """The entry chosen by --key, or by --extractor/--split (--latest for the newest)."""
    from .exceptions import CacheError

    entries = cache.entries(include_incomplete=True)
    provs = _provenances(cache)
    listing = "\n".join(_entry_line(e, provs.get(e.key, {})) for e in entries) or "  (none)"
    if args.key:
        found = [e for e in entries if e.key.startswith(args.key)]
        if len(found) != 1:
            what = "no entry matches" if not found else f"{len(found)} entries match"
            raise CacheError(
                f"In {str(cache.path)!r}, {what} --key {args.key!r}; expected exactly "
                f"one. Entries:\n{listing}"
            )
        entry = found[0]
        if not entry.complete:
            raise CacheError(
                f"Entry {_short(entry.key)} is incomplete ({entry.n_done}/{entry.n_images} "
                "images): run the same `transferkit extract` command again to resume it."
            )
        return entry, provs.get(entry.key, {})
    candidates = [e for e in entries if e.complete]
    if args.extractor:
        candidates = [e for e in candidates if e.extractor == args.extractor]
    if args.split:
        candidates = [e for e in candidates if provs.get(e.key, {}).get("split") == args.split]
    else:
        natural = [e for e in candidates if provs.get(e.key, {}).get("split") == natural_split]
        candidates = natural or candidates
    wanted = " ".join(
        f"{opt} {val}" for opt, val in (("--extractor", args.extractor), ("--split", args.split))
        if val
    )
    if not candidates:
        raise CacheError(
            f"No complete entry in {str(cache.path)!r}{' matches ' + wanted if wanted else ''}. "
            f"Entries:\n{listing}"
        )
    if len(candidates) > 1 and not args.latest:
        lines = "\n".join(_entry_line(e, provs.get(e.key, {})) for e in candidates)
        raise CacheError(
            f"{len(candidates)} entries in {str(cache.path)!r} match"
            f"{' ' + wanted if wanted else ''}; choose one with --key KEY (a prefix is "
            f"enough), narrow with --extractor/--split, or pass --latest for the newest:\n{lines}"
        )
    entry = max(candidates, key=lambda e: (e.created, e.key))
    return entry, provs.get(entry.key, {})


def _named_labels(labels: Any, class_names: list[str] | None) -> Any:
    """Integer labels as class names when the names are known (kept as they are otherwise)."""
    import numpy as np

    y = np.asarray(labels)
    if class_names and y.dtype.kind in "iu" and y.size and 0 <= y.min() and y.max() < len(
        class_names
    ):
        return np.asarray(class_names)[y]
    return y


# --------------------------------------------------------------------------- heads


def _make_head(args: argparse.Namespace) -> Any:
    from .heads import DenseHead, SklearnHead

    kind = args.head
    for option, heads in _HEAD_OPTIONS.items():
        if getattr(args, option) is not None and kind not in heads:
            flag = "--" + option.replace("_", "-")
            raise _UsageError(f"{flag} applies to --head {' or '.join(heads)}, not {kind!r}")
    if kind == "dense":
        return DenseHead(
            hidden_units=_parse_int_list(
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
            raise _UsageError(
                f"--neighbors must be at most the number of training samples; received {k}, "
                f"but {where} has {n_samples} (lower --neighbors or --validation-split)"
            )


def _save_head(head: Any, path: Path, provenance: dict[str, Any]) -> None:
    """``head.save(path)`` plus a ``provenance.json`` member (how to make its features)."""
    from .heads import save_head

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_head(head, path, provenance=provenance)  # one atomic write, provenance included
    except OSError as exc:  # a full disk...: name the head file, not the temporary one
        raise OSError(exc.errno, f"could not write the head file {str(path)!r} (--output): "
                                 f"{exc.strerror or exc}") from exc


def _head_file_info(path: Path) -> tuple[str | None, dict[str, Any]]:
    """The class stored in a head file and the provenance the CLI added (if any)."""
    from .exceptions import TransferkitError
    from .heads import read_head_metadata, read_head_provenance

    try:
        kind = read_head_metadata(path)["class"]
        prov = read_head_provenance(path)
    except (OSError, TransferkitError):
        return None, {}  # load_head reports what is wrong
    return (kind if isinstance(kind, str) else None), prov


def _load_head(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from .heads import load_head

    path = _input_file("--head", args.head) or Path(args.head)
    kind, prov = _head_file_info(path)
    if kind == "DenseHead" and not args.verbose:
        _import_tensorflow_quietly()
    head = load_head(path, trusted=args.trust or None, allow_pickle=args.allow_pickle)
    return head, prov


# =========================================================================== commands


def _kept(cache: Any, key: str) -> str:
    """What an interrupted extraction kept, and how to go on."""
    try:
        entry = {e.key: e for e in cache.entries(include_incomplete=True)}.get(key)
    except Exception:  # noqa: BLE001 - only a message: never hide the interruption itself
        entry = None
    if entry is None:
        return "no batch was finished, nothing was stored"
    if entry.complete:
        return f"the entry is complete ({entry.n_images} images) in {str(cache.path)!r}"
    return (f"kept {entry.n_done}/{entry.n_images} images in {str(cache.path)!r}; run the "
            "same command again to resume")


def _extract(args: argparse.Namespace) -> int:
    from .cache import FeatureCache
    from .exceptions import Terminated

    if args.workers is not None and args.scheduler is not None:
        raise _UsageError(
            "--workers sizes the local cluster started without --scheduler; with "
            f"--scheduler {args.scheduler} the cluster's own workers run the shards. "
            "Pass one of the two."
        )
    _output_path("--cache", args.cache, probe=False)  # a read-only cache still serves hits
    extractor, build = _build_extractor(args)
    cnn_size = tuple(extractor.image_shape_[:2]) if build["name"] == "cifar_cnn" else None
    data = _load_dataset(args, cnn_size)  # type: ignore[arg-type]
    images = data["images"]
    size = tuple(int(s) for s in images.shape[1:3])
    _check_extraction_memory(extractor, size, batch=args.batch_size,  # type: ignore[arg-type]
                             option="--input-size", read_option=data["size_option"])
    dim = extractor.output_dim(size)
    config = extractor.describe()
    cache = FeatureCache(Path(args.cache).expanduser())
    if not args.quiet:
        _print(f"data: {data['describe']}")
        _print(f"extractor: {_extractor_summary(config)} -> {dim} features")
    key = cache.key(extractor, images)
    before = {e.key: e for e in cache.entries(include_incomplete=True)}.get(key)
    sharded = args.shards is not None or args.workers is not None or args.scheduler is not None
    t = time.perf_counter()
    try:
        try:
            if sharded:  # one Dask task per shard; the shards are merged into one entry
                from .distributed import extract_distributed

                extract_distributed(
                    extractor, images, cache, n_shards=args.shards, address=args.scheduler,
                    n_workers=2 if args.workers is None else args.workers,
                    batch_size=args.batch_size, labels=data["labels"],
                    class_names=data["class_names"], lazy=True,
                    verbose=int(_progress_mode(args) != "off" and not args.quiet),
                )
            else:
                wrapped = _ProgressExtractor(extractor, desc="extracting",
                                             mode=_progress_mode(args))
                cache.extract(
                    wrapped, images, labels=data["labels"], class_names=data["class_names"],
                    batch_size=args.batch_size, lazy=True,
                )
        finally:  # an interrupted entry is described too (`info` shows what it was)
            with contextlib.suppress(Exception):
                _tag_entry(cache, key, {**data["meta"], "extractor": build})
    except (KeyboardInterrupt, Terminated) as exc:
        kept = ("the finished shards are kept; run the same command again to resume"
                if sharded else _kept(cache, key))
        if isinstance(exc, Terminated):
            raise Terminated(f"terminated (SIGTERM); {kept}") from exc
        raise KeyboardInterrupt(kept) from exc
    seconds = time.perf_counter() - t
    entry = cache.info(key)
    if args.quiet:
        _print(key)
        return EXIT_OK
    n = entry.n_images
    if before is not None and before.complete:
        _print(f"already in the cache: {n} images, nothing extracted")
    elif before is not None:
        _print(f"resumed at {before.n_done}/{n}: extracted {n - before.n_done} images in "
               f"{seconds:.1f} s ({(n - before.n_done) / max(seconds, 1e-9):.1f} images/s)")
    else:
        _print(f"extracted {n} images in {seconds:.1f} s ({n / max(seconds, 1e-9):.1f} images/s)")
    _print(f"cache: {cache.path}, entry {_short(key)}: {n}x{entry.feature_dim} float32, "
           f"{_mb(entry.nbytes)} MB, labels and {len(data['class_names'])} class names stored")
    _print(f"key: {key}")
    return EXIT_OK


def _fit(args: argparse.Namespace) -> int:
    import numpy as np
    from sklearn.model_selection import train_test_split

    from .exceptions import CacheError

    _output_path("--output", args.output)
    output = Path(args.output).expanduser()
    head = _make_head(args)
    if args.head == "dense" and not args.verbose:
        _import_tensorflow_quietly()
    cache = _open_cache(args.cache)
    entry, prov = _select_entry(cache, args, natural_split="train")
    labels = cache.labels(entry.key)
    if labels is None:
        raise CacheError(
            f"Entry {_short(entry.key)} has no labels to train on; extract it with labels "
            "(`transferkit extract` stores them)."
        )
    X = np.asarray(cache.load(entry.key))
    y = _named_labels(labels, entry.class_names)
    where = f" on {prov['dataset']} {prov.get('split') or ''}".rstrip() if prov else ""
    _print(f"entry {_short(entry.key)}: {_extractor_summary(entry.extractor_config)}{where}, "
           f"{entry.n_images}x{entry.feature_dim}")
    _print(f"head: {args.head}: {HEAD_CHOICES[args.head]}")
    mode = _progress_mode(args)
    report: dict[str, Any] = {}
    if args.validation_split > 0:
        _, counts = np.unique(y, return_counts=True)
        X_tr, X_val, y_tr, y_val = train_test_split(
            X, y, test_size=args.validation_split, random_state=args.seed,
            stratify=y if counts.min() >= 2 else None,
        )
        _check_neighbors(args, len(y_tr), "the training part")
        fit_s = _fit_with_progress(head, X_tr, y_tr, mode=mode, desc="dense head")
        train_acc = float(head.score(X_tr, y_tr))
        val_acc = float(head.score(X_val, y_val))
        _print(f"  train:      {len(y_tr):6d} samples, accuracy {train_acc:.3f}   "
               f"(fit {fit_s:.1f} s)")
        _print(f"  validation: {len(y_val):6d} samples, accuracy {val_acc:.3f}   "
               f"(held out, {args.validation_split:.0%})")
        report = {"train_samples": len(y_tr), "train_accuracy": train_acc,
                  "validation_samples": len(y_val), "validation_accuracy": val_acc}
        if args.refit:
            fit_s = _fit_with_progress(head, X, y, mode=mode, desc="dense head")
            _print(f"  refit on all {len(y)} samples (fit {fit_s:.1f} s)")
            report["refit"] = True
    else:
        _check_neighbors(args, len(y), "the entry")
        fit_s = _fit_with_progress(head, X, y, mode=mode, desc="dense head")
        train_acc = float(head.score(X, y))
        _print(f"  train: {len(y)} samples, accuracy {train_acc:.3f}   (fit {fit_s:.1f} s; "
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
    _print(f"saved {output}")
    return EXIT_OK


def _confusion_text(cm: Any, names: list[str]) -> str:
    short = [n[:6] for n in names]
    width = max(4, max(len(s) for s in short), len(str(int(cm.max())))) + 1
    label_w = max(len(n) for n in names)
    lines = [" " * (label_w + 2) + "".join(f"{s:>{width}}" for s in short) + "   <- predicted"]
    for name, row in zip(names, cm, strict=True):
        lines.append(f"{name:>{label_w}}  " + "".join(f"{int(v):>{width}d}" for v in row))
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np
    from sklearn.metrics import classification_report, confusion_matrix

    from .exceptions import CacheError, InvalidInputError

    plot = _png_output("--plot", args.plot)
    head, head_prov = _load_head(args)
    cache = _open_cache(args.cache)
    entry, prov = _select_entry(cache, args, natural_split="test")
    labels = cache.labels(entry.key)
    if labels is None:
        raise CacheError(f"Entry {_short(entry.key)} has no labels to evaluate against.")
    if int(head.n_features_in_) != entry.feature_dim:
        raise InvalidInputError(
            f"The head expects {head.n_features_in_} features per image but entry "
            f"{_short(entry.key)} holds {entry.feature_dim} "
            f"({_extractor_summary(entry.extractor_config)}); evaluate it on an entry made "
            "by the extractor it was trained with."
        )
    trained_fp = (head_prov.get("extractor") or {}).get("fingerprint")
    if trained_fp and trained_fp != entry.extractor_fingerprint:
        difference = _config_difference(
            entry.extractor_config, head_prov["extractor"].get("config"), "entry", "head"
        )
        raise InvalidInputError(
            f"Entry {_short(entry.key)} was made by another extractor than the head was "
            f"trained on: {difference}. Its accuracy would be meaningless. Choose an entry "
            "with --key/--extractor."
        )
    X = np.asarray(cache.load(entry.key))
    names = entry.class_names or head_prov.get("class_names")
    classes = np.asarray(head.classes_)
    y_true = _named_labels(labels, names) if classes.dtype.kind in "US" else np.asarray(labels)
    if not set(np.unique(y_true).tolist()) & set(classes.tolist()):
        raise InvalidInputError(
            f"The head's classes ({classes.tolist()[:10]}) and the labels of entry "
            f"{_short(entry.key)} ({np.unique(y_true).tolist()[:10]}) have nothing in common; "
            "evaluate the head on data with the classes it was trained on."
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
        _print(json.dumps({
            "accuracy": accuracy, "n_samples": int(len(y_true)), "key": entry.key,
            "class_names": target, "confusion_matrix": cm.tolist(), "report": report,
            "trained_on_this_entry": same,
        }, indent=2))
    else:
        split = prov.get("split")
        where = f" ({prov['dataset']}{' ' + split if split else ''})" if prov.get("dataset") \
            else ""
        _print(f"entry {_short(entry.key)}{where}: {len(y_true)} images, "
               f"{_extractor_summary(entry.extractor_config)}")
        _print(f"head: {args.head} ({type(head).__name__})")
        if same:
            _print("note: the head was trained on this entry; this accuracy is optimistic")
        _print(f"accuracy: {accuracy:.4f} ({int(np.sum(y_pred == y_true))}/{len(y_true)})")
        _print("")
        _print(classification_report(y_true, y_pred, labels=order, target_names=target,
                                     zero_division=0, digits=3))
        _print("confusion matrix (rows: true class, columns: predicted class):")
        _print(_confusion_text(cm, target))
    if plot is not None:
        from .plots import plot_confusion_matrix

        index = {c: i for i, c in enumerate(order)}
        t_idx = np.asarray([index[c] for c in y_true.tolist()])
        p_idx = np.asarray([index.get(c, -1) for c in y_pred.tolist()])
        keep = p_idx >= 0
        normalize = None if args.normalize == "none" else args.normalize
        plot_confusion_matrix(t_idx[keep], p_idx[keep], target, plot, normalize=normalize)
        (_note if args.json else _print)(f"plot: {plot}")
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    import dataclasses

    cache = _open_cache(args.cache)
    entries = cache.entries(include_incomplete=True)
    provs = _provenances(cache)
    if args.json:
        rows = []
        for e in entries:
            row = dataclasses.asdict(e)
            row["shape"] = list(e.shape)
            row["mb"] = round(e.nbytes / 1e6, 3)
            row["provenance"] = provs.get(e.key)
            rows.append(row)
        _print(json.dumps({"path": str(cache.path), "file_mb": round(
            cache.path.stat().st_size / 1e6, 3), "entries": rows}, indent=2, default=str))
        return EXIT_OK
    size = cache.path.stat().st_size
    complete = sum(e.complete for e in entries)
    _print(f"{cache.path}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} "
           f"({complete} complete), {_mb(size)} MB")
    if not entries:
        return EXIT_OK
    header = ("KEY", "EXTRACTOR", "WEIGHTS", "LAYER", "POOLING", "INPUT", "SHAPE", "MB",
              "CREATED", "STATUS", "DATA")
    rows = []
    for e in entries:
        c = e.extractor_config
        p = provs.get(e.key, {})
        data = " ".join(str(v) for v in (p.get("dataset"), p.get("split")) if v) or "-"
        status = "complete" if e.complete else f"incomplete {e.n_done}/{e.n_images}"
        rows.append((
            _short(e.key), e.extractor, _weights_label(c.get("weights")),
            str(c.get("layer") or "-"), str(c.get("pooling") or "-"),
            str(c.get("input_size") or "-"), f"{e.n_images}x{e.feature_dim}",
            _mb(e.nbytes), e.created.replace("T", " ")[:19], status, data,
        ))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        _print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


def _train_cnn(args: argparse.Namespace) -> int:
    import numpy as np

    from .datasets import CIFAR10_CLASSES, balanced_subset, load_cifar10_or_sample
    from .extractors import CifarCNN

    output = Path(args.output).expanduser()
    if output.suffix != ".keras":
        raise _UsageError(f"--output must end in .keras; received {args.output!r}")
    _output_path("--output", args.output)
    plot = _png_output("--plot", args.plot)
    params: dict[str, Any] = {"validation_split": args.validation_split, "random_state": args.seed}
    if args.epochs is not None:
        params["epochs"] = args.epochs
    if args.batch_size is not None:
        params["batch_size"] = args.batch_size
    if args.conv_filters is not None:
        params["conv_filters"] = _parse_int_list(args.conv_filters, "--conv-filters")
    if args.dense_units is not None:
        params["dense_units"] = _parse_int_list(args.dense_units, "--dense-units")
    if args.learning_rate is not None:
        params["learning_rate"] = args.learning_rate
    if args.early_stopping:
        params["early_stopping"] = True
    if args.preset is not None:
        if "preset" not in CifarCNN().get_params():
            raise _UsageError("--preset: this version of CifarCNN has no presets")
        params["preset"] = args.preset
    model = CifarCNN(**params)
    with _options_checked(list(_PARAM_OPTIONS)):  # before loading data and training
        model.check_params()
    (x_train, y_train), (x_test, y_test), source = load_cifar10_or_sample(args.data)
    x_train, y_train = balanced_subset(x_train, y_train, args.train_size)
    x_test, y_test = balanced_subset(x_test, y_test, args.test_size)
    # Keras' validation split is the *last* fraction of the data: shuffle first, since
    # some sources (a JPEG tree) list the images class by class.
    order = np.random.default_rng(args.seed).permutation(len(y_train))
    x_train, y_train = x_train[order], y_train[order]
    names = np.asarray(CIFAR10_CLASSES)
    _print(f"data: {source}: {len(x_train)} train / {len(x_test)} test images, 32x32 RGB")
    shown = {k: v for k, v in model.get_params().items() if k != "verbose" and v is not None}
    text = "CifarCNN(" + ", ".join(f"{k}={v!r}" for k, v in sorted(shown.items())) + ")"
    _print("model: " + textwrap.fill(text, width=96, subsequent_indent="  "))
    # Trained on class names, so the saved model predicts names.
    fit_s = _fit_with_progress(model, x_train, names[y_train], mode=_progress_mode(args),
                               desc="CifarCNN")
    hist = model.history_
    last = {k: v[-1] for k, v in hist.items() if v}
    summary = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if "accuracy" in k)
    _print(f"trained in {fit_s:.1f} s ({model.n_iter_} epochs); last epoch: {summary}")
    accuracy = float(model.score(x_test, names[y_test]))
    _print(f"test accuracy: {accuracy:.4f} ({len(x_test)} images)")
    model.save(output)
    _print(f"saved {output}")
    if plot is not None:
        from .plots import plot_training_curves

        plot_training_curves(hist, plot, title=f"CifarCNN: test accuracy {accuracy:.3f}")
        _print(f"plot: {plot}")
    return EXIT_OK


def _softmax(scores: Any) -> Any:
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = np.stack([-s, s], axis=1)
    s = s - s.max(axis=1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=1, keepdims=True)


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from .datasets.images import expand_image_paths, read_images
    from .exceptions import InvalidInputError

    if (args.cnn is None) == (args.head is None):
        raise _UsageError("pass either --cnn PATH.keras or --head PATH (with its extractor)")
    plot = _png_output("--plot", args.plot)
    files = expand_image_paths(args.images)
    mode = _progress_mode(args)
    if args.cnn is not None:
        if args.extractor or any(v is not None for v in (args.weights, args.layer, args.pooling,
                                                         args.input_size)):
            raise _UsageError("--extractor/--weights/--layer/--pooling/--input-size need --head")
        from .extractors import CifarCNN

        model = CifarCNN.load(_input_file("--cnn", args.cnn) or Path(args.cnn))
        if args.batch_size is not None:
            model.set_params(batch_size=args.batch_size)
        size = tuple(int(s) for s in model.image_shape_[:2])
        if args.image_size is not None and (args.image_size, args.image_size) != size:
            raise _UsageError(f"--image-size: this CNN takes {size[0]}x{size[1]} images")
        _check_read_memory("--image-size", size, len(files))  # type: ignore[arg-type]
        images = read_images(files, size)  # type: ignore[arg-type]
        probs = model.predict_proba(images)
        classes = [str(c) for c in model.classes_.tolist()]
        what = f"CifarCNN {args.cnn}"
    else:
        head, prov = _load_head(args)
        saved = prov.get("extractor") or {}
        if not saved and args.extractor is None:
            raise _UsageError(
                "this head file does not say which extractor made its features (it was not "
                "written by `transferkit fit`): pass --extractor NAME and its options"
            )
        extractor, _ = _build_extractor(args, saved)
        if saved.get("fingerprint") and extractor.fingerprint != saved["fingerprint"] and not (
            args.ignore_fingerprint
        ):
            difference = _config_difference(
                extractor.describe(), saved.get("config"), "given", "head"
            )
            raise InvalidInputError(
                f"The extractor {_extractor_summary(extractor.describe())} differs from the one "
                f"the head was trained on: {difference}. Its predictions would be "
                "meaningless. Drop the options that change it (or pass the same weights file "
                "/ --cnn model), or pass --ignore-fingerprint."
            )
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
        _check_read_memory(size_option, size, len(files))  # type: ignore[arg-type]
        _check_extraction_memory(extractor, size, batch=args.batch_size,  # type: ignore[arg-type]
                                 option="--input-size", read_option=size_option)
        images = read_images(files, size)  # type: ignore[arg-type]
        wrapped = _ProgressExtractor(extractor, desc="extracting", mode=mode)
        feats = np.concatenate([f for _, f in wrapped.iter_features(images)], axis=0)
        if hasattr(head, "predict_proba"):
            probs = head.predict_proba(feats)
        else:
            probs = _softmax(head.decision_function(feats))
        names = prov.get("class_names")
        classes = [str(c) for c in np.asarray(head.classes_).tolist()]
        if names and np.asarray(head.classes_).dtype.kind in "iu":
            classes = [names[int(c)] if 0 <= int(c) < len(names) else str(c)
                       for c in head.classes_]
        what = f"{_extractor_summary(extractor.describe())} + head {args.head}"
    k = min(args.top_k, len(classes))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    if args.json:
        _print(json.dumps([
            {"path": str(f), "top": [{"class": classes[j], "probability": float(probs[i, j])}
                                     for j in order[i]]}
            for i, f in enumerate(files)
        ], indent=2))
    else:
        _print(f"{len(files)} images, {what}:")
        width = max(len(c) for c in classes)
        for i, f in enumerate(files):
            _print(str(f))
            for rank, j in enumerate(order[i], start=1):
                bar = "█" * int(round(20 * float(probs[i, j])))
                _print(f"  {rank}. {classes[j]:<{width}}  {probs[i, j]:6.1%}  {bar}")
    if plot is not None:
        from .plots import plot_predictions_grid

        titles = [f"{f.parent.name}/{f.name}" for f in files]
        plot_predictions_grid(images, probs, classes, plot, top_k=k, titles=titles,
                              max_images=args.plot_max)
        (_note if args.json else _print)(f"plot: {plot}")
    return EXIT_OK


#: Input side of the demo's EfficientNet-Lite0 fallback: 128 px is the knee of the
#: accuracy-vs-cost curve in benchmarks/transfer_cifar10.py.
_DEMO_LITE0_SIZE = 128


def _demo(args: argparse.Namespace) -> int:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from . import (
        CifarCNN,
        DenseHead,
        EfficientNetLite0Extractor,
        FeatureCache,
        SklearnHead,
        VGG16Extractor,
    )
    from .datasets import CIFAR10_CLASSES, balanced_subset, load_cifar10_or_sample
    from .exceptions import WeightsNotFoundError

    mode = _progress_mode(args)
    _weights_file(args)
    _output_path("--cache", args.cache, probe=False)
    plots = _output_path("--plots", args.plots, folder=True)
    weights = None if args.weights == "none" else args.weights
    extractor: Any = VGG16Extractor(
        weights=weights, pooling="avg", input_size=args.input_size, batch_size=args.batch_size
    )
    with _options_checked(["input_size", "batch_size"]):
        extractor.check_params()
    _check_extraction_memory(extractor, (32, 32), batch=args.batch_size, option="--input-size")
    t_start = time.perf_counter()
    _print("transferkit demo: ImageNet features + a quick classifier on CIFAR-10")
    (x_train, y_train), (x_test, y_test), source = load_cifar10_or_sample(args.data)
    x_train, y_train = balanced_subset(x_train, y_train, args.train_size)
    x_test, y_test = balanced_subset(x_test, y_test, args.test_size)
    _print(f"  data: {source}: {len(x_train)} train / {len(x_test)} test images, 32x32 RGB")

    try:
        dim = extractor.output_dim()
        _print(
            f"  extractor: VGG-16 (weights={args.weights}), {args.input_size}x{args.input_size} "
            f"input, global average pooling -> {dim} features"
        )
    except WeightsNotFoundError as exc:
        _print(f"  VGG-16's ImageNet weights are missing: {exc}")
        extractor = None
        if args.weights == "imagenet":
            lite = EfficientNetLite0Extractor(
                input_size=_DEMO_LITE0_SIZE, batch_size=args.batch_size
            )
            try:
                dim = lite.output_dim()
                extractor = lite
                _print(
                    "  Using what is available instead: EfficientNet-Lite0 with real ImageNet "
                    f"weights (from the transferkit[lite0] extra), {_DEMO_LITE0_SIZE}x"
                    f"{_DEMO_LITE0_SIZE} input, global average pooling -> {dim} features"
                )
            except WeightsNotFoundError as lite_exc:
                _print(f"  EfficientNet-Lite0's ImageNet weights are missing too: {lite_exc}")
        if extractor is None:
            _print(
                "  Falling back to what is available: the talk's CNN trained here on the "
                f"training images ({args.cnn_epochs} epochs); its penultimate layer is the "
                "extractor."
            )
            extractor = CifarCNN(epochs=args.cnn_epochs, random_state=0, verbose=0)
            fit_s = _fit_with_progress(extractor, x_train, y_train, mode=mode, desc="CifarCNN")
            _print(
                f"  CifarCNN trained in {fit_s:.1f} s; its own test accuracy: "
                f"{extractor.score(x_test, y_test):.3f}"
            )
            if plots is not None:
                from .plots import plot_training_curves

                _print(f"  plot: {plot_training_curves(extractor, plots / 'cnn_curves.png')}")

    cache = FeatureCache(args.cache)
    names = list(CIFAR10_CLASSES)
    wrapped = _ProgressExtractor(extractor, desc="extracting", mode=mode)
    t = time.perf_counter()
    f_train = cache.extract(wrapped, x_train, labels=y_train, class_names=names)
    f_test = cache.extract(wrapped, x_test, labels=y_test, class_names=names)
    t_extract = time.perf_counter() - t
    t = time.perf_counter()
    cache.extract(extractor, x_train)
    cache.extract(extractor, x_test)
    t_hit = time.perf_counter() - t
    _print(
        f"  features: {f_train.shape[1]}-d, extracted/read in {t_extract:.1f} s "
        f"({(len(x_train) + len(x_test)) / max(t_extract, 1e-9):.0f} images/s); "
        f"read again from the cache in {t_hit:.2f} s ({cache.path})"
    )

    heads = [
        ("logistic regression", SklearnHead(LogisticRegression(max_iter=2000))),
        (
            "dense head (256, dropout 0.5)",
            DenseHead(hidden_units=(256,), dropout=0.5, epochs=30, random_state=0),
        ),
    ]
    _print("  heads trained on the cached features:")
    best: tuple[float, str, Any] | None = None
    for name, head in heads:
        fit_s = _fit_with_progress(head, f_train, y_train, mode=mode, desc="dense head")
        acc = head.score(f_test, y_test)
        _print(f"    {name:<32} test accuracy {acc:.3f}   fit {fit_s:5.1f} s")
        if best is None or acc > best[0]:
            best = (acc, name, head)
    chance = 1.0 / len(np.unique(y_train))
    if plots is not None and best is not None:
        from .plots import plot_confusion_matrix, plot_predictions_grid

        _, name, head = best
        cm_path = plot_confusion_matrix(y_test, head.predict(f_test), names,
                                        plots / "confusion.png", normalize="true",
                                        title=f"{name}: confusion matrix (CIFAR-10 test)")
        grid_path = plot_predictions_grid(x_test[:16], head.predict_proba(f_test[:16]), names,
                                          plots / "predictions.png", top_k=3,
                                          true_labels=y_test[:16])
        _print(f"  plots: {cm_path}, {grid_path}")
    _print(f"  (chance: {chance:.3f}; total {time.perf_counter() - t_start:.0f} s)")
    return EXIT_OK


# =========================================================================== parser


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
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


def _common_options() -> argparse.ArgumentParser:
    """Options accepted both before and after the command name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")
    common.add_argument("--progress", choices=("auto", "bar", "lines", "off"),
                        default=argparse.SUPPRESS,
                        help="progress display on stderr: a bar on a terminal, a line every "
                             "10%% otherwise (auto; $TRANSFERKIT_PROGRESS overrides), or off")
    return common


def _add_extractor_options(p: argparse.ArgumentParser, *, with_cnn: bool = True) -> None:
    g = p.add_argument_group("extractor")
    g.add_argument("--extractor", type=_name, metavar="NAME",
                   help="registered extractor (`python -c 'import transferkit; print("
                        "transferkit.list_extractors())'`); default vgg16")
    g.add_argument("--weights", type=_name, metavar="W",
                   help="backbone weights: imagenet (the default), none (random, seeded) or a "
                        "weights file")
    g.add_argument("--layer", type=_name, metavar="L",
                   help="backbone layer whose output are the features (VGG-16: block5_pool by "
                        "default)")
    g.add_argument("--pooling", type=_name, metavar="P",
                   help="feature map to vector: avg (default), max or flatten")
    g.add_argument("--input-size", type=_positive_int, metavar="N",
                   help="side images are resized to inside the model (VGG-16 default: the "
                        "images' own size)")
    g.add_argument("--batch-size", type=_positive_int, metavar="N", help="images per forward pass")
    if with_cnn:
        g.add_argument("--cnn", type=_path, metavar="PATH.keras",
                       help="a trained CifarCNN (from `transferkit train-cnn`) as the extractor")


def _add_entry_options(p: argparse.ArgumentParser, natural: str) -> None:
    g = p.add_argument_group(
        "cache entry",
        f"Which entry of --cache: --key, or the entry matching --extractor/--split (by "
        f"default the {natural} split when entries record one); several matches are an "
        "error unless --latest.",
    )
    g.add_argument("--cache", type=_path, required=True, metavar="FILE",
                   help="feature cache (HDF5) file")
    g.add_argument("--key", type=_name,
                   help="entry key, or a unique prefix of it (see `transferkit info`)")
    g.add_argument("--extractor", type=_name, metavar="NAME", help="only entries of this extractor")
    g.add_argument("--split", choices=("train", "test"), help="only entries of this split")
    g.add_argument("--latest", action="store_true", help="the newest of the matching entries")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``transferkit`` command.

    Returns
    -------
    argparse.ArgumentParser
        With one subcommand per task; each sets ``func`` (the handler) in the
        parsed namespace.
    """
    from . import __version__

    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="transferkit",
        description=(
            "Image feature extraction and transfer learning on TensorFlow/Keras.\n\n"
            "Typical flow:\n"
            "  transferkit extract --data cifar10/ --split train --cache f.h5\n"
            "  transferkit extract --data cifar10/ --split test --cache f.h5\n"
            "  transferkit fit --cache f.h5 --head logreg --output head.tkhead\n"
            "  transferkit evaluate --head head.tkhead --cache f.h5 --plot confusion.png"
        ),
        epilog="Exit codes: 0 ok, 1 transferkit error, 2 usage error, 130 interrupted "
               "(Ctrl-C), 143 terminated (SIGTERM); an interrupted or terminated extraction "
               "resumes when run again.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"transferkit {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--progress", choices=("auto", "bar", "lines", "off"), default="auto",
                        help="progress display on stderr: a bar on a terminal, a line every "
                             "10%% otherwise (auto), or off")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, description: str, examples: str) -> Any:
        paragraphs = [  # wrap prose; keep indented blocks (lists of heads) as they are
            p if p.startswith("  ") or "\n  " in p
            else textwrap.fill(p, width=79, break_on_hyphens=False)
            for p in description.split("\n\n")
        ]
        p = sub.add_parser(name, help=help_text, description="\n\n".join(paragraphs),
                           epilog="examples:\n" + examples, parents=[common],
                           formatter_class=_HelpFormatter)
        return p

    # ------------------------------------------------------------------ extract
    p = add(
        "extract", "extract features of a dataset into a cache entry",
        "Run a frozen backbone over CIFAR-10 (--data) or an image folder (--image-folder) "
        "and store the features, labels and class names in an HDF5 cache entry. An entry "
        "that exists is read instead; an interrupted extraction resumes. Prints the key.",
        "  transferkit extract --data cifar-10-python.tar.gz --split test --input-size 64 "
        "--cache f.h5\n"
        "  transferkit extract --image-folder photos/ --image-size 224 --cache photos.h5\n"
        "  transferkit extract --data cifar10-jpg/ --cnn cifar_cnn.keras --cache f.h5\n"
        "  KEY=$(transferkit extract --quiet --data cifar10-jpg/ --cache f.h5)",
    )
    g = p.add_argument_group("data")
    g.add_argument("--data", type=_path, metavar="PATH",
                   help="CIFAR-10: archive, cifar-10-batches-py/ or JPEG tree (default: local "
                        "copies, Keras' download, then the bundled sample)")
    g.add_argument("--image-folder", type=_path, metavar="DIR",
                   help="your own images, DIR/<class>/<image> (with --split, DIR/<split>/ if "
                        "it exists)")
    g.add_argument("--split", choices=("train", "test"),
                   help="CIFAR-10 split (default train); recorded with the entry")
    g.add_argument("--image-size", type=_positive_int, metavar="N",
                   help="--image-folder: side images are resized to when read (default: "
                        "--input-size, the CNN's size, or 224)")
    g.add_argument("--limit", type=_positive_int, metavar="N",
                   help="use N images, spread evenly over the classes (default: all)")
    _add_extractor_options(p)
    p.add_argument("--cache", type=_path, default="features.h5", metavar="FILE",
                   help="feature cache (HDF5) file; created if needed")
    g = p.add_argument_group("distributed (Dask: pip install 'transferkit[distributed]')")
    g.add_argument("--shards", type=_positive_int, metavar="N",
                   help="split the extraction into N shards run by Dask workers, merged into "
                        "one entry (default with --workers/--scheduler: twice the workers' "
                        "threads, or the shards of an earlier run)")
    g.add_argument("--workers", type=_positive_int, metavar="N",
                   help="worker processes of the local Dask cluster to start (default 2)")
    g.add_argument("--scheduler", type=_name, metavar="ADDRESS",
                   help="run the shards on the Dask cluster of this scheduler, e.g. "
                        "tcp://host:8786 (the cache folder must be shared with its workers)")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the entry key")
    p.set_defaults(func=_extract, needs_tf=True)

    # ------------------------------------------------------------------ fit
    p = add(
        "fit", "train a head on a cache entry and save it",
        "Train a classifier head on the features and labels of a cache entry, report its "
        "accuracy on the training part and on a held-out validation split, and save it.\n\n"
        "heads:\n" + "\n".join(f"  {k:<14} {v}" for k, v in HEAD_CHOICES.items()),
        "  transferkit fit --cache f.h5 --head logreg --output logreg.tkhead\n"
        "  transferkit fit --cache f.h5 --key 3f2a --head dense --epochs 50 "
        "--hidden-units 512,128\n"
        "  transferkit fit --cache f.h5 --extractor vgg16 --split train --latest --head knn",
    )
    _add_entry_options(p, "train")
    g = p.add_argument_group("head")
    g.add_argument("--head", choices=tuple(HEAD_CHOICES), default="logreg",
                   help="kind of head (see above)")
    g.add_argument("--epochs", type=_positive_int, metavar="N",
                   help="dense: most epochs (default 30; early stopping)")
    g.add_argument("--hidden-units", metavar="N[,N...]",
                   help="dense: hidden layer widths, '' for none (default 256)")
    g.add_argument("--dropout", type=_fraction, metavar="F",
                   help="dense: dropout rate (default 0.5)")
    g.add_argument("--learning-rate", type=_positive_float, metavar="F",
                   help="dense: Adam's learning rate (default 0.001)")
    g.add_argument("--C", type=_positive_float, dest="C", metavar="F",
                   help="logreg/svm/linear-svm: inverse regularization strength (default 1.0)")
    g.add_argument("--neighbors", type=_positive_int, metavar="N",
                   help="knn: neighbours (default 10)")
    g.add_argument("--trees", type=_positive_int, metavar="N",
                   help="random-forest: trees (default 200)")
    g.add_argument("--validation-split", type=_fraction, default=0.2, metavar="F",
                   help="fraction held out (stratified) to report validation accuracy; 0: none")
    g.add_argument("--refit", action="store_true",
                   help="after the report, train again on all samples and save that head")
    g.add_argument("--seed", type=_seed, default=0, metavar="N",
                   help="seed of the split and the head")
    p.add_argument("--output", "-o", type=_path, default="head.tkhead", metavar="FILE",
                   help="head file to write")
    p.set_defaults(func=_fit)

    # ------------------------------------------------------------------ evaluate
    p = add(
        "evaluate", "score a saved head on a cache entry",
        "Accuracy, per-class precision/recall/F1 (scikit-learn's classification report) and "
        "the confusion matrix of a saved head on a cache entry (by default the test split).",
        "  transferkit evaluate --head head.tkhead --cache f.h5\n"
        "  transferkit evaluate --head head.tkhead --cache f.h5 --key 9c1e --plot "
        "confusion.png --normalize true\n"
        "  transferkit evaluate --head head.tkhead --cache f.h5 --json | jq .accuracy",
    )
    p.add_argument("--head", type=_path, required=True, metavar="FILE",
                   help="head file (from `fit`)")
    _add_entry_options(p, "test")
    p.add_argument("--plot", type=_path, metavar="PNG",
                   help="also save the confusion matrix as a PNG")
    p.add_argument("--normalize", choices=("none", "true", "pred", "all"), default="none",
                   help="--plot: counts, or fractions of each true class / prediction / all")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--trust", type=_name, action="append", metavar="TYPE",
                   help="extra type to trust when loading a scikit-learn head (repeatable)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="load heads saved with pickle (runs code from the file: trusted only)")
    p.set_defaults(func=_evaluate)

    # ------------------------------------------------------------------ info
    p = add(
        "info", "list the entries of a feature cache",
        "The entries of a feature cache: extractor settings (weights, layer, pooling, input "
        "size), shape, size on disk, creation date, whether complete, and the data.",
        "  transferkit info --cache f.h5\n  transferkit info --cache f.h5 --json",
    )
    p.add_argument("--cache", type=_path, required=True, metavar="FILE",
                   help="feature cache (HDF5) file")
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    p.set_defaults(func=_info)

    # ------------------------------------------------------------------ train-cnn
    p = add(
        "train-cnn", "train the talk's CNN on CIFAR-10",
        "Train CifarCNN (the talk's convolutional network) from scratch on CIFAR-10, print "
        "its test accuracy and save it as a .keras file; `extract --cnn` then uses its "
        "penultimate layer as an extractor and `predict --cnn` classifies images with it.",
        "  transferkit train-cnn --data cifar10-jpg/ --epochs 8 --output cnn.keras "
        "--plot curves.png\n"
        "  transferkit train-cnn --train-size 5000 --epochs 3",
    )
    p.add_argument("--data", type=_path, metavar="PATH",
                   help="CIFAR-10 location (default: local copies, Keras' download, then the "
                        "bundled sample)")
    p.add_argument("--train-size", type=_positive_int, metavar="N",
                   help="training images (default all)")
    p.add_argument("--test-size", type=_positive_int, metavar="N", help="test images (default all)")
    p.add_argument("--epochs", type=_positive_int, metavar="N",
                   help="training epochs (default: CifarCNN's, 8 for the talk's network)")
    p.add_argument("--batch-size", type=_positive_int, metavar="N",
                   help="images per training step (default: CifarCNN's, 64 for the talk's)")
    p.add_argument("--validation-split", type=_fraction, default=0.1, metavar="F",
                   help="fraction of the training images held out to monitor val_accuracy")
    p.add_argument("--early-stopping", action="store_true",
                   help="stop when val_accuracy stops improving (keeps the best epoch)")
    p.add_argument("--conv-filters", metavar="N[,N...]", help="filters per conv block "
                                                              "(default 64,64)")
    p.add_argument("--dense-units", metavar="N[,N...]", help="dense layer widths (default "
                                                             "256,128)")
    p.add_argument("--learning-rate", type=_positive_float, metavar="F",
                   help="Adam's learning rate (default 0.001)")
    p.add_argument("--preset", type=_name, metavar="NAME",
                   help="a CifarCNN preset, if this version has presets")
    p.add_argument("--seed", type=_seed, default=0, metavar="N",
                   help="seed of weights, shuffling, dropout")
    p.add_argument("--output", "-o", type=_path, default="cifar_cnn.keras", metavar="PATH.keras",
                   help="where to save the trained model")
    p.add_argument("--plot", type=_path, metavar="PNG",
                   help="also save the training curves as a PNG")
    p.set_defaults(func=_train_cnn, needs_tf=True)

    # ------------------------------------------------------------------ predict
    p = add(
        "predict", "classify image files",
        "Top-k classes with probabilities for image files (paths, folders or globs), with a "
        "trained CifarCNN (--cnn) or an extractor + a head (--head). A head written by "
        "`transferkit fit` knows its extractor and image size; other heads need --extractor "
        "and its options.",
        "  transferkit predict cat.jpg dog.png --cnn cifar_cnn.keras\n"
        "  transferkit predict 'photos/*.jpg' --head head.tkhead --top-k 5 --plot preds.png\n"
        "  transferkit predict img/ --head head.tkhead --extractor vgg16 --input-size 64 "
        "--ignore-fingerprint",
    )
    p.add_argument("images", nargs="+", type=_path, metavar="IMAGE",
                   help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("--head", type=_path, metavar="FILE", help="head file (from `fit`)")
    _add_extractor_options(p)
    p.add_argument("--image-size", type=_positive_int, metavar="N",
                   help="side images are resized to when read (default: what the head was "
                        "trained on, else --input-size, else 224)")
    p.add_argument("--top-k", type=_positive_int, default=3, metavar="K",
                   help="classes shown per image")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--plot", type=_path, metavar="PNG",
                   help="also save a grid of the images with their top-k bars")
    p.add_argument("--plot-max", type=_positive_int, default=32, metavar="N",
                   help="--plot: most images drawn")
    p.add_argument("--ignore-fingerprint", action="store_true",
                   help="use the extractor even if it differs from the head's")
    p.add_argument("--trust", type=_name, action="append", metavar="TYPE",
                   help="extra type to trust when loading a scikit-learn head (repeatable)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="load heads saved with pickle (runs code from the file: trusted only)")
    p.set_defaults(func=_predict, needs_tf=True)

    # ------------------------------------------------------------------ demo
    p = add(
        "demo", "run the talk's transfer-learning flow end to end (works offline)",
        "CIFAR-10 -> frozen backbone -> HDF5 feature cache -> logistic regression and a "
        "dense head. Offline, it uses the bundled CIFAR-10 sample and, without ImageNet "
        "weights, a CifarCNN trained on the spot.",
        "  transferkit demo\n  transferkit demo --data cifar-10-python.tar.gz --plots "
        "demo_plots/\n  transferkit demo --weights none --input-size 32 --train-size 500",
    )
    p.add_argument("--data", type=_path, metavar="PATH",
                   help="CIFAR-10 location (archive, batches folder or JPEG tree)")
    p.add_argument("--weights", type=_name, default="imagenet", metavar="W",
                   help="VGG-16 weights: 'imagenet', 'none' (random) or a weights file")
    p.add_argument("--input-size", type=_positive_int, default=64, metavar="N",
                   help="VGG-16 input side")
    p.add_argument("--train-size", type=_positive_int, default=5000, metavar="N",
                   help="training images")
    p.add_argument("--test-size", type=_positive_int, default=1000, metavar="N", help="test images")
    p.add_argument("--batch-size", type=_positive_int, default=64, metavar="N",
                   help="images per forward pass")
    p.add_argument("--cnn-epochs", type=_positive_int, default=8, metavar="N",
                   help="CifarCNN epochs if it is used")
    p.add_argument("--cache", type=_path, default=os.path.join("transferkit_demo", "features.h5"),
                   metavar="FILE", help="feature cache file")
    p.add_argument("--plots", type=_path, metavar="DIR",
                   help="also save plots there: confusion matrix, predictions grid (and the "
                        "CNN's training curves when it is trained)")
    p.set_defaults(func=_demo, needs_tf=True)
    return parser


# =========================================================================== main


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up notices (oneDNN, CUDA probing) hidden.

    TensorFlow prints them before its logging is configured, so no environment
    variable silences them; the CLI hides stderr during the import instead.
    """
    if "tensorflow" in sys.modules:
        return
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no usable stderr
        return
    try:
        with open(os.devnull, "w") as devnull:
            sys.stderr.flush()
            os.dup2(devnull.fileno(), 2)
            try:
                import tensorflow  # noqa: F401
            except ImportError:  # pragma: no cover - reported properly when first used
                pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``transferkit`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code: 0 success, 1 a transferkit error, 2 a usage error found after
        parsing, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). Parsing errors
        (and ``--help``) raise ``SystemExit`` as argparse does, with code 2 (0 for
        ``--help``).

    Notes
    -----
    While the command runs, SIGTERM (sent by batch schedulers and containers to stop a
    job) raises :class:`~transferkit.exceptions.Terminated` in the main thread, as
    Ctrl-C raises ``KeyboardInterrupt``: an extraction writes every batch it computed
    and resumes when run again. The previous SIGTERM handler is restored afterwards;
    a handler other than the default one (or SIGTERM ignored) is left in place.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args = parser.parse_args(argv)
    from ._signals import sigterm_raises
    from .exceptions import Terminated, TransferkitError

    try:
        with sigterm_raises():
            if getattr(args, "needs_tf", False) and not args.verbose:
                _import_tensorflow_quietly()
            return int(args.func(args))
    except Terminated as exc:
        print(f"transferkit: {exc}", file=sys.stderr)
        return EXIT_TERMINATED
    except _UsageError as exc:
        print(f"transferkit {args.command}: error: {exc}", file=sys.stderr)
        print(f"(see `transferkit {args.command} --help`)", file=sys.stderr)
        return EXIT_USAGE
    except TransferkitError as exc:
        if args.verbose:
            raise
        print(f"transferkit: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        detail = str(exc) or "cached work is kept; run again to resume"
        print(f"transferkit: interrupted ({detail})", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError as exc:  # the checks before allocating missed a case
        if args.verbose:
            raise
        print(f"transferkit: error: out of memory ({exc or 'MemoryError'}); lower --batch-size "
              "or the image sizes (--image-size, --input-size)", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # e.g. `transferkit info ... | head -1`
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except OSError as exc:  # a file that cannot be written, a full disk...
        if args.verbose:
            raise
        print(f"transferkit: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
