"""Property-based bad input: every wrong call raises transferkit's own error, with a message
naming the argument, and never a crash deep inside TensorFlow or a silent wrong answer.

Hypothesis draws arrays of any rank, size, dtype and content (NaN, inf, out-of-range,
empty) and labels of any length and type.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import NumpyExtractor, make_images
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from transferkit import FeatureCache, SklearnHead, VGG16Extractor
from transferkit.exceptions import TransferkitError

SETTINGS = settings(
    max_examples=150, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

DTYPES = st.sampled_from(
    [np.uint8, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_,
     np.complex64]
)


@st.composite
def arrays_of_any_shape(draw, max_rank: int = 5):
    rank = draw(st.integers(0, max_rank))
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=rank, max_size=rank)))
    if rank == 4 and draw(st.booleans()):  # often NHWC with 3 channels, so deeper checks run
        shape = (shape[0], draw(st.integers(1, 40)), draw(st.integers(1, 40)), 3)
    dtype = draw(DTYPES)
    fill = None
    if np.dtype(dtype).kind == "f" and draw(st.booleans()):
        fill = draw(st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 256.0, 1e30]))
    arr = draw(hnp.arrays(dtype, shape, elements=None if fill is None else st.just(fill)))
    return arr


def _is_valid_images(x: np.ndarray, min_size: int) -> bool:
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] == 0:
        return False
    if x.shape[1] < min_size or x.shape[2] < min_size:
        return False
    if x.dtype == np.uint8:
        return True
    if x.dtype.kind != "f":
        return False
    return bool(np.isfinite(x).all() and x.min() >= 0 and x.max() <= 255)


def _check_error(error: BaseException, argument: str) -> None:
    assert isinstance(error, TransferkitError), f"{type(error).__name__}: {error}"
    assert isinstance(error, ValueError | TypeError)
    assert f"`{argument}`" in str(error), str(error)


@pytest.fixture(scope="module")
def vgg32() -> VGG16Extractor:
    return VGG16Extractor(weights=None, input_size=32, layer="block2_pool", batch_size=16)


@SETTINGS
@given(x=arrays_of_any_shape())
def test_extractor_images(vgg32, x) -> None:
    """Any array: features for valid images, transferkit's error naming `images` otherwise."""
    try:
        out = vgg32.transform(x)
    except Exception as error:  # noqa: BLE001 - the property is about which errors
        assert not _is_valid_images(x, 1), f"valid input refused: {error}"
        _check_error(error, "images")
    else:
        assert _is_valid_images(x, 1), f"invalid input accepted: {x.dtype} {x.shape}"
        assert out.shape == (len(x), 128) and np.isfinite(out).all()


@SETTINGS
@given(size=st.integers(1, 31), n=st.integers(1, 3))
def test_images_below_the_backbone_minimum(size, n) -> None:
    with pytest.raises(TransferkitError, match=rf"`images`.*at least 32x32.*{size}x{size}"):
        VGG16Extractor(weights=None).transform(make_images(n, size=size))


@SETTINGS
@given(x=arrays_of_any_shape(), labels=st.one_of(
    st.none(),
    hnp.arrays(st.sampled_from([np.int64, np.float64, np.str_]), st.integers(0, 8)),
))
def test_cache_extract(tmp_path_factory, x, labels) -> None:
    path = tmp_path_factory.mktemp("c") / "cache.h5"
    cache = FeatureCache(path)
    ext = NumpyExtractor()
    try:
        out = cache.extract(ext, x, labels=labels)
    except Exception as error:  # noqa: BLE001
        images_ok = _is_valid_images(x, 1)
        labels_ok = labels is None or (
            x.ndim > 0 and len(labels) == len(x) and labels.dtype.kind in "iU"
        )
        assert not (images_ok and labels_ok), f"valid input refused: {error}"
        named = [a for a, ok in (("images", images_ok), ("labels", labels_ok)) if not ok]
        assert isinstance(error, TransferkitError) and isinstance(error, ValueError | TypeError)
        assert any(f"`{a}`" in str(error) for a in named), str(error)
        assert not path.exists() or cache.entries(include_incomplete=True) == []
    else:
        np.testing.assert_array_equal(out, ext.transform(x))


@pytest.fixture(scope="module")
def fitted_head() -> SklearnHead:
    rng = np.random.default_rng(0)
    return SklearnHead().fit(rng.normal(size=(60, 4)), np.arange(60) % 3)


@SETTINGS
@given(X=arrays_of_any_shape(max_rank=3))
def test_head_predict(fitted_head, X) -> None:
    valid = (
        X.ndim == 2 and X.shape[0] > 0 and X.shape[1] == 4 and X.dtype.kind in "iuf"
        and bool(np.isfinite(X.astype(np.float64)).all())
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fitted_head.predict(X)
    except Exception as error:  # noqa: BLE001
        assert not valid, f"valid input refused: {error}"
        _check_error(error, "X")
    else:
        assert valid or X.dtype == np.bool_, f"invalid X accepted: {X.dtype} {X.shape}"
        assert set(out) <= {0, 1, 2}


@SETTINGS
@given(
    n=st.integers(0, 30),
    y=hnp.arrays(st.sampled_from([np.int64, np.float64, np.str_]), st.integers(0, 30)),
)
def test_head_fit_labels(n, y) -> None:
    X = np.random.default_rng(1).normal(size=(n, 3))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            SklearnHead().fit(X, y)
    except Exception as error:  # noqa: BLE001
        assert isinstance(error, TransferkitError), f"{type(error).__name__}: {error}"
        assert "`X`" in str(error) or "`y`" in str(error), str(error)
    else:
        assert len(y) == n and len(np.unique(y)) >= 2
        assert y.dtype.kind != "f" or np.isfinite(y).all()


# ---------------------------------------------------------------------------------------
# The command line: every numeric option refuses values out of its range at parsing
# ---------------------------------------------------------------------------------------


def _numeric_options():
    """(command, option, kind) of every option taking a number (metavar N, K or F)."""
    import argparse

    from transferkit import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for command, p in sub.choices.items():
        for action in p._actions:
            if action.option_strings and action.metavar in ("N", "K", "F"):
                out.append((command, action.option_strings[0], action.metavar))
    return out


NUMERIC_OPTIONS = _numeric_options()
#: Options for which 0 is a meaningful value (a seed; no hold-out; no dropout).
ZERO_ALLOWED = {"--seed", "--validation-split", "--dropout"}


def test_numeric_options_are_many() -> None:
    options = {o for _, o, _ in NUMERIC_OPTIONS}
    assert len(NUMERIC_OPTIONS) >= 30 and {"--image-size", "--limit", "--C"} <= options


def _parse_error(argv: list[str]) -> tuple[int | str | None, str]:
    import contextlib
    import io

    from transferkit import cli

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            cli.build_parser().parse_args(argv)
        except SystemExit as exc:
            return exc.code, err.getvalue()
    return None, err.getvalue()


@pytest.mark.parametrize("command, option, kind", NUMERIC_OPTIONS,
                         ids=[f"{c} {o}" for c, o, _ in NUMERIC_OPTIONS])
@settings(max_examples=25, deadline=None)
@given(value=st.one_of(
    st.integers(max_value=-1).map(str),
    st.sampled_from(["nan", "inf", "-inf", "", "ten", "1e400", "0x10", "1,5"]),
    st.floats(min_value=-1e6, max_value=-1e-6).map(repr),
))
def test_cli_numeric_option_out_of_range_is_a_usage_error(command, option, kind,
                                                          value) -> None:
    """Negative, non-finite or non-numeric: exit code 2 at parsing, naming the option."""
    code, err = _parse_error([command, f"{option}={value}"])
    assert code == 2, (command, option, value)
    assert f"argument {option}" in err, err


@pytest.mark.parametrize("command, option, kind", NUMERIC_OPTIONS,
                         ids=[f"{c} {o}" for c, o, _ in NUMERIC_OPTIONS])
def test_cli_numeric_option_zero(command, option, kind) -> None:
    """Zero is refused where it is not meaningful (it was taken as "not given" before)."""
    code, err = _parse_error([command, f"{option}=0"])
    if option in ZERO_ALLOWED:
        assert f"argument {option}" not in err, err
    else:
        assert code == 2 and f"argument {option}" in err, err
