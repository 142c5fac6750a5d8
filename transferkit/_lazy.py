"""Lazy access to TensorFlow and Keras, so ``import transferkit`` stays fast."""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["import_tf", "import_keras"]


def _quiet() -> None:
    # TensorFlow prints CUDA-probing noise on machines without a GPU; keep real errors.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tf() -> ModuleType:
    """Import and return ``tensorflow``."""
    _quiet()
    import tensorflow as tf

    return tf


def import_keras() -> ModuleType:
    """Import and return ``keras`` (Keras 3)."""
    _quiet()
    import keras

    return keras
