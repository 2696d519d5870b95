"""The large-image route of ``deblur``: above ``max_direct_pixels`` the kernel
comes from a crop and the image from the tiled non-blind deconvolution."""

import numpy as np
import pytest
from scipy import ndimage
from scipy.signal import fftconvolve

pytest.importorskip("dask.array")

from hqsdeblur.deblur import MAX_DIRECT_PIXELS, _pixels, deblur  # noqa: E402
from hqsdeblur.errors import InputError  # noqa: E402
from hqsdeblur.tiles import deblur_large  # noqa: E402

TILING = {"region": 96, "tile": 96, "num_workers": 1}


def _blurred(shape, seed=0):
    rng = np.random.default_rng(seed)
    H, W = shape[:2]
    x = np.full(shape, 0.3)
    for _ in range(40):
        y0, x0 = rng.integers(0, H), rng.integers(0, W)
        h, w = rng.integers(6, H // 3, 2)
        x[y0 : y0 + h, x0 : x0 + w] = rng.random(shape[2:]) if len(shape) == 3 else rng.random()
    k = np.zeros((9, 9))
    k[4, 1:8] = 1
    k = ndimage.gaussian_filter(k, 0.7)
    k /= k.sum()
    y = fftconvolve(x, k if x.ndim == 2 else k[..., None], mode="same") + 0.005 * rng.standard_normal(shape)
    return np.clip(y, 0, 1)


@pytest.mark.parametrize("method", ["tv", "unrolled"])
@pytest.mark.parametrize("colour", [False, True])
def test_small_threshold_takes_the_tiled_route(method, colour):
    y = _blurred((144, 176, 3) if colour else (144, 176)).astype(np.float32)
    x, k = deblur(y, method=method, kernel_size=9, max_direct_pixels=1000, tiling=TILING, backend="numpy")
    assert x.shape == y.shape and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 1 and np.isfinite(x).all()
    assert k.shape == (9, 9) and k.min() >= 0 and np.isclose(k.sum(), 1)
    # the route is exactly tiles.deblur_large on the validated image
    opts = {"backend": "numpy", "exact": False} if method == "unrolled" else {"backend": "numpy"}
    ref, kr = deblur_large(y, kernel_size=9, method=method, deblur_options=opts, backend="numpy", **TILING)
    np.testing.assert_array_equal(k, kr)
    np.testing.assert_array_equal(x, ref)


def test_large_route_is_float32_for_any_input_and_keeps_layout():
    y = np.moveaxis(_blurred((144, 176, 3)), -1, 0)  # channel-first float64
    x, k = deblur(y, kernel_size=9, channel_axis=0, max_direct_pixels=1000, tiling=TILING, backend="numpy")
    assert x.shape == y.shape and x.dtype == np.float32
    x8, k8 = deblur((y * 255).round().astype(np.uint8), kernel_size=9, channel_axis=0, max_direct_pixels=1000,
                       tiling=TILING, backend="numpy")
    assert x8.shape == y.shape and x8.dtype == np.float32 and np.isclose(k8.sum(), 1)


@pytest.mark.parametrize("method", ["tv", "unrolled"])
def test_below_threshold_nothing_changes(method):
    y = _blurred((96, 112))
    a, ka = deblur(y, method=method, kernel_size=9, backend="numpy")
    b, kb = deblur(y, method=method, kernel_size=9, backend="numpy", max_direct_pixels=96 * 112)
    c, kc = deblur(y, method=method, kernel_size=9, backend="numpy", max_direct_pixels=None)
    assert a.dtype == np.float64  # the direct route keeps float64
    for other, ko in ((b, kb), (c, kc)):
        np.testing.assert_array_equal(a, other)
        np.testing.assert_array_equal(ka, ko)


def test_pixels_and_default():
    assert _pixels(np.zeros((5, 7)), None) == 35
    assert _pixels(np.zeros((5, 7, 3)), None) == 35
    assert _pixels(np.zeros((3, 5, 7)), 0) == 35
    assert _pixels(np.zeros(4), None) == 0
    assert 2_000_000 <= MAX_DIRECT_PIXELS <= 8_000_000


def test_bad_tiling_setting():
    y = _blurred((64, 64))
    with pytest.raises(InputError, match="tiling"):
        deblur(y, kernel_size=9, max_direct_pixels=10, tiling={"tiles": 32})


def test_tv_safeguard_returns_input(monkeypatch):
    # a rejected kernel: the image comes back unchanged, with a delta kernel
    from hqsdeblur import tv

    real = tv.blind_deconvolve

    def rejecting(*a, **kw):
        out, k, info = real(*a, **kw)
        info["backed_off"] = True
        d = np.zeros_like(k)
        d[k.shape[0] // 2, k.shape[1] // 2] = 1
        return out, d, info

    monkeypatch.setattr(tv, "blind_deconvolve", rejecting)
    y = _blurred((128, 128)).astype(np.float32)
    x, k = deblur(y, kernel_size=9, max_direct_pixels=1000, tiling=TILING, backend="numpy")
    np.testing.assert_array_equal(x, y)
    assert k[4, 4] == 1 and k.sum() == 1


def test_float32_input_is_read_not_copied_or_changed():
    y = _blurred((144, 176, 3)).astype(np.float32)
    keep = y.copy()
    x, k = deblur(y, kernel_size=9, max_direct_pixels=1000, tiling=TILING, backend="numpy")
    np.testing.assert_array_equal(y, keep)
    # the same through the validated copy (rounding noise above 1 is clipped)
    y2 = y.copy()
    y2[0, 0, 0] = np.float32(1 + 2**-23)
    keep[0, 0, 0] = 1
    x2, k2 = deblur(y2, kernel_size=9, max_direct_pixels=1000, tiling=TILING, backend="numpy")
    x3, k3 = deblur(keep, kernel_size=9, max_direct_pixels=1000, tiling=TILING, backend="numpy")
    np.testing.assert_array_equal(x2, x3)
    with pytest.raises(InputError, match="NaN"):
        y2[5, 5, 1] = np.nan
        deblur(y2, kernel_size=9, max_direct_pixels=1000, tiling=TILING)


def test_large_route_passes_the_unrolled_options_to_each_crop():
    y = _blurred((144, 176)).astype(np.float32)
    x, k = deblur(y, method="unrolled", kernel_size=9, max_direct_pixels=1000, tiling=TILING, backend="numpy",
                  coarsest=5, classical_check=False)
    opts = {"backend": "numpy", "exact": False, "coarsest": 5, "classical_check": False}
    ref, kr = deblur_large(y, kernel_size=9, method="unrolled", deblur_options=opts, backend="numpy", **TILING)
    np.testing.assert_array_equal(k, kr)
    with pytest.raises(InputError, match="unknown options"):
        deblur(y, method="unrolled", kernel_size=9, max_direct_pixels=1000, tiling=TILING, backend="numpy", foo=1)
