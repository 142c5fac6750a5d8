"""Helpers the commands share: exit codes, printing, progress, extractors, cache entries, heads.

Results go to standard output (:func:`echo`); notes and progress go to standard
error (:func:`note`, :class:`ProgressExtractor`, :func:`fit_with_progress`).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._validation import param_names
from ._options import (
    PARAM_OPTIONS,
    UsageError,
    input_file,
    options_checked,
    weights_file,
)

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "ProgressExtractor",
    "build_extractor",
    "check_head_extractor",
    "config_difference",
    "echo",
    "extractor_summary",
    "fit_with_progress",
    "import_tensorflow_quietly",
    "load_head",
    "load_hf_dataset",
    "mb",
    "note",
    "open_cache",
    "progress_mode",
    "provenances",
    "select_entry",
    "short_key",
    "tag_entry",
    "weights_label",
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

_PROVENANCE_ATTR = "provenance"  # JSON attribute the CLI adds to the cache entries it writes


def echo(*args: Any) -> None:
    """Print a result line on standard output."""
    print(*args, flush=True)


def note(text: str) -> None:
    """Print a note on standard error."""
    print(text, file=sys.stderr, flush=True)


def import_tensorflow_quietly() -> None:
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


# =========================================================================== progress


def progress_mode(args: argparse.Namespace) -> str:
    """The ``--progress`` mode of the parsed options."""
    return getattr(args, "progress", "auto")


class ProgressExtractor:
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
        from ..progress import Progress

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
    from ..progress import keras_callback, resolve_mode

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


def fit_with_progress(estimator: Any, X: Any, y: Any, *, mode: str, desc: str) -> float:
    """Fit ``estimator``, showing Keras training progress; returns the seconds it took."""
    t = time.perf_counter()
    fit_params = inspect.signature(estimator.fit).parameters
    if "callbacks" in fit_params:  # estimators that accept Keras callbacks directly
        from ..progress import keras_callback

        estimator.fit(X, y, callbacks=[keras_callback(desc=desc, mode=mode)])
    elif _is_keras_estimator(estimator):
        with _keras_progress(mode, desc):
            estimator.fit(X, y)
    else:
        estimator.fit(X, y)
    return time.perf_counter() - t


def _is_keras_estimator(estimator: Any) -> bool:
    from ..extractors import CifarCNN
    from ..heads import DenseHead

    if isinstance(estimator, CifarCNN | DenseHead):
        return True
    # A FineTuner's module is loaded once there is one; importing it imports TensorFlow.
    fine_tune = sys.modules.get("transferkit.fine_tune")
    return fine_tune is not None and isinstance(estimator, fine_tune.FineTuner)


# =========================================================================== descriptions


def mb(nbytes: float) -> str:
    """``nbytes`` in megabytes, one decimal."""
    return f"{nbytes / 1e6:.1f}"


def short_key(key: str) -> str:
    """The first 12 characters of a cache key, as the CLI shows them."""
    return key[:12]


def weights_label(weights: Any) -> str:
    """A short label for the ``weights`` an extractor's ``describe()`` records."""
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


def extractor_summary(config: dict[str, Any]) -> str:
    """``vgg16 (weights=imagenet, pooling=avg, input_size=64)`` from ``describe()``."""
    parts = [f"weights={weights_label(config.get('weights'))}"]
    for key in ("layer", "pooling", "input_size"):
        if config.get(key) is not None:
            parts.append(f"{key}={config[key]}")
    return f"{config.get('extractor', '?')} ({', '.join(parts)})"


def config_difference(mine: Any, theirs: Any, mine_label: str, theirs_label: str) -> str:
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
        text = weights_label(value) if key == "weights" else (
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
        f"the recorded settings are identical ({extractor_summary(a)}) but the fingerprints "
        "differ: another transferkit version computed one of them, so the features may "
        "differ too"
    )


# =========================================================================== extractors


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
    layer = params.get("layer")
    if isinstance(layer, str) and "," in layer:  # several layers, pooled and concatenated
        params["layer"] = [part.strip() for part in layer.split(",")]
    return params


def build_extractor(
    args: argparse.Namespace, saved: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any]]:
    """The extractor the options describe (over ``saved`` settings, if any).

    Returns the extractor and how to rebuild it: ``{"name", "params", "cnn"}``.
    """
    from ..extractors import CifarCNN, create_extractor, get_extractor_class, list_extractors

    saved = saved or {}
    cnn = getattr(args, "cnn", None)
    name = args.extractor
    if name is not None and name not in list_extractors():
        raise UsageError(
            f"--extractor must be one of {', '.join(list_extractors())}; received {name!r}"
        )
    weights_file(args)
    if cnn is None and name is None and saved.get("name") == "cifar_cnn":
        cnn = saved.get("cnn")
    if cnn is not None:
        if name not in (None, "cifar_cnn"):
            raise UsageError("pass either --cnn (a trained CifarCNN) or --extractor, not both")
        given = [o for o, v in (("--weights", args.weights), ("--layer", args.layer),
                                ("--pooling", args.pooling), ("--input-size", args.input_size))
                 if v is not None]
        if given:
            raise UsageError(f"{', '.join(given)} do not apply to --cnn (a trained CifarCNN)")
        path = input_file("--cnn", cnn) or Path(cnn)
        if not path.is_file():
            from ..exceptions import InvalidInputError

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
        raise UsageError(
            f"the {name!r} extractor must be trained first: train one with `transferkit "
            "train-cnn` and pass it with --cnn PATH.keras"
        )
    unknown = sorted(set(given) - set(param_names(cls)))
    if unknown:
        options = ", ".join(PARAM_OPTIONS.get(k, "--" + k.replace("_", "-")) for k in unknown)
        raise UsageError(f"{options} do{'es' if len(unknown) == 1 else ''} not apply to "
                         f"the {name!r} extractor")
    extractor = create_extractor(name, **params)
    with options_checked(list(given)):  # a missing weights file stays exit code 1
        extractor.check_params()
    return extractor, {"name": name, "params": params, "cnn": None}


def check_head_extractor(extractor: Any, saved: dict[str, Any], *, ignore: bool) -> None:
    """Refuse an extractor whose features differ from those a head file was fitted on.

    Parameters
    ----------
    extractor : BaseExtractor
        The extractor the options describe (:func:`build_extractor`).
    saved : dict
        The ``extractor`` of the head file's provenance (``{}``: nothing to compare).
    ignore : bool
        ``--ignore-fingerprint``: use the extractor all the same.

    Raises
    ------
    InvalidInputError
        When the fingerprints differ (and not ``ignore``), saying which settings differ.
    """
    from ..exceptions import InvalidInputError

    if not saved.get("fingerprint") or extractor.fingerprint == saved["fingerprint"] or ignore:
        return
    difference = config_difference(extractor.describe(), saved.get("config"), "given", "head")
    raise InvalidInputError(
        f"The extractor {extractor_summary(extractor.describe())} differs from the one "
        f"the head was trained on: {difference}. Its predictions would be "
        "meaningless. Drop the options that change it (or pass the same weights file "
        "/ --cnn model), or pass --ignore-fingerprint."
    )


# =========================================================================== cache entries


def tag_entry(cache: Any, key: str, meta: dict[str, Any]) -> None:
    """Record where an entry's images came from and how its extractor was built.

    Stored as the entry's ``provenance`` annotation (JSON), written under the cache's
    own locks so readers and writers in other processes are never disturbed.
    """
    from ..exceptions import InvalidInputError

    if cache.path.is_file():
        with contextlib.suppress(InvalidInputError):  # no such entry: nothing to record
            cache.annotate(key, **{_PROVENANCE_ATTR: meta})


def provenances(cache: Any) -> dict[str, dict[str, Any]]:
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
    return (f"  {short_key(entry.key)}  {extractor_summary(entry.extractor_config)}, "
            f"{entry.n_images}x{entry.feature_dim}{where}, {entry.created}{status}")


def open_cache(path_text: str) -> Any:
    """The feature cache ``--cache`` names, which must exist."""
    from ..cache import FeatureCache
    from ..exceptions import CacheError

    path = input_file("--cache", path_text) or Path(path_text)
    if not path.is_file():
        raise CacheError(
            f"The feature cache {str(path)!r} does not exist; create it with "
            "`transferkit extract --cache PATH ...`."
        )
    return FeatureCache(path)


def select_entry(
    cache: Any, args: argparse.Namespace, natural_split: str
) -> tuple[Any, dict[str, Any]]:
    """The entry chosen by --key, or by --extractor/--split (--latest for the newest)."""
    from ..exceptions import CacheError

    entries = cache.entries(include_incomplete=True)
    provs = provenances(cache)
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
                f"Entry {short_key(entry.key)} is incomplete ({entry.n_done}/{entry.n_images} "
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


# =========================================================================== heads


def _head_file_info(path: Path) -> tuple[str | None, dict[str, Any]]:
    """The class stored in a head file and the provenance the CLI added (if any)."""
    from ..exceptions import TransferkitError
    from ..heads import read_head_metadata, read_head_provenance

    try:
        kind = read_head_metadata(path)["class"]
        prov = read_head_provenance(path)
    except (OSError, TransferkitError):
        return None, {}  # load_head reports what is wrong
    return (kind if isinstance(kind, str) else None), prov


def load_head(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The head ``--head`` names (``--trust``, ``--allow-pickle``) and its provenance."""
    from ..heads import load_head as load_head_file

    path = input_file("--head", args.head) or Path(args.head)
    kind, prov = _head_file_info(path)
    if kind == "DenseHead" and not args.verbose:
        import_tensorflow_quietly()
    head = load_head_file(path, trusted=args.trust or None, allow_pickle=args.allow_pickle)
    return head, prov


def load_hf_dataset(path_or_name: str, split: str | None) -> tuple[Any, str]:
    """The Hugging Face dataset split ``--hf-dataset`` / ``--hf-split`` name, and its name.

    A folder written by ``save_to_disk`` is loaded with ``load_from_disk``; any other
    folder, or a hub name, with ``load_dataset`` (a hub name needs the network).
    """
    from ..exceptions import DatasetNotFoundError, MissingDependencyError

    try:
        import datasets
    except ImportError as err:
        raise MissingDependencyError(
            f"--hf-dataset needs the Hugging Face datasets package: pip install "
            f"'transferkit[hf]' ({err})."
        ) from err
    path = Path(path_or_name).expanduser()
    saved = path.is_dir() and any(
        (path / name).is_file() for name in ("dataset_dict.json", "state.json"))
    try:
        loaded = (datasets.load_from_disk(str(path)) if saved
                  else datasets.load_dataset(str(path) if path.exists() else path_or_name))
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds; all mean "not loaded"
        raise DatasetNotFoundError(
            f"--hf-dataset {path_or_name!r} could not be loaded: {type(err).__name__}: {err}. "
            "Pass a folder written by Dataset.save_to_disk, a local folder load_dataset reads "
            "(e.g. an image folder), or a hub name (with network access)."
        ) from err
    if not isinstance(loaded, datasets.DatasetDict):
        if split is not None:
            raise UsageError(f"--hf-split {split!r}: {path_or_name} is one dataset without "
                             "splits; leave --hf-split out")
        return loaded, "all"
    names = list(loaded)
    chosen = split if split is not None else (
        "train" if "train" in names else names[0] if len(names) == 1 else None)
    if chosen not in names:
        raise UsageError(f"--hf-split: {path_or_name} has the splits {names}; pick one with "
                         f"--hf-split{'' if split is None else f' (received {split!r})'}")
    return loaded[chosen], chosen
