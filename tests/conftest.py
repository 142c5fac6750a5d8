"""Shared fixtures: tiny synthetic images, offline, fast."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

#: Features of the same images computed in different batches (another batch size, order or
#: offset) agree to this relative tolerance of each image's feature-vector norm: kernels
#: may round differently with the batch's composition (docs/concepts.md, "Exact
#: features"). The same batches give identical bits, and tests assert that exactly.
FEATURE_RTOL = 1e-4


def assert_features_close(actual, desired, rtol: float = FEATURE_RTOL) -> None:
    """Assert two feature matrices agree row by row to ``rtol`` of each row's norm."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape, (actual.shape, desired.shape)
    err = np.linalg.norm((actual - desired).reshape(len(desired), -1), axis=1)
    norm = np.linalg.norm(desired.reshape(len(desired), -1), axis=1)
    worst = float(np.max(err / np.maximum(norm, np.finfo(np.float32).tiny), initial=0.0))
    assert worst <= rtol, f"features differ by {worst:.2e} of their norm (allowed {rtol:.0e})"


def _bf16_blocked_by_isa_cap() -> bool:
    from transferkit._pipeline import cpu_has_bf16_flags, onednn_cap_forbids_bf16

    return cpu_has_bf16_flags() and onednn_cap_forbids_bf16()


#: On a CPU with native bfloat16, ``ONEDNN_MAX_CPU_ISA=AVX2`` (how the suite is run to see
#: an AVX2 host's kernels on a faster one) makes TensorFlow route bfloat16 convolutions to
#: oneDNN, which the cap has left without bfloat16 kernels: "could not create a primitive
#: descriptor". Real AVX2 hosts run TensorFlow's own bfloat16 kernels instead.
needs_bf16_kernels = pytest.mark.skipif(
    _bf16_blocked_by_isa_cap(),
    reason="ONEDNN_MAX_CPU_ISA caps oneDNN below bfloat16 on a bfloat16 CPU: TensorFlow "
           "cannot run bfloat16 convolutions in that simulated configuration",
)


def make_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Random uint8 RGB images."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def make_learnable(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class (0, 1, 2) decides which colour channel is bright, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    x = rng.normal(60, 25, size=(n, size, size, 3))
    for c in range(3):
        x[y == c, :, :, c] += 110
    return np.clip(x, 0, 255).astype(np.uint8), y


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    return make_images(24)


@pytest.fixture(scope="session")
def learnable() -> tuple[np.ndarray, np.ndarray]:
    return make_learnable(240)


@pytest.fixture(autouse=True)
def _no_user_keras_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """Never read or write the user's ~/.keras or data folders from a test."""
    home = tmp_path_factory.getbasetemp() / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setenv("TRANSFERKIT_DATA", str(tmp_path_factory.getbasetemp() / "tk_data"))


from transferkit.extractors import BaseExtractor  # noqa: E402


class NumpyExtractor(BaseExtractor):
    """A tiny extractor in plain NumPy (no TensorFlow): fast to start in subprocesses.

    Features: per-channel means of a ``grid`` x ``grid`` tiling, after ``preprocessing``.
    Every parameter except ``batch_size``, ``delay`` and ``build_delay`` changes the
    features, and is part of the fingerprint. Not registered: it exists for the cache's tests.
    """

    compiled = False

    def __init__(self, *, grid=2, preprocessing="rescale", dtype="float32", batch_size=8,
                 delay=0.0, build_delay=0.0):
        self.grid = grid
        self.preprocessing = preprocessing
        self.dtype = dtype
        self.batch_size = batch_size
        self.delay = delay  # seconds per batch
        self.build_delay = build_delay  # seconds to "build the model", as a backbone takes

    def _feature_config(self):
        return {"weights": None, "layer": "grid_means", "pooling": "avg", "input_size": None,
                "grid": self.grid, "preprocessing": self.preprocessing, "dtype": self.dtype}

    def _build_forward(self, image_size):
        import time

        time.sleep(getattr(self, "build_delay", 0.0))  # subclasses may not set it
        g = self.grid

        def forward(x):
            if self.delay:
                time.sleep(self.delay)
            x = np.asarray(x, dtype=np.float64)
            x = x / 255.0 if self.preprocessing == "rescale" else x - 127.5
            n, h, w, c = x.shape
            x = x[:, : h - h % g, : w - w % g].reshape(n, g, h // g, g, w // g, c)
            return x.mean(axis=(2, 4)).reshape(n, -1).astype(self.dtype).astype(np.float32)

        return forward


# ------------------------------------------------- interrupting and counting extraction
class Interrupt(Exception):
    pass


def interrupt_after(extractor, batches: int, error: type[BaseException] = Interrupt):
    """Make `extractor.iter_features` raise after `batches` batches (the cache calls it)."""
    original = type(extractor).iter_features

    def iter_features(self, *args, **kwargs):
        for i, item in enumerate(original(self, *args, **kwargs)):
            if i == batches:
                raise error("interrupted")
            yield item

    extractor.iter_features = iter_features.__get__(extractor)
    return extractor


def count_calls(extractor):
    calls = []
    original = type(extractor).iter_features

    def iter_features(self, *args, **kwargs):
        calls.append(kwargs.get("start", 0))
        yield from original(self, *args, **kwargs)

    extractor.iter_features = iter_features.__get__(extractor)
    return calls
