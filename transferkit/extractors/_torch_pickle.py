"""Reading PyTorch state dicts saved in the legacy (non-zip) format, without PyTorch.

The legacy ``torch.save`` format (PyTorch < 1.6 default, still written with
``_use_new_zipfile_serialization=False``) is five consecutive pickles followed by raw
storage bytes:

1. the magic number ``0x1950A86A20F9469CFC6C``;
2. the protocol version, ``1001``;
3. system info (a dict: ``little_endian``, type sizes);
4. the state dict itself; each tensor is a ``torch._utils._rebuild_tensor_v2(storage,
   offset, size, stride, ...)`` call whose storage is a persistent id
   ``("storage", torch.<Type>Storage, key, location, numel[, view])``;
5. the list of storage keys;

then, for each key in that order, an 8-byte little-endian element count followed by the
storage's raw bytes (in the byte order of step 3).

Security invariant: every pickle is read by :class:`_RestrictedUnpickler`, which
resolves only ``collections.OrderedDict`` (the real class, which runs no user code),
``torch._utils._rebuild_tensor_v2`` and the ``torch.*Storage`` types (both to inert
stand-ins that only record what they are given). Any other global raises
:class:`UnsafePickleError` before anything is called, so nothing in a file can run
code. Tensors are materialised from the raw bytes only after every pickle was read,
with their offsets, shapes and strides checked against their storage.
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..exceptions import InvalidInputError, UnsafePickleError

__all__ = ["UnsafePickleError", "is_torch_file", "load_legacy_torch_state_dict"]


#: The legacy ``torch.save`` magic number, the first pickle in such files.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "b1",
}


class _StorageType:
    """Stand-in for a ``torch.*Storage`` class: only remembers the element dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: str) -> None:
        self.name = name
        self.dtype = dtype

    def __reduce__(self) -> Any:  # pragma: no cover - never pickled
        raise TypeError("storage stand-ins cannot be pickled")


class _StorageRef:
    """A persistent-id reference to one storage of the file (its bytes come later)."""

    __slots__ = ("key", "dtype", "numel", "view_offset", "view_numel")

    def __init__(
        self, key: str, dtype: str, numel: int, view_offset: int = 0, view_numel: int | None = None
    ) -> None:
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.view_offset = view_offset
        self.view_numel = numel if view_numel is None else view_numel


class _PendingTensor:
    """What ``torch._utils._rebuild_tensor_v2`` would rebuild, kept until bytes are read."""

    __slots__ = ("storage", "offset", "shape", "stride")

    def __init__(
        self, storage: _StorageRef, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]
    ) -> None:
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.stride = stride


def _is_int_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    )


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _PendingTensor:
    """Pure-Python stand-in for ``torch._utils._rebuild_tensor_v2``: records, computes nothing."""
    if not isinstance(storage, _StorageRef):
        raise UnsafePickleError("a tensor in the weights file does not reference a storage")
    if (
        not isinstance(storage_offset, int)
        or storage_offset < 0
        or not _is_int_tuple(size)
        or not _is_int_tuple(stride)
        or len(size) != len(stride)
    ):
        raise UnsafePickleError(
            "a tensor in the weights file has an invalid offset, size or stride: "
            f"{storage_offset!r}, {size!r}, {stride!r}"
        )
    return _PendingTensor(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for state dicts: only an allow-list of globals, mapped to stand-ins.

    ``collections.OrderedDict`` is the real class (it runs no user code);
    ``torch._utils._rebuild_tensor_v2`` and the ``torch.*Storage`` types are replaced by
    inert stand-ins. Any other global (``os.system``, ``builtins.eval``, ...) raises
    :class:`UnsafePickleError` before anything is called.
    """

    def __init__(self, file: BinaryIO, *, source: str, byteorder: str = "<") -> None:
        super().__init__(file)
        self._source = source
        self._byteorder = byteorder
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, self._byteorder + _STORAGE_DTYPES[name])
        raise UnsafePickleError(
            f"Refusing to load {self._source}: it asks for the global '{module}.{name}', "
            "which a PyTorch state dict does not need (only collections.OrderedDict, "
            "torch._utils._rebuild_tensor_v2 and torch.*Storage are allowed). The file may "
            "be malicious or not a plain state dict; nothing from it was executed."
        )

    def persistent_load(self, pid: Any) -> Any:
        if (
            not isinstance(pid, tuple)
            or len(pid) not in (5, 6)
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
            or not isinstance(pid[2], str)
            or not isinstance(pid[4], int)
            or pid[4] < 0
        ):
            raise UnsafePickleError(
                f"Refusing to load {self._source}: unexpected persistent id {pid!r:.80} "
                "(expected a ('storage', type, key, location, size) record)."
            )
        _, stype, key, _location, numel = pid[:5]
        ref = self.storages.get(key)
        if ref is None:
            ref = self.storages[key] = _StorageRef(key, stype.dtype, numel)
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return ref
        if (
            not isinstance(view, tuple)
            or len(view) != 3
            or not isinstance(view[1], int)
            or not isinstance(view[2], int)
        ):
            raise UnsafePickleError(f"Refusing to load {self._source}: bad storage view {view!r}")
        return _StorageRef(key, stype.dtype, numel, view_offset=view[1], view_numel=view[2])


def _load_plain(fh: BinaryIO, source: str) -> Any:
    """Unpickle one header object; no globals and no persistent ids are allowed."""
    unpickler = _RestrictedUnpickler(fh, source=source)

    def refuse(pid: Any) -> Any:
        raise UnsafePickleError(f"Refusing to load {source}: unexpected persistent id.")

    unpickler.persistent_load = refuse  # type: ignore[method-assign]
    return unpickler.load()


def load_legacy_torch_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict saved in the legacy (non-zip) format, without PyTorch.

    The legacy ``torch.save`` format is five consecutive pickles and raw storage bytes:
    the magic number, the protocol version (1001), system info (endianness, type
    sizes), the state dict itself (tensors refer to storages by persistent id), the list
    of storage keys, then for each key an 8-byte little-endian element count followed by
    the storage's raw bytes.

    Every pickle is read by a restricted unpickler that resolves only
    ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and
    ``torch.*Storage`` (to inert stand-ins); nothing in the file can run code.

    Parameters
    ----------
    path : path-like
        The ``.pth`` / ``.pt`` file.

    Returns
    -------
    dict of str to ndarray
        Parameter name to a C-contiguous NumPy array (in PyTorch's layout).

    Raises
    ------
    UnsafePickleError
        If the file asks for any other global, or holds unexpected records.
    InvalidInputError
        If the file is not in the legacy format or is truncated.
    """
    source = os.fspath(path)
    with open(source, "rb") as fh:
        head = fh.read(4)
        if head.startswith(b"PK\x03\x04"):
            raise InvalidInputError(
                f"{source!r} is a zip-format PyTorch file (torch >= 1.6 default); only the "
                "legacy format is supported. Re-save it with "
                "`torch.save(state_dict, path, _use_new_zipfile_serialization=False)`."
            )
        fh.seek(0)
        try:
            magic = _load_plain(fh, source)
            if magic != _LEGACY_MAGIC:
                raise InvalidInputError(
                    f"{source!r} is not a legacy PyTorch file (bad magic number)."
                )
            protocol = _load_plain(fh, source)
            if protocol != _LEGACY_PROTOCOL:
                raise InvalidInputError(
                    f"{source!r} has unsupported legacy protocol version {protocol!r} "
                    f"(expected {_LEGACY_PROTOCOL})."
                )
            sys_info = _load_plain(fh, source)
            little = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else True
            unpickler = _RestrictedUnpickler(fh, source=source, byteorder="<" if little else ">")
            state = unpickler.load()
            keys = _load_plain(fh, source)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
            if isinstance(exc, InvalidInputError):
                raise
            raise InvalidInputError(
                f"{source!r} is not a readable legacy PyTorch state dict: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(state, dict):
            raise InvalidInputError(
                f"{source!r} holds a {type(state).__name__}, not a state dict of tensors."
            )
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise InvalidInputError(f"{source!r} has a malformed storage key list.")
        data: dict[str, np.ndarray] = {}
        for key in keys:
            ref = unpickler.storages.get(key)
            if ref is None:
                raise InvalidInputError(f"{source!r} stores an unreferenced storage {key!r}.")
            raw = fh.read(8)
            if len(raw) != 8:
                raise InvalidInputError(f"{source!r} is truncated (storage {key!r}).")
            (count,) = struct.unpack("<q", raw)
            dtype = np.dtype(ref.dtype)
            if count < 0 or count != ref.numel:
                raise InvalidInputError(
                    f"{source!r}: storage {key!r} holds {count} elements, the state dict "
                    f"says {ref.numel}."
                )
            payload = fh.read(count * dtype.itemsize)
            if len(payload) != count * dtype.itemsize:
                raise InvalidInputError(f"{source!r} is truncated (storage {key!r}).")
            data[key] = np.frombuffer(payload, dtype=dtype)
    out: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, _PendingTensor):
            raise InvalidInputError(
                f"{source!r}: entry {name!r} is a {type(value).__name__}, not a tensor."
            )
        out[name] = _materialize(value, data, source, name)
    return out


def _materialize(t: _PendingTensor, data: dict[str, np.ndarray], source: str, name: str) -> Any:
    ref = t.storage
    flat = data.get(ref.key)
    if flat is None:
        raise InvalidInputError(f"{source!r}: the bytes of tensor {name!r} are missing.")
    if ref.view_offset < 0 or ref.view_offset + ref.view_numel > len(flat):
        raise InvalidInputError(f"{source!r}: tensor {name!r} has a storage view out of range.")
    flat = flat[ref.view_offset : ref.view_offset + ref.view_numel]
    numel = int(np.prod(t.shape, dtype=np.int64))
    if numel == 0:
        return np.zeros(t.shape, dtype=flat.dtype.newbyteorder("="))
    last = t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.stride, strict=True))
    if last >= len(flat):
        raise InvalidInputError(f"{source!r}: tensor {name!r} reads past its storage.")
    view = np.lib.stride_tricks.as_strided(
        flat[t.offset :],
        shape=t.shape,
        strides=tuple(s * flat.itemsize for s in t.stride),
        writeable=False,
    )
    return np.array(view, dtype=flat.dtype.newbyteorder("="), order="C")  # a copy, 0-d stays 0-d


def is_torch_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like a PyTorch file: a ``.pth``/``.pt`` name or a pickle header."""
    if Path(path).suffix.lower() in (".pth", ".pt"):
        return True
    with open(path, "rb") as fh:
        head = fh.read(2)
    return head == b"\x80\x02"  # a pickle (protocol 2): the legacy torch.save header
