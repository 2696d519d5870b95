"""Non-blind deconvolution (hqsdeblur.nonblind) and boundary handling."""

import numpy as np
import pytest
from scipy.signal import convolve2d

from hqsdeblur.backend import to_numpy
from hqsdeblur.boundary import crop, edgetaper, pad_smooth_wrap
from hqsdeblur.errors import InputError
from hqsdeblur.nonblind import deconvolve, grad, grad_adjoint, shrink_lp


def _scene(n=96, seed=0):
    """Random piecewise-constant image (rectangles) in [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    x = np.full((n, n), 0.5)
    for _ in range(25):
        r, c = rng.integers(0, n - 8, 2)
        h, w = rng.integers(6, n // 3, 2)
        x[r : r + h, c : c + w] = rng.uniform(0.1, 0.9)
    return x


def _motion_kernel():
    k = np.zeros((9, 9))
    k[4, 1:8] = 1.0
    k[3, 6:8] = 0.5
    k[5, 1:3] = 0.5
    return k / k.sum()


def _blur(x, k):
    # 'same' convolution with the kernel centre (kh//2, kw//2) as origin
    return np.clip(convolve2d(x, k, mode="same", boundary="symm"), 0, 1)


def _psnr(a, b, border=12):
    a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    return 10 * np.log10(1 / np.mean((a - b) ** 2))


def test_true_kernel_improves_a_lot():
    x, k = _scene(), _motion_kernel()
    y = _blur(x, k)
    for prior in ("hyper-laplacian", "tv"):
        out = deconvolve(y, k, prior=prior)
        assert out.shape == y.shape and out.dtype == y.dtype
        assert _psnr(out, x) > _psnr(y, x) + 8, prior


@pytest.mark.parametrize("boundary", ["wrap-smooth", "edgetaper", "periodic"])
def test_boundaries_run_and_help(boundary):
    x, k = _scene(seed=1), _motion_kernel()
    y = _blur(x, k)
    out = deconvolve(y, k, boundary=boundary)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert _psnr(out, x) > _psnr(y, x) + (3 if boundary != "periodic" else 0)


def test_dtypes_colour_and_layout():
    x, k = _scene(64, seed=2), _motion_kernel()
    y = _blur(x, k)
    out32 = deconvolve(y.astype(np.float32), k)
    assert out32.dtype == np.float32
    rgb = np.stack([y, 0.8 * y, 0.5 * y], axis=-1)
    out = deconvolve(rgb, k)
    assert out.shape == rgb.shape and out.dtype == np.float64
    # the gray channel processed alone gives the same result
    assert np.allclose(out[..., 0], deconvolve(y, k))
    chw = np.moveaxis(rgb, -1, 0)
    out_chw = deconvolve(chw, k, channel_axis=0)
    assert out_chw.shape == chw.shape
    assert np.allclose(np.moveaxis(out_chw, 0, -1), out)
    u8 = (y * 255).round().astype(np.uint8)
    assert deconvolve(u8, k).dtype == np.float64


def test_flat_and_deterministic():
    k = _motion_kernel()
    flat = np.full((40, 50), 0.3)
    out = deconvolve(flat, k)
    assert np.isfinite(out).all() and np.allclose(out, 0.3, atol=1e-6)
    y = _blur(_scene(64, seed=3), k)
    assert np.array_equal(deconvolve(y, k), deconvolve(y, k))


def test_bad_inputs():
    y = np.zeros((32, 32))
    with pytest.raises(InputError):
        deconvolve(y, np.ones((3, 3)), prior="l2")
    with pytest.raises(InputError):
        deconvolve(y, np.ones((3, 3)), alpha=1.5)
    with pytest.raises(InputError):
        deconvolve(y, -np.ones((3, 3)))
    with pytest.raises(InputError):
        deconvolve(y + 2, np.ones((3, 3)))
    with pytest.raises(InputError):
        deconvolve(y, np.ones((40, 3)))


def test_backends_agree(backend):
    x, k = _scene(64, seed=4), _motion_kernel()
    y = _blur(x, k)
    ref = deconvolve(y, k, backend="numpy")
    yb = backend.xp.asarray(y) if backend.name == "cupy" else y
    out = to_numpy(deconvolve(yb, k, backend=backend.name))
    assert np.max(np.abs(out - ref)) < 1e-5


def test_shrink_lp_is_the_minimiser():
    v = np.linspace(-2, 2, 401)
    grid = np.linspace(-3, 3, 30001)[:, None]
    for alpha in (1.0, 2 / 3, 0.5):
        for beta in (1.0, 8.0, 200.0):
            w = shrink_lp(v, beta, alpha)
            E = lambda t: np.abs(t) ** alpha + beta / 2 * (t - v) ** 2
            best = np.min(np.abs(grid) ** alpha + beta / 2 * (grid - v) ** 2, axis=0)
            assert np.all(E(w) <= best + 1e-9)


def test_grad_adjoint():
    rng = np.random.default_rng(0)
    x, z = rng.standard_normal((7, 9)), rng.standard_normal((2, 7, 9))
    assert np.isclose(np.sum(grad(x) * z), np.sum(x * grad_adjoint(z)))


def test_pad_smooth_wrap_is_periodic_and_smooth():
    rng = np.random.default_rng(0)
    x = np.clip(np.cumsum(rng.standard_normal((40, 60)), axis=1) * 0.02 + 0.5, 0, 1)
    for shape in (None, (70, 101)):
        p = pad_smooth_wrap(x, 12, shape=shape)
        assert np.array_equal(crop(p, 12, x.shape), x)
        # everywhere, wrap-around seams included, the steps are no larger
        # than the image's own largest step
        own = max(np.abs(np.diff(x, axis=ax)).max() for ax in (0, 1))
        for ax in (0, 1):
            assert np.abs(p - np.roll(p, 1, axis=ax)).max() <= own + 1e-12
    t = edgetaper(x, _motion_kernel())
    assert t.shape == x.shape and np.allclose(t[15:-15, 15:-15], x[15:-15, 15:-15])


def test_grad_and_adjoint_are_circular_differences_in_place():
    rng = np.random.default_rng(1)
    x, z = rng.standard_normal((6, 5)), rng.standard_normal((2, 6, 5))
    ref = np.stack([np.roll(x, -1, axis=1) - x, np.roll(x, -1, axis=0) - x])
    out = np.empty((2, 6, 5))
    assert grad(x, out=out) is out and np.array_equal(out, ref)
    ref_adj = (np.roll(z[0], 1, axis=1) - z[0]) + (np.roll(z[1], 1, axis=0) - z[1])
    assert np.array_equal(grad_adjoint(z), ref_adj)
    buf = np.empty((6, 5))
    zc = z.copy()
    assert grad_adjoint(zc, out=buf, overwrite_z=True) is buf and np.array_equal(buf, ref_adj)
