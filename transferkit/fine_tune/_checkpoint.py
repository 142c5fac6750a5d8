"""Epoch checkpoints of a fine-tune, so that an interrupted one resumes where it stopped.

One file per run, ``<checkpoint_dir>/<key>.npz``, replaced atomically at the end of
every completed epoch (:func:`transferkit._atomic.atomic_path`): a kill at any moment
leaves the previous epoch's checkpoint or the new one, never a mix. It holds

- ``w0 ... wN``: the training model's weights (backbone and head), in
  ``model.get_weights()`` order;
- ``o0 ... oM``: the optimizer's variables (step counter, momenta), in
  ``optimizer.variables`` order;
- ``meta``: JSON with the format, the run's key, the epochs done and planned, the
  seconds spent so far and the history.

The key (:func:`run_key`) hashes everything that shapes the run: the extractor's
fingerprint, the head's weights, the training and validation data and labels, and the
fine-tune's parameters. A different call never resumes from another's checkpoint. The
file is deleted once the fine-tune completes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path
from .._hashing import hash_json

__all__ = ["CHECKPOINT_FORMAT", "default_checkpoint_dir", "load_checkpoint", "run_key",
           "save_checkpoint"]

CHECKPOINT_FORMAT = "transferkit.fine_tune.checkpoint/1"


def default_checkpoint_dir() -> Path:
    """``$TRANSFERKIT_DATA/checkpoints`` (default ``~/.transferkit/checkpoints``)."""
    root = os.environ.get("TRANSFERKIT_DATA") or os.path.join(
        os.path.expanduser("~"), ".transferkit")
    return Path(root) / "checkpoints"


def run_key(parts: dict[str, Any]) -> str:
    """A short stable key of a fine-tune's inputs and parameters (JSON-able ``parts``)."""
    return hash_json(parts)[:24]


def save_checkpoint(path: Path, model: Any, optimizer: Any, meta: dict[str, Any]) -> None:
    """Write the checkpoint of ``model`` and ``optimizer`` to ``path``, atomically."""
    arrays = {f"w{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    arrays.update({f"o{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
    arrays["meta"] = np.frombuffer(
        json.dumps({"format": CHECKPOINT_FORMAT, **meta}).encode("utf-8"), dtype=np.uint8)
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def load_checkpoint(path: Path, model: Any, optimizer: Any, key: str) -> dict[str, Any] | None:
    """Restore ``model`` and ``optimizer`` from ``path``; its metadata, or ``None``.

    ``None`` when there is no checkpoint, or it belongs to another run or format, or it
    cannot be read (a damaged file is set aside as ``<name>.damaged``, never deleted).
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode("utf-8"))
            if meta.get("format") != CHECKPOINT_FORMAT or meta.get("key") != key:
                return None
            weights = [data[f"w{i}"] for i in range(len(model.get_weights()))]
            n_opt = sum(1 for name in data.files if name.startswith("o"))
            opt_values = [data[f"o{i}"] for i in range(n_opt)]
    except (OSError, ValueError, KeyError) as exc:
        aside = path.with_name(path.name + ".damaged")
        os.replace(path, aside)
        import warnings

        warnings.warn(f"The fine-tune checkpoint {str(path)!r} could not be read ({exc}); "
                      f"set aside as {str(aside)!r}, starting from the warm start.",
                      UserWarning, stacklevel=3)
        return None
    optimizer.build(model.trainable_variables)
    if len(optimizer.variables) != len(opt_values):
        return None  # another set of trainable layers: not this run's state
    model.set_weights(weights)
    for var, value in zip(optimizer.variables, opt_values, strict=True):
        var.assign(value)
    return meta
