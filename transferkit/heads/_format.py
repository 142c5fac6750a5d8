"""The head file format: how a fitted head is saved to, and read back from, one file.

Layout (format version 1)
-------------------------
A head file is a zip archive (``.tkhead`` by convention; any name works) with members:

``meta.json`` (always)
    A JSON object: ``format`` (``"transferkit-head"``), ``format_version`` (an int;
    :data:`HEAD_FORMAT_VERSION` when written, and newer versions are refused),
    ``transferkit_version``, ``class`` (``"DenseHead"`` or ``"SklearnHead"``: the class
    *name*; no module path is stored), ``params`` (the constructor parameters that are
    JSON; parameters a reader does not know are refused), ``classes`` (``{"values": [...],
    "kind": dtype kind, "dtype": dtype string}``, so ``classes_`` comes back with its
    dtype), ``n_features_in`` and, when fitted on named columns, ``feature_names_in``.
    A :class:`~transferkit.heads.DenseHead` adds ``n_iter`` and ``history``; a
    :class:`~transferkit.heads.SklearnHead` adds ``serializer`` (``"skops"`` or
    ``"pickle"``) and ``default_estimator`` (True when ``estimator=None``).
``model.keras``, ``mean.npy``, ``scale.npy`` (DenseHead)
    The Keras 3 model (read with ``safe_mode=True``) and, with ``standardize=True``, the
    float32 standardization arrays of shape ``(n_features_in,)`` (``.npy``, no pickle).
``estimator.skops``, ``scaler.skops`` (SklearnHead, ``serializer="skops"``)
    The fitted estimator and, with ``standardize=True``, the fitted scaler.
``state.pkl`` (SklearnHead, ``serializer="pickle"``, written when skops is missing)
    A pickle of ``{"estimator_": ..., "scaler_": ...}``; only read with
    ``allow_pickle=True``.
``provenance.json`` (optional)
    A JSON object written by tools (the command line records how the head's features
    were made: extractor, input size, data); :func:`load_head` ignores it, and
    :func:`read_head_provenance` reads it.

Invariants
----------
* A file is written once, atomically (:func:`write_head`): to a temporary file in the
  same folder, flushed and fsynced, then moved into place with ``os.replace``. A path
  never holds a half-written head, and a failed save leaves the previous file intact.
  Extra members such as ``provenance.json`` are written in the same step
  (:func:`save_head`); nothing patches an archive in place.
* The class list and feature count of ``meta.json`` match the model or estimator stored
  beside them; a file where they do not is refused as damaged at load.
* Loading runs no code from the file unless ``allow_pickle=True``: Keras' safe mode,
  ``.npy`` without pickle, and skops with trusted types only (classes of scikit-learn,
  NumPy and SciPy automatically, others when listed in ``trusted``).
* A :class:`~transferkit.heads.SklearnHead`'s estimator is trained on the codes
  ``0..n_classes-1``: its ``classes_`` has as many codes as ``classes`` unless the head
  was fitted on one-hot labels with a column no row used.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._atomic import atomic_path
from .._validation import check_bool, describe, param_names
from ..exceptions import InvalidInputError, InvalidTypeError, TransferkitError
from ._common import check_fitted

if TYPE_CHECKING:
    from .dense import DenseHead
    from .sklearn_head import SklearnHead

__all__ = [
    "ESTIMATOR_SKOPS",
    "FORMAT_NAME",
    "HEAD_FORMAT_VERSION",
    "HeadFile",
    "MEAN",
    "META",
    "MODEL",
    "PROVENANCE",
    "SCALE",
    "SCALER_SKOPS",
    "STATE_PICKLE",
    "base_meta",
    "check_path",
    "dump_sklearn_state",
    "import_skops",
    "is_auto_trusted",
    "load_head",
    "load_sklearn_state",
    "model_from_bytes",
    "model_to_bytes",
    "npy_bytes",
    "npy_load",
    "read_head_metadata",
    "read_head_provenance",
    "restore_base",
    "save_head",
    "shown",
    "write_head",
]

#: Version of the head file format written by ``save``; files with a newer version
#: are refused by :func:`load_head`.
HEAD_FORMAT_VERSION = 1

FORMAT_NAME = "transferkit-head"
META = "meta.json"
MODEL = "model.keras"
MEAN = "mean.npy"
SCALE = "scale.npy"
ESTIMATOR_SKOPS = "estimator.skops"
SCALER_SKOPS = "scaler.skops"
STATE_PICKLE = "state.pkl"
PROVENANCE = "provenance.json"
# Modules whose *classes* are trusted automatically when loading skops files.
_AUTO_TRUSTED_ROOTS = ("sklearn", "numpy", "scipy")
_HEAD_CLASSES = ("DenseHead", "SklearnHead")


def check_path(path: Any, name: str = "path") -> Path:
    """``path`` as a Path; InvalidTypeError unless it is a str or os.PathLike."""
    if not isinstance(path, str | os.PathLike):
        raise InvalidTypeError(f"`{name}` must be a str or os.PathLike; received {describe(path)}.")
    return Path(path)


# --------------------------------------------------------------------------- metadata


def _classes_to_json(classes: np.ndarray) -> dict[str, Any]:
    values = classes.tolist()
    try:
        json.dumps(values)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            "`classes_` must hold JSON-serializable labels (integers, strings, booleans or "
            f"floats) to be saved; received {describe(classes)}."
        ) from exc
    return {"values": values, "kind": classes.dtype.kind, "dtype": classes.dtype.str}


def _classes_from_json(spec: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(spec["dtype"])
    if dtype.kind == "O":
        out = np.empty(len(spec["values"]), dtype=object)
        out[:] = spec["values"]
        return out
    return np.asarray(spec["values"], dtype=dtype)


def base_meta(head: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The ``meta.json`` keys every head writes (see the module docstring)."""
    from .. import __version__

    meta: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": HEAD_FORMAT_VERSION,
        "transferkit_version": __version__,
        "class": type(head).__name__,
        "params": params,
        "classes": _classes_to_json(head.classes_),
        "n_features_in": int(head.n_features_in_),
    }
    if hasattr(head, "feature_names_in_"):
        meta["feature_names_in"] = [str(f) for f in head.feature_names_in_]
    return meta


def restore_base(head: Any, meta: dict[str, Any]) -> None:
    """Set the attributes :func:`base_meta` recorded (``classes_``, ``n_features_in_``...)."""
    head.classes_ = _classes_from_json(meta["classes"])
    head.n_features_in_ = int(meta["n_features_in"])
    if "feature_names_in" in meta:
        head.feature_names_in_ = np.asarray(meta["feature_names_in"], dtype=object)


def _parse_meta(data: bytes, where: str) -> dict[str, Any]:
    """Decode and check ``meta.json``: a head file of a version this transferkit reads."""
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"{where} must hold valid JSON in {META}; it is damaged: {exc}"
                                ) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        received = describe(meta.get("format") if isinstance(meta, dict) else meta)
        raise InvalidInputError(
            f"{where} must be a transferkit head file ({META} with format={FORMAT_NAME!r}); "
            f"received format {received}."
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or version > HEAD_FORMAT_VERSION or version < 1:
        raise InvalidInputError(
            f"{where} has head format version {version!r}; this transferkit reads "
            f"versions 1..{HEAD_FORMAT_VERSION}. Upgrade transferkit to load it."
        )
    for key in ("class", "params", "classes", "n_features_in"):
        if key not in meta:
            raise InvalidInputError(f"{where} is damaged: {META} lacks {key!r}.")
    return meta


# --------------------------------------------------------------------------- reading


def _where(path: Path) -> str:
    return f"`path` ({str(path)!r})"


def _open_zip(path: Any) -> tuple[zipfile.ZipFile, str]:
    """Open a head file's archive; errors name the file and say what it must be."""
    path = check_path(path)
    where = _where(path)
    if not path.is_file():
        raise InvalidInputError(
            f"{where} must be an existing head file written by `head.save(path)`; no such file."
        )
    try:
        return zipfile.ZipFile(path), where
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise _not_a_zip(where, exc) from exc


def _not_a_zip(where: str, exc: BaseException) -> InvalidInputError:
    return InvalidInputError(
        f"{where} must be a transferkit head file (a zip archive written by "
        f"`head.save(path)`); it is not a readable zip archive: {exc}"
    )


def _missing_meta(where: str, names: Sequence[str]) -> InvalidInputError:
    return InvalidInputError(
        f"{where} must be a transferkit head file containing {META}; "
        f"received a zip archive with {sorted(names)[:10]}."
    )


def _read_member(path: Any, name: str) -> tuple[bytes | None, str]:
    """One member of a head file's archive (None when it has none), without the others."""
    zf, where = _open_zip(path)
    try:
        with zf:
            return (zf.read(name) if name in zf.namelist() else None), where
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise _not_a_zip(where, exc) from exc


def _read_names(path: Any) -> list[str]:
    zf, _ = _open_zip(path)
    with zf:
        return zf.namelist()


class HeadFile:
    """Read access to a saved head: the checked ``meta.json`` and the raw members.

    Parameters
    ----------
    path : str or os.PathLike
        The head file.

    Attributes
    ----------
    path : Path
    where : str
        How error messages name the file.
    members : dict of str to bytes
        Every member of the archive.
    meta : dict
        ``meta.json``, checked: a head file of a format version this transferkit reads.
    """

    def __init__(self, path: Any) -> None:
        self.path = check_path(path)
        zf, self.where = _open_zip(self.path)
        self.members: dict[str, bytes] = {}
        try:
            with zf:
                for info in zf.infolist():
                    self.members[info.filename] = zf.read(info)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
            raise _not_a_zip(self.where, exc) from exc
        if META not in self.members:
            raise _missing_meta(self.where, list(self.members))
        self.meta = _parse_meta(self.members[META], self.where)

    def member(self, name: str) -> bytes:
        """The bytes of member ``name``; InvalidInputError (damaged) if it is missing."""
        try:
            return self.members[name]
        except KeyError:
            raise InvalidInputError(
                f"{self.where} is damaged: expected a member {name!r} in the archive; "
                f"received members {sorted(self.members)}."
            ) from None

    def check_class(self, cls: type) -> None:
        """Refuse a file that holds another head class than ``cls``."""
        if self.meta["class"] != cls.__name__:
            raise InvalidInputError(
                f"{self.where} must hold a {cls.__name__}; received a file holding a "
                f"{self.meta['class']!r}. Use `transferkit.heads.load_head(path)` to load "
                "any head."
            )

    def params_for(self, cls: type) -> dict[str, Any]:
        """The stored constructor parameters, all of them known to ``cls``."""
        params = self.meta["params"]
        allowed = set(param_names(cls))
        if not isinstance(params, dict) or not set(params) <= allowed:
            raise InvalidInputError(
                f"{self.where} is damaged or from a newer transferkit: expected parameters "
                f"among {sorted(allowed)}; received {describe(params)}."
            )
        return params

    def damaged(self, exc: BaseException) -> InvalidInputError:
        """The error for a member that could not be decoded."""
        return InvalidInputError(f"{self.where} is damaged: {type(exc).__name__}: {exc}")

    def mismatch(self, what: str) -> InvalidInputError:
        """The error for ``meta.json`` disagreeing with the model stored beside it."""
        return InvalidInputError(
            f"{self.where} is damaged: {what}. Its {META} and its model were not saved "
            "together (edited or mixed up files): train the head again and save it."
        )


def shown(classes: np.ndarray) -> str:
    """At most ten classes, for messages."""
    values = np.asarray(classes).tolist()
    return f"{values[:10]}{' ...' if len(values) > 10 else ''}"


def read_head_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The checked ``meta.json`` of a head file, without reading its model.

    Parameters
    ----------
    path : str or os.PathLike
        A head file.

    Returns
    -------
    meta : dict
        ``meta.json`` (see the module docstring); ``meta["class"]`` names the head class.

    Raises
    ------
    InvalidInputError
        If the file is missing, not a head file, damaged or of a newer format version.
    """
    data, where = _read_member(path, META)
    if data is None:
        raise _missing_meta(where, _read_names(path))
    return _parse_meta(data, where)


def read_head_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """The ``provenance.json`` a tool saved in a head file (``{}`` when there is none).

    Parameters
    ----------
    path : str or os.PathLike
        A head file.

    Returns
    -------
    provenance : dict
        As passed to :func:`save_head`.

    Raises
    ------
    InvalidInputError
        If the file is missing or not a readable zip archive, or its
        ``provenance.json`` is not a JSON object.
    """
    data, where = _read_member(path, PROVENANCE)
    if data is None:
        return {}
    try:
        provenance = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(
            f"{where} must hold a JSON object in {PROVENANCE}; it is damaged: {exc}"
        ) from exc
    if not isinstance(provenance, dict):
        raise InvalidInputError(
            f"{where} must hold a JSON object in {PROVENANCE}; received {describe(provenance)}."
        )
    return provenance


# --------------------------------------------------------------------------- writing


def write_head(
    path: Path,
    meta: dict[str, Any],
    members: dict[str, bytes],
    *,
    provenance: dict[str, Any] | None = None,
) -> None:
    """Write ``meta.json``, ``members`` and ``provenance.json`` to ``path``, atomically.

    Through a temporary file in the same folder, fsynced, then ``os.replace``: ``path``
    never holds a half-written head, and the previous file survives a failure.
    """
    files = {META: json.dumps(meta, indent=2).encode("utf-8"), **members}
    if provenance is not None:
        files[PROVENANCE] = json.dumps(provenance, indent=2, default=str).encode("utf-8")
    with atomic_path(path, make_folder=False) as tmp, zipfile.ZipFile(
        tmp, "w", compression=zipfile.ZIP_DEFLATED
    ) as zf:
        for member, data in files.items():
            zf.writestr(member, data)


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as ``.npy`` bytes (no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def npy_load(data: bytes) -> np.ndarray:
    """Read ``.npy`` bytes (no pickle)."""
    return np.load(io.BytesIO(data), allow_pickle=False)


def model_to_bytes(model: Any) -> bytes:
    """A Keras model as the bytes of a ``.keras`` file."""
    import keras

    with tempfile.TemporaryDirectory(prefix="transferkit-") as tmp:
        file = os.path.join(tmp, MODEL)
        keras.saving.save_model(model, file)
        with open(file, "rb") as fh:
            return fh.read()


def model_from_bytes(data: bytes, *, source: str) -> Any:
    """Load a Keras model from ``.keras`` bytes (safe mode, not compiled)."""
    import keras

    with tempfile.TemporaryDirectory(prefix="transferkit-") as tmp:
        file = os.path.join(tmp, MODEL)
        with open(file, "wb") as fh:
            fh.write(data)
        try:
            return keras.saving.load_model(file, safe_mode=True, compile=False)
        except Exception as exc:  # keras raises many types for a damaged file
            raise InvalidInputError(
                f"{source} must hold a valid Keras model (model.keras); it could not be "
                f"loaded: {type(exc).__name__}: {exc}"
            ) from exc


# --------------------------------------------------------------------------- scikit-learn


def import_skops() -> Any:
    """Return ``skops.io``, or None when skops is not installed."""
    try:
        return importlib.import_module("skops.io")
    except ImportError:
        return None


def is_auto_trusted(type_name: str) -> bool:
    """Whether ``type_name`` is a *class* defined in scikit-learn, NumPy or SciPy.

    Functions are never trusted automatically (a function such as ``numpy.load``
    could be misused by a crafted file), nor are names with dunder components.
    """
    parts = type_name.split(".")
    if parts[0] not in _AUTO_TRUSTED_ROOTS or len(parts) < 2:
        return False
    if any(p.startswith("__") or not p.isidentifier() for p in parts):
        return False
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return isinstance(obj, type)
    return False


def _skops_load(sio: Any, data: bytes, trusted: Sequence[str] | None, where: str) -> Any:
    if trusted is None:
        trusted = []
    if isinstance(trusted, str) or not all(isinstance(t, str) for t in trusted):
        raise InvalidTypeError(
            "`trusted` must be a list of type names such as ['mypackage.MyClassifier']; "
            f"received {describe(trusted)}."
        )
    try:
        untrusted = list(sio.get_untrusted_types(data=data))
    except Exception as exc:
        raise InvalidInputError(
            f"{where} is damaged: its skops data could not be read: {type(exc).__name__}: {exc}"
        ) from exc
    user = set(trusted)
    refused = [t for t in untrusted if t not in user and not is_auto_trusted(t)]
    if refused:
        raise InvalidInputError(
            f"{where} contains types that are not trusted: {refused}. Only classes from "
            "scikit-learn, NumPy and SciPy are trusted automatically. If you trust the "
            "file and these types, pass them explicitly, e.g. "
            f"`load_head(path, trusted={refused!r})`."
        )
    try:
        return sio.loads(data, trusted=untrusted)
    except Exception as exc:
        raise InvalidInputError(
            f"{where} is damaged: its skops data could not be loaded: {type(exc).__name__}: {exc}"
        ) from exc


def dump_sklearn_state(estimator: Any, scaler: Any) -> tuple[str, dict[str, bytes]]:
    """Serialize a fitted estimator and scaler: with skops if installed, else pickle.

    Returns
    -------
    serializer : {"skops", "pickle"}
        The value of ``meta["serializer"]``.
    members : dict of str to bytes
        The archive members holding them.
    """
    sio = import_skops()
    if sio is None:
        state = {"estimator_": estimator, "scaler_": scaler}
        return "pickle", {STATE_PICKLE: pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)}
    members: dict[str, bytes] = {}
    try:
        members[ESTIMATOR_SKOPS] = sio.dumps(estimator)
        if scaler is not None:
            members[SCALER_SKOPS] = sio.dumps(scaler)
    except Exception as exc:  # skops raises various types for unsupported objects
        raise InvalidInputError(
            "`estimator_` must be serializable with skops.io to be saved; "
            f"received {describe(estimator)}: {type(exc).__name__}: {exc}"
        ) from exc
    return "skops", members


def load_sklearn_state(
    hf: HeadFile, *, trusted: Sequence[str] | None, allow_pickle: bool
) -> tuple[Any, Any]:
    """Read back what :func:`dump_sklearn_state` wrote: ``(estimator, scaler or None)``."""
    serializer = hf.meta.get("serializer")
    if serializer == "skops":
        sio = import_skops()
        if sio is None:
            raise InvalidInputError(
                f"{hf.where} was saved with skops, which is not installed: expected the "
                "`skops` package to read it; install it with `pip install skops`."
            )
        estimator = _skops_load(sio, hf.member(ESTIMATOR_SKOPS), trusted, hf.where)
        scaler = None
        if SCALER_SKOPS in hf.members:
            scaler = _skops_load(sio, hf.member(SCALER_SKOPS), trusted, hf.where)
        return estimator, scaler
    if serializer == "pickle":
        if not check_bool("allow_pickle", allow_pickle):
            raise InvalidInputError(
                f"{hf.where} was saved with pickle (skops was not installed), and "
                "loading a pickle can run arbitrary code. Expected `allow_pickle=True` "
                "to load it; received allow_pickle=False. Only pass allow_pickle=True "
                "for files you trust, or install skops (`pip install skops`) and "
                "re-save the head so it can be loaded safely."
            )
        try:
            state = pickle.loads(hf.member(STATE_PICKLE))
            return state["estimator_"], state["scaler_"]
        except TransferkitError:
            raise
        except Exception as exc:
            raise InvalidInputError(
                f"{hf.where} is damaged: its pickled estimator could not be loaded: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    raise InvalidInputError(
        f"{hf.where} is damaged: expected serializer 'skops' or 'pickle' in "
        f"{META}; received {serializer!r}."
    )


# --------------------------------------------------------------------------- any head


def save_head(
    head: DenseHead | SklearnHead,
    path: str | os.PathLike,
    *,
    provenance: dict[str, Any] | None = None,
) -> None:
    """Save a fitted head, optionally with a ``provenance.json`` member, in one atomic write.

    ``save_head(head, path)`` is ``head.save(path)``.

    Parameters
    ----------
    head : DenseHead or SklearnHead
        A fitted head.
    path : str or os.PathLike
        Destination file; overwritten if it exists.
    provenance : dict, optional
        A JSON object to store as ``provenance.json`` (values that are not JSON are
        stored as their ``str``); read back with :func:`read_head_provenance`.

    Raises
    ------
    NotFittedError
        If the head is not fitted.
    """
    from .dense import DenseHead, pack_dense_head
    from .sklearn_head import SklearnHead, pack_sklearn_head

    if not isinstance(head, DenseHead | SklearnHead):
        raise InvalidTypeError(
            f"`head` must be a DenseHead or a SklearnHead; received {describe(head)}."
        )
    if provenance is not None and not isinstance(provenance, dict):
        raise InvalidTypeError(
            f"`provenance` must be a dict (a JSON object) or None; received "
            f"{describe(provenance)}."
        )
    check_fitted(head, "save")
    path = check_path(path)
    pack = pack_dense_head if isinstance(head, DenseHead) else pack_sklearn_head
    meta, members = pack(head)  # type: ignore[operator]
    write_head(path, meta, members, provenance=provenance)


def load_head(
    path: str | os.PathLike,
    *,
    trusted: Sequence[str] | None = None,
    allow_pickle: bool = False,
) -> DenseHead | SklearnHead:
    """Load any head written by ``DenseHead.save`` or ``SklearnHead.save``.

    Parameters
    ----------
    path : str or os.PathLike
        The head file (a zip archive; ``.tkhead`` by convention).
    trusted : sequence of str, optional
        For :class:`SklearnHead` files saved with skops: extra type names to trust
        beyond the classes of scikit-learn, NumPy and SciPy.
    allow_pickle : bool, default=False
        For :class:`SklearnHead` files saved with pickle (skops not installed at save
        time): allow unpickling, which can run arbitrary code. Only for trusted files.

    Returns
    -------
    head : DenseHead or SklearnHead
        The fitted head; it predicts exactly like the one that was saved.

    Raises
    ------
    InvalidInputError
        If the file is missing, not a head file, damaged (including a class list or
        feature count in ``meta.json`` that does not match the model or estimator
        stored beside it), from a newer transferkit, needs untrusted types, or is a
        pickle and ``allow_pickle`` is False.
    """
    hf = HeadFile(path)
    kind = hf.meta["class"]
    if kind == "DenseHead":
        from .dense import unpack_dense_head

        return unpack_dense_head(hf)
    if kind == "SklearnHead":
        from .sklearn_head import unpack_sklearn_head

        return unpack_sklearn_head(hf, trusted=trusted, allow_pickle=allow_pickle)
    raise InvalidInputError(
        f"{hf.where} must hold a {' or a '.join(_HEAD_CLASSES)}; received a file holding "
        f"{kind!r}."
    )
