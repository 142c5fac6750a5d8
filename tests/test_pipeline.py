"""The pipelined extraction path: reader and writer threads, streams, dtypes, estimates."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import (
    Interrupt,
    NumpyExtractor,
    interrupt_after,
    make_images,
    needs_bf16_kernels,
)

from transferkit import (
    EfficientNetLite0Extractor,
    FeatureCache,
    KerasApplicationExtractor,
    VGG16Extractor,
)
from transferkit import exceptions as exc
from transferkit._pipeline import BackgroundWriter, prefetch
from transferkit.cache import ImageStream
from transferkit.cache._locks import FileLock

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def vgg() -> VGG16Extractor:
    return VGG16Extractor(weights=None, batch_size=8, layer="block2_pool")


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("transferkit-")]


# ---------------------------------------------------------------------------- prefetch
def test_prefetch_keeps_order_and_raises_where_the_source_failed() -> None:
    assert list(prefetch(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        yield 2
        raise exc.InvalidInputError("bad image 17")

    got = []
    with pytest.raises(exc.InvalidInputError, match="bad image 17"):
        for item in prefetch(failing()):
            got.append(item)
    assert got == [1, 2]


def test_prefetch_stops_its_thread_when_the_consumer_stops() -> None:
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    items = prefetch(endless(), depth=1)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert not _reader_threads()
    assert len(produced) <= 3 + 2  # never more than depth + 1 beyond the consumer


def test_background_writer_writes_in_order_and_reports_the_failed_item() -> None:
    written = []
    writer = BackgroundWriter(written.append, maxsize=1)
    for i in range(20):
        writer.put(i)
    writer.close()
    assert written == list(range(20))

    def write(item):
        if item == 3:
            raise OSError("disk full")
        written.append(item)

    written.clear()
    writer = BackgroundWriter(write, maxsize=1)
    with pytest.raises(OSError, match="disk full"):
        for i in range(10):
            writer.put(i)
            time.sleep(0.01)
        writer.close()
    with pytest.raises(OSError):
        writer.close()
    assert written == [0, 1, 2] and writer.failed_item == 3


# ---------------------------------------------------------------------------- fast path
def test_fast_path_equals_the_plain_model_call_with_one_trace(vgg) -> None:
    x = make_images(21, seed=1)  # batches of 8, 8 and 5
    fast = vgg.transform(x)
    compiled = vgg._forward((32, 32))
    plain = np.concatenate(
        [np.asarray(compiled.python_function(x[i : i + 8])) for i in range(0, 21, 8)]
    )  # eager, uncompiled, batch by batch
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-5)
    # one trace for every batch length (the last partial batch included), per input dtype
    (traced,) = compiled._traced.values()
    assert traced.experimental_get_tracing_count() == 1
    vgg.transform(make_images(3, seed=2))
    assert traced.experimental_get_tracing_count() == 1
    np.testing.assert_allclose(vgg.transform(x.astype(np.float64)), fast, atol=1e-4)
    assert len(compiled._traced) == 2  # uint8 and float32


@needs_bf16_kernels
@pytest.mark.parametrize("dtype", ["bfloat16", "mixed_bfloat16"])
def test_bfloat16_features_are_float32_and_close(vgg, dtype) -> None:
    x = make_images(10, seed=3)
    ref = vgg.transform(x)
    fast = VGG16Extractor(weights=None, batch_size=8, layer="block2_pool", dtype=dtype)
    out = fast.transform(x)
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert not np.array_equal(out, ref)
    assert np.abs(out - ref).max() <= 0.03 * np.abs(ref).max()
    assert fast.fingerprint != vgg.fingerprint and fast.describe()["dtype"] == dtype


@pytest.mark.parametrize(
    "factory",
    [
        lambda: EfficientNetLite0Extractor(weights=None, batch_size=8, dtype="bfloat16"),
        lambda: KerasApplicationExtractor(
            architecture="MobileNetV2", weights=None, batch_size=8, dtype="mixed_bfloat16"
        ),
    ],
    ids=["lite0", "mobilenet_v2"],
)
@needs_bf16_kernels
def test_bfloat16_on_other_backbones(factory) -> None:
    from sklearn.base import clone

    fast = factory()
    ref = clone(fast).set_params(dtype="float32")
    x = make_images(4, seed=4)
    a, b = ref.transform(x), fast.transform(x)
    assert b.dtype == np.float32
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() > 0.98


@pytest.mark.parametrize(
    "factory",
    [
        lambda **kw: VGG16Extractor(weights=None, **kw),
        lambda **kw: EfficientNetLite0Extractor(weights=None, **kw),
        lambda **kw: KerasApplicationExtractor(weights=None, **kw),
    ],
    ids=["vgg16", "lite0", "keras_apps"],
)
def test_bad_dtype_names_the_argument(factory) -> None:
    match = r"`dtype` must be one of .*'bfloat16'.*received 'float16'"
    with pytest.raises(exc.InvalidInputError, match=match):
        factory(dtype="float16").transform(make_images(1))


# ---------------------------------------------------------------------------- the cache


def test_resume_with_the_writer_thread_is_bit_identical(tmp_path, monkeypatch) -> None:
    x = make_images(60, size=16, seed=5)
    reference = NumpyExtractor(batch_size=4).transform(x)
    cache = FeatureCache(tmp_path / "c.h5")
    real_flush = h5py.File.flush

    def slow_flush(self):  # the writer lags: computed batches queue up behind it
        time.sleep(0.02)
        return real_flush(self)

    monkeypatch.setattr(h5py.File, "flush", slow_flush)
    with pytest.raises(Interrupt):
        cache.extract(interrupt_after(NumpyExtractor(batch_size=4), 6), x)
    (entry,) = cache.entries(include_incomplete=True)
    assert entry.n_done == 24  # every batch computed before the exception was written
    with pytest.raises(Interrupt):  # resumed with another default batch size, interrupted
        cache.extract(interrupt_after(NumpyExtractor(batch_size=7), 3), x)
    (entry,) = cache.entries(include_incomplete=True)
    assert entry.n_done == 36  # the stored batch size (4) was kept
    monkeypatch.setattr(h5py.File, "flush", real_flush)
    out = cache.extract(NumpyExtractor(batch_size=9), x)
    np.testing.assert_array_equal(out, reference)
    assert not _reader_threads()


def test_readers_get_in_while_the_backbone_computes(tmp_path) -> None:
    path = tmp_path / "c.h5"
    waits = []

    class Probing(NumpyExtractor):
        def _build_forward(self, image_size):
            inner = super()._build_forward(image_size)

            def forward(x):
                if len(x) == 1:  # output_dim's probe, while the entry is being created
                    return inner(x)
                # The .sync lock may be held only while a batch is written: a reader
                # (a shared lock) must get in during the computation.
                lock, t0 = FileLock(path, ".sync"), time.perf_counter()
                while not lock.acquire(shared=True, blocking=False):
                    assert time.perf_counter() - t0 < 5, "the writer holds .sync while computing"
                    time.sleep(0.001)
                lock.release()
                waits.append(time.perf_counter() - t0)
                return inner(x)

            return forward

    x = make_images(40, size=16, seed=6)
    out = FeatureCache(path).extract(Probing(batch_size=4), x)
    np.testing.assert_array_equal(out, NumpyExtractor(batch_size=4).transform(x))
    assert len(waits) == 10


# ---------------------------------------------------------------------------- streams
class Watched:
    """Streamed images that refuse to be read more than 2 batches ahead of the backbone."""

    def __init__(self, n, counter, limit=2):
        self.shape, self.dtype, self.ndim = (n, 16, 16, 3), np.dtype(np.uint8), 4
        self.counter, self.limit, self.requested = counter, limit, 0

    def __len__(self):
        return self.shape[0]

    def fingerprint(self):
        return f"watched-{self.shape[0]}"

    def iter_batches(self, batch_size, start=0):
        for i in range(start, self.shape[0], batch_size):
            ahead = self.requested - self.counter["started"]
            if ahead > self.limit:
                raise AssertionError(f"read {ahead} batches ahead of the backbone")
            self.requested += 1
            stop = min(i + batch_size, self.shape[0])
            yield make_images(stop - i, size=16, seed=i)


class Counting(NumpyExtractor):
    def __init__(self, *, counter=None, **kwargs):
        super().__init__(**kwargs)
        self.counter = counter

    def _build_forward(self, image_size):
        inner = super()._build_forward(image_size)

        def forward(x):
            if len(x) > 1:  # not output_dim's probe
                self.counter["started"] += 1
            return inner(x)

        return forward


def test_streamed_input_is_read_at_most_two_batches_ahead(tmp_path) -> None:
    counter = {"started": 0}
    ext = Counting(counter=counter, batch_size=4, delay=0.005)
    stream = Watched(200, counter)
    out = FeatureCache(tmp_path / "c.h5").extract(ext, stream, lazy=True)
    assert out.shape == (200, 12) and counter["started"] == 50
    expected = np.concatenate(
        [NumpyExtractor().transform(make_images(4, size=16, seed=i)) for i in range(0, 200, 4)]
    )
    np.testing.assert_array_equal(np.asarray(out), expected)
    counter["started"] = 0
    feats = list(ext.iter_features(Watched(40, counter)))
    assert [o for o, _ in feats] == list(range(0, 40, 4))


def test_stream_with_wrong_batches_is_refused(tmp_path) -> None:
    class Short(Watched):
        def iter_batches(self, batch_size, start=0):
            yield make_images(batch_size - 1, size=16)

    with pytest.raises(exc.InvalidInputError, match=r"iter_batches` yielded a batch of shape"):
        FeatureCache(tmp_path / "c.h5").extract(NumpyExtractor(), Short(20, {"started": 0}))
    assert FeatureCache(tmp_path / "c.h5").entries(include_incomplete=True) == []


def _synthetic(start: int, stop: int) -> np.ndarray:
    return np.concatenate([make_images(1, size=16, seed=i) for i in range(start, stop)])


def test_image_stream_from_a_function_and_from_a_generator(tmp_path) -> None:
    n = 37
    x = _synthetic(0, n)
    ext = NumpyExtractor(batch_size=8)
    reference = ext.transform(x)
    stream = ImageStream(_synthetic, n, (16, 16), fingerprint="synthetic-16")
    assert stream.shape == (n, 16, 16, 3) and len(stream) == n and stream.dtype == np.uint8
    np.testing.assert_array_equal(stream[5:9], x[5:9])
    np.testing.assert_array_equal(stream[-1], x[-1])
    cache = FeatureCache(tmp_path / "c.h5")
    with pytest.raises(Interrupt):
        cache.extract(interrupt_after(NumpyExtractor(batch_size=8), 2), stream)
    np.testing.assert_array_equal(cache.extract(ext, stream), reference)  # resumed
    assert cache.key(ext, stream) != cache.key(ext, x)  # named by its fingerprint

    def batches():  # irregular sizes, re-batched by the stream
        for i in range(0, n, 5):
            yield x[i : i + 5]

    gen = ImageStream.from_batches(batches, n, (16, 16, 3), fingerprint="synthetic-16",
                                   labels=np.arange(n) % 2)
    np.testing.assert_array_equal(ext.transform(gen), reference)
    np.testing.assert_array_equal(np.concatenate(list(gen.iter_batches(8, start=13))), x[13:])
    np.testing.assert_array_equal(gen[11:14], x[11:14])
    cache2 = FeatureCache(tmp_path / "c2.h5")
    np.testing.assert_array_equal(cache2.extract(ext, gen), reference)
    np.testing.assert_array_equal(cache2.labels(cache2.key(ext, gen)), np.arange(n) % 2)


def test_image_stream_errors_name_the_argument() -> None:
    with pytest.raises(exc.InvalidTypeError, match="`fn` must be a function"):
        ImageStream("images", 3, (16, 16), fingerprint="a")
    with pytest.raises(exc.InvalidTypeError, match="`fingerprint` must be a non-empty string"):
        ImageStream(_synthetic, 3, (16, 16), fingerprint=None)
    with pytest.raises(exc.InvalidInputError, match="`image_shape` must be"):
        ImageStream(_synthetic, 3, (16, 16, 1), fingerprint="a")
    with pytest.raises(exc.InvalidInputError, match="`n` must be a positive integer"):
        ImageStream(_synthetic, 0, (16, 16), fingerprint="a")
    with pytest.raises(exc.InvalidTypeError, match="`dtype` must be 'uint8' or a float"):
        ImageStream(_synthetic, 3, (16, 16), fingerprint="a", dtype="int32")
    wrong = ImageStream(_synthetic, 3, (32, 32), fingerprint="a")
    with pytest.raises(exc.InvalidInputError, match=r"`fn` returned an array of shape"):
        NumpyExtractor().transform(wrong)
    short = ImageStream.from_batches(lambda: iter([_synthetic(0, 2)]), 3, (16, 16),
                                     fingerprint="a")
    with pytest.raises(exc.InvalidInputError, match="`make_batches` yielded 2 images"):
        NumpyExtractor().transform(short)
    assert not _reader_threads()


_NO_TF = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    from conftest import NumpyExtractor
    from transferkit import FeatureCache
    from transferkit.cache import ImageStream
    x = np.random.default_rng(0).integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    s = ImageStream(lambda a, b: x[a:b], 30, (16, 16), fingerprint="x")
    out = FeatureCache(sys.argv[1]).extract(NumpyExtractor(), s)
    assert out.shape == (30, 12)
    print(NumpyExtractor().estimate(30, (16, 16)).feature_dim)
    print("tensorflow" in sys.modules, "keras" in sys.modules)
    """
)


def test_uncompiled_extractors_never_import_tensorflow(tmp_path) -> None:
    script = tmp_path / "no_tf.py"
    script.write_text(_NO_TF.format(tests=str(TESTS)))
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "c.h5")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["12", "False", "False"]


# ---------------------------------------------------------------------------- estimate
def test_estimate_counts_vgg16_like_the_literature() -> None:
    # VGG-16 at 224x224 with its classifier: 15.47 G multiply-accumulates = 30.9 GFLOPs
    full = VGG16Extractor(weights=None, layer="predictions", input_size=224).estimate(
        1, image_size=(224, 224)
    )
    assert full.macs_per_image == 15_470_264_320
    assert full.flops_per_image == 2 * full.macs_per_image
    assert full.feature_dim == 1000
    # the 13 convolutions alone: 15.35 G MACs; CIFAR-10's 32x32 upsampled costs 49x
    up = VGG16Extractor(weights="imagenet", input_size=224).estimate(
        10_000, image_size=(32, 32)
    )  # counting needs no weights: nothing is downloaded
    native = VGG16Extractor(weights="imagenet").estimate(10_000, image_size=(32, 32))
    assert up.macs_per_image == 15_346_630_656
    assert up.flops_per_image == 49 * native.flops_per_image
    assert up.resize_factor == pytest.approx(49.0)
    assert up.model_input_size == (224, 224) and native.model_input_size == (32, 32)
    assert up.total_flops == 10_000 * up.flops_per_image
    assert up.feature_dim == native.feature_dim == 512
    assert up.activation_bytes_per_image == 224 * 224 * 64 * 4
    assert "49.0x" in str(up) and "GFLOPs per image" in str(up)
    bf16 = VGG16Extractor(weights=None, dtype="bfloat16").estimate(1, (32, 32))
    assert bf16.flops_per_image == native.flops_per_image
    assert bf16.activation_bytes_per_image == native.activation_bytes_per_image // 2


def test_estimate_predicts_the_cache_size(tmp_path) -> None:
    n = 3000
    ext = NumpyExtractor(grid=8)  # 192 features, no Keras model: FLOPs not counted
    est = ext.estimate(n, image_size=(16, 16), labels=True)
    assert est.flops_per_image is None and est.feature_dim == 192
    assert est.feature_bytes == n * 192 * 4
    x = make_images(n, size=16, seed=7)
    cache = FeatureCache(tmp_path / "c.h5")
    cache.extract(ext, x, labels=np.arange(n) % 10)
    size = cache.path.stat().st_size
    assert est.feature_bytes < size <= est.cache_bytes * 1.1
    assert size >= est.cache_bytes * 0.8
    assert "not counted" in str(est)


def test_estimate_bad_arguments() -> None:
    vgg = VGG16Extractor(weights=None)
    with pytest.raises(exc.InvalidInputError, match="`n_images` must be a positive integer"):
        vgg.estimate(0)
    with pytest.raises(exc.InvalidTypeError, match=r"`image_size` must be a \(height, width\)"):
        vgg.estimate(10, image_size=32)
    with pytest.raises(exc.InvalidInputError, match="`image_size` must be at least 32x32"):
        vgg.estimate(10, image_size=(16, 16))


def test_onednn_isa_cap_decides_whether_bf16_is_native(monkeypatch) -> None:
    from transferkit import _pipeline

    monkeypatch.setattr(_pipeline, "cpu_has_bf16_flags", lambda: True)
    for cap, native in ((None, True), ("all", True), ("AVX512_CORE_BF16", True),
                        ("avx512_core_amx", True), ("AVX2", False), ("avx512_core", False),
                        ("AVX512_CORE_VNNI", False), ("SSE41", False)):
        monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
        if cap is None:
            monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        else:
            monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert _pipeline.cpu_supports_bf16() is native, cap
        assert _pipeline.onednn_cap_forbids_bf16() is (not native), cap
    monkeypatch.setattr(_pipeline, "cpu_has_bf16_flags", lambda: False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert not _pipeline.cpu_supports_bf16()
