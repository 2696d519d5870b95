"""Tiled deconvolution of large images against the whole-image result."""

import numpy as np
import pytest
from scipy import ndimage
from scipy.signal import fftconvolve

pytest.importorskip("dask.array")

from hqsdeblur import nonblind, tiles  # noqa: E402
from hqsdeblur.nonblind import deconvolve  # noqa: E402
from hqsdeblur.tiles import deblur_large, deconvolve_tiled, estimate_kernel_region  # noqa: E402

# max |tiled - whole| on the interior (border of one kernel size left out),
# default overlap (2 x kernel size), hyper-Laplacian prior. Measured: 0.068
# here (256 x 384, tiles of 128), 0.041 on 768 x 1024 with tiles of 256;
# the mean difference is ~3e-4 and 99.9 % of pixels are within 0.03.
TOL_MAX = 0.1
TOL_MEAN = 1e-3


def _scene(shape, seed=0):
    rng = np.random.default_rng(seed)
    H, W = shape[:2]
    x = np.zeros(shape)
    for _ in range(60):
        y0, x0 = rng.integers(0, H), rng.integers(0, W)
        h, w = rng.integers(10, H // 4, 2)
        x[y0 : y0 + h, x0 : x0 + w] = rng.random(shape[2:]) if len(shape) == 3 else rng.random()
    return ndimage.gaussian_filter(x, (1.0, 1.0) + (0,) * (len(shape) - 2))


def _kernel():
    k = np.zeros((9, 9))
    k[4, 1:8] = 1
    k = ndimage.gaussian_filter(k, 0.7)
    return k / k.sum()


def _blur(x, k, seed=1):
    rng = np.random.default_rng(seed)
    kk = k if x.ndim == 2 else k[..., None]
    return np.clip(fftconvolve(x, kk, mode="same") + 0.01 * rng.standard_normal(x.shape), 0, 1)


def test_tiled_matches_whole_image():
    k = _kernel()
    y = _blur(_scene((256, 384)), k)
    whole = deconvolve(y, k)
    tiled = deconvolve_tiled(y, k, tile=128)
    assert tiled.shape == y.shape and tiled.dtype == whole.dtype
    b = k.shape[0]
    d = np.abs(tiled - whole)[b:-b, b:-b]
    assert d.max() <= TOL_MAX
    assert d.mean() <= TOL_MEAN


def test_blend_is_partition_of_unity(monkeypatch):
    # with an identity "deconvolution" the tiles must reassemble the input exactly
    monkeypatch.setattr(nonblind, "deconvolve", lambda block, k, **kw: block)
    y = np.random.default_rng(0).random((150, 230, 3))
    out = deconvolve_tiled(y, np.ones((5, 5)) / 25, tile=40, overlap=14, blend=14)
    np.testing.assert_allclose(out, y, atol=1e-12)


def test_colour_memmap_output_and_float32(tmp_path):
    k = _kernel()
    y = _blur(_scene((96, 128, 3), seed=2), k).astype(np.float32)
    out = np.lib.format.open_memmap(tmp_path / "o.npy", mode="w+", dtype=np.float32, shape=y.shape)
    res = deconvolve_tiled(y, k, tile=64, out=out)
    assert res is out and res.dtype == np.float32
    ref = deconvolve(y, k)
    assert np.abs(np.asarray(out) - ref)[9:-9, 9:-9].mean() < 5e-3  # small image: plumbing check


def test_region_picks_textured_window_and_deblur_large():
    k = _kernel()
    x = np.full((192, 256), 0.5)
    x[120:180, 170:250] = _scene((60, 80), seed=3)
    y = _blur(x, k)
    rows, cols = estimate_kernel_region(y, 9, region=64)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (64, 64)
    assert rows.stop > 120 and cols.stop > 170  # overlaps the textured patch
    out, kk = deblur_large(y, kernel_size=9, region=64, tile=96, deblur_options={"backend": "numpy"})
    assert out.shape == y.shape and kk.shape == (9, 9)
    assert np.isclose(kk.sum(), 1) and out.min() >= 0 and out.max() <= 1


def test_bad_options():
    y = np.zeros((64, 64))
    with pytest.raises(ValueError):
        deconvolve_tiled(y, np.ones((9, 9)) / 81, overlap=4)
    with pytest.raises(ValueError):
        deconvolve_tiled(y, np.ones((9, 9)) / 81, tile=10)
    assert tiles.__all__ == ["estimate_kernel_region", "estimate_kernel_regions", "deconvolve_tiled", "deblur_large"]


def _overlap(a, b):
    (ra, ca), (rb, cb) = a, b
    return max(0, min(ra.stop, rb.stop) - max(ra.start, rb.start)) * max(0, min(ca.stop, cb.stop) - max(ca.start, cb.start))


def test_regions_ranked_and_limited_overlap():
    y = np.zeros((600, 600))
    y[30:90, 40:100] = _scene((60, 60), seed=4)  # strongest texture
    y[400:460, 400:460] = 0.5 * _scene((60, 60), seed=5)
    y[100:500, 100:500] += 0.02 * _scene((400, 400), seed=6)
    wins = tiles.estimate_kernel_regions(y, 9, region=128, count=3, max_overlap=0.25)
    assert len(wins) == 3
    r0, c0 = wins[0]
    assert r0.start <= 30 and r0.stop >= 90 and c0.start <= 40 and c0.stop >= 100
    assert any(r.start <= 400 and r.stop >= 460 and c.start <= 400 and c.stop >= 460 for r, c in wins[1:])
    for i, w in enumerate(wins):
        assert (w[0].stop - w[0].start, w[1].stop - w[1].start) == (128, 128)
        assert all(_overlap(w, v) <= 0.25 * 128 * 128 for v in wins[:i])
    assert tiles.estimate_kernel_region(y, 9, region=128) == wins[0]
    # too small for three separate windows: the second pass allows (1 + 0.25) / 2
    small = tiles.estimate_kernel_regions(y[:160, :200], 9, region=128, count=3, max_overlap=0.25)
    assert len(small) == 3 and len(set((r.start, c.start) for r, c in small)) == 3
    assert all(_overlap(w, v) <= 0.625 * 128 * 128 for i, w in enumerate(small) for v in small[:i])


def test_consensus_outvotes_one_failed_kernel():
    good = _kernel()
    shifted = np.roll(good, 1, axis=1)  # the same kernel, one pixel off
    bad = np.zeros((9, 9))
    bad[1:8, 4] = 1 / 7  # vertical instead of horizontal
    k, opts = tiles._consensus([(bad, {"a": 0}), (good, {"a": 1}), (shifted, {"a": 2})])
    assert opts["a"] in (1, 2)
    # rejected estimates (options None) do not vote; all rejected: the first
    k, opts = tiles._consensus([(bad, None), (good, {"a": 1})])
    assert opts == {"a": 1}
    k, opts = tiles._consensus([(bad, None), (good, None)])
    assert k is bad and opts is None
