"""Tests of hqsdeblur.validate and hqsdeblur.errors."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hqsdeblur.errors import (
    BackendError,
    HqsdeblurError,
    InputError,
    ModelError,
    OutputError,
)
from hqsdeblur.validate import as_image, as_kernel, check_finite_output, check_kernel_size


def test_error_hierarchy():
    assert issubclass(InputError, ValueError) and issubclass(InputError, HqsdeblurError)
    assert issubclass(ModelError, ValueError) and issubclass(ModelError, HqsdeblurError)
    assert issubclass(OutputError, OSError) and issubclass(OutputError, HqsdeblurError)
    assert issubclass(BackendError, RuntimeError) and issubclass(BackendError, HqsdeblurError)


# --------------------------------------------------------------------------- #
# as_image: accepted inputs
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize(
    "arr, expected",
    [
        (np.array([[0, 255]], np.uint8), [[0.0, 1.0]]),
        (np.array([[0, 65535]], np.uint16), [[0.0, 1.0]]),
        (np.array([[0, 32767]], np.int16), [[0.0, 1.0]]),
        (np.array([[False, True]]), [[0.0, 1.0]]),
        (np.array([[0.25, 0.5]], np.float16), [[0.25, 0.5]]),
        ([[0.0, 1.0]], [[0.0, 1.0]]),
    ],
)
def test_as_image_converts_dtypes(arr, expected):
    out = as_image(arr)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_as_image_keeps_float32_and_float64(dtype):
    x = np.full((3, 4), 0.5, dtype=dtype)
    out = as_image(x)
    assert out.dtype == dtype
    assert not np.shares_memory(out, x)  # callers may modify the result


def test_as_image_big_endian_float32_stays_float32():
    out = as_image(np.zeros((2, 2), dtype=">f4"))
    assert out.dtype == np.float32 and out.dtype.isnative


def test_as_image_channel_axis_moved_last():
    x = np.random.default_rng(0).random((3, 5, 6))
    out = as_image(x, channel_axis=0)
    assert out.shape == (5, 6, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out[..., 1], x[1])


def test_as_image_single_channel_squeezed():
    assert as_image(np.zeros((4, 5, 1)), channel_axis=-1).shape == (4, 5)
    assert as_image(np.zeros((1, 4, 5)), channel_axis=0).shape == (4, 5)


def test_as_image_rgba_alpha_dropped_with_warning():
    x = np.zeros((4, 5, 4))
    x[..., 3] = 1.0
    with pytest.warns(UserWarning, match="alpha"):
        out = as_image(x)
    assert out.shape == (4, 5, 3) and out.max() == 0.0


def test_as_image_clip_and_tolerance():
    x = np.array([[-0.5, 0.5, 2.0]])
    np.testing.assert_array_equal(as_image(x, clip=True), [[0.0, 0.5, 1.0]])
    # rounding noise just outside [0, 1] is clipped silently
    y = as_image(np.array([[-1e-9, 1 + 1e-7]], np.float32))
    assert y.min() == 0.0 and y.max() == 1.0


# --------------------------------------------------------------------------- #
# as_image: refused inputs (table driven)
# --------------------------------------------------------------------------- #

BAD_IMAGES = [
    ("complex", np.zeros((4, 4), complex), {}, "complex"),
    ("object", np.array([[None, 1]], dtype=object), {}, "dtype object"),
    ("strings", np.array([["a", "b"]]), {}, "not a numeric"),
    ("ragged list", [[0.1, 0.2], [0.3]], {}, "cannot be converted"),
    ("scalar", np.float64(0.5), {}, "0 dimensions"),
    ("1-D", np.zeros(5), {}, "1 dimensions"),
    ("4-D", np.zeros((2, 3, 4, 3)), {}, "4 dimensions"),
    ("empty 2-D", np.zeros((0, 5)), {}, "empty"),
    ("empty 3-D", np.zeros((0, 5, 3)), {}, "empty"),
    ("ambiguous 3-D", np.zeros((4, 5, 6)), {}, "channel_axis"),
    ("H,W,1 needs axis", np.zeros((4, 5, 1)), {}, "channel_axis"),
    ("5 channels", np.zeros((4, 5, 5)), {"channel_axis": -1}, "5 channels"),
    ("2 channels", np.zeros((4, 5, 2)), {"channel_axis": 2}, "2 channels"),
    ("axis on 2-D", np.zeros((4, 5)), {"channel_axis": 0}, "2-D"),
    ("axis out of range", np.zeros((4, 5, 3)), {"channel_axis": 3}, "out of range"),
    ("axis bool", np.zeros((4, 5, 3)), {"channel_axis": True}, "must be an int"),
    ("axis float", np.zeros((4, 5, 3)), {"channel_axis": 2.0}, "must be an int"),
    ("NaN", np.array([[np.nan, 0.5, np.nan]]), {}, "2 NaN"),
    ("inf", np.array([[np.inf, 0.5, -np.inf]]), {}, "2 infinite"),
    ("NaN even with clip", np.array([[np.nan]]), {"clip": True}, "NaN"),
    ("above 1", np.array([[0.0, 255.0]]), {}, r"\[0, 255\]"),
    ("below 0", np.array([[-0.5, 0.5]]), {}, r"\[-0.5, 0.5\]"),
    ("negative int", np.array([[-3, 5]], np.int16), {}, "negative"),
]


@pytest.mark.parametrize("label, arr, kwargs, match", BAD_IMAGES, ids=[b[0] for b in BAD_IMAGES])
def test_as_image_refuses(label, arr, kwargs, match):
    with pytest.raises(InputError, match=match):
        as_image(arr, **kwargs)


def test_as_image_message_uses_name():
    with pytest.raises(InputError, match="^blurred"):
        as_image(np.zeros(3), name="blurred")


# --------------------------------------------------------------------------- #
# as_image property test: valid float array of the right shape or InputError
# --------------------------------------------------------------------------- #

DTYPES = [np.bool_, np.uint8, np.uint16, np.uint32, np.int8, np.int16, np.int64,
          np.float16, np.float32, np.float64, np.complex64]


@st.composite
def image_cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
    arr = draw(hnp.arrays(dtype, shape))
    channel_axis = draw(st.one_of(st.none(), st.integers(-4, 4)))
    clip = draw(st.booleans())
    return arr, channel_axis, clip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_cases())
def test_as_image_property(case):
    arr, channel_axis, clip = case
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = as_image(arr, channel_axis=channel_axis, clip=clip)
        except InputError:
            return
    for w in caught:  # the only warning allowed is the RGBA note
        assert issubclass(w.category, UserWarning) and "alpha" in str(w.message)
    if arr.ndim == 2:
        expected = arr.shape
    else:
        moved = np.moveaxis(arr, -1 if channel_axis is None else channel_axis, -1).shape
        expected = moved[:2] if moved[2] == 1 else moved[:2] + (3,)
    assert out.shape == expected
    assert out.dtype in (np.float32, np.float64)
    assert out.dtype == (np.float32 if arr.dtype == np.float32 else np.float64)
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


# --------------------------------------------------------------------------- #
# check_kernel_size
# --------------------------------------------------------------------------- #

def test_check_kernel_size_ok():
    assert check_kernel_size(31, (255, 255)) == 31
    assert check_kernel_size(np.int64(3), (3, 10, 3)) == 3
    assert type(check_kernel_size(np.int32(5), (9, 9))) is int


@pytest.mark.parametrize(
    "k, shape, match",
    [
        (30, (100, 100), "odd"),
        (0, (100, 100), "positive"),
        (-3, (100, 100), "positive"),
        (31.0, (100, 100), "odd integer"),
        ("31", (100, 100), "odd integer"),
        (True, (100, 100), "odd integer"),
        (None, (100, 100), "odd integer"),
        (31, (20, 30), "image 20x30 is smaller than the 31x31 kernel window"),
        (31, (20, 30, 3), "<= 19"),
    ],
)
def test_check_kernel_size_refuses(k, shape, match):
    with pytest.raises(InputError, match=match):
        check_kernel_size(k, shape)


# --------------------------------------------------------------------------- #
# as_kernel
# --------------------------------------------------------------------------- #

def test_as_kernel_normalises():
    k = as_kernel(np.array([[1, 2, 1]], np.uint8).T @ np.array([[1, 2]], np.uint8))
    assert k.dtype == np.float64 and k.shape == (3, 2)
    assert abs(k.sum() - 1) < 1e-15


def test_as_kernel_tiny_negatives_clipped():
    k = np.ones((3, 3))
    k[0, 0] = -1e-14
    out = as_kernel(k)
    assert out.min() == 0.0 and abs(out.sum() - 1) < 1e-15
    assert k[0, 0] == -1e-14  # input untouched


@pytest.mark.parametrize(
    "k, match",
    [
        (np.ones(5), "2-D"),
        (np.ones((3, 3, 3)), "2-D"),
        (np.ones((0, 3)), "empty"),
        (np.array([[1.0, np.nan]]), "NaN"),
        (np.array([[1.0, np.inf]]), "infinite"),
        (np.array([[1.0, -0.1]]), "negative"),
        (np.zeros((3, 3)), "sums to 0"),
        (np.ones((2, 2), complex), "real numeric"),
        (np.array([["a"]]), "real numeric"),
    ],
)
def test_as_kernel_refuses(k, match):
    with pytest.raises(InputError, match=match):
        as_kernel(k)


def test_check_finite_output():
    x = np.ones(4)
    assert check_finite_output(x, "image") is x
    x[1] = np.nan
    with pytest.raises(HqsdeblurError, match="deblurred image contains 1 non-finite"):
        check_finite_output(x, "deblurred image")
