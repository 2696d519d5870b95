"""Tests for hqsdeblur.data (training-pair synthesis)."""

from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from hqsdeblur import data
from hqsdeblur.errors import InputError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
POOL = SHARED / "kernels_real" / "kernels_real.npz"
TRAIN = SHARED / "train_images"


def com(k):
    s = k.sum()
    return (np.arange(k.shape[0]) @ k.sum(1) / s, np.arange(k.shape[1]) @ k.sum(0) / s)


def assert_valid_kernel(k, size=None):
    assert k.ndim == 2 and k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    if size is not None:
        assert k.shape == (size, size)
    assert np.all(k >= 0)
    assert k.sum() == pytest.approx(1.0, abs=1e-6)
    c = k.shape[0] // 2
    r, q = com(k)
    assert abs(r - c) <= 0.5 and abs(q - c) <= 0.5


def synthetic_images(n=3, size=96, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = []
    for _ in range(n):
        f = rng.uniform(2, 8, 2)
        img = 0.5 + 0.25 * np.sin(2 * np.pi * f[0] * xx) * np.cos(2 * np.pi * f[1] * yy)
        out.append(np.clip(img + 0.05 * rng.standard_normal(img.shape), 0, 1))
    return out


# ---------------------------------------------------------------- kernels

@pytest.mark.parametrize("length,angle", [(0, 0), (1, 45), (5, 0), (9.5, 30), (20, 90), (35, 137)])
def test_linear_kernel_valid(length, angle):
    k = data.linear_kernel(length, angle)
    size = int(np.ceil(length + 2))
    assert k.shape[0] == size + (1 - size % 2)
    assert_valid_kernel(k)


@pytest.mark.parametrize("length,angle", [(11, 0), (15, 30), (21, 90), (25, 135), (17, 160)])
def test_linear_kernel_second_moments(length, angle):
    k = data.linear_kernel(length, angle, size=31)
    c = 15
    r, q = np.mgrid[:31, :31] - c
    x, y = q, -r  # y up, so angles are counter-clockwise
    cov = np.array([[np.sum(k * x * x), np.sum(k * x * y)], [np.sum(k * x * y), np.sum(k * y * y)]])
    w, v = np.linalg.eigh(cov)
    major = v[:, 1]
    got = np.rad2deg(np.arctan2(major[1], major[0])) % 180
    diff = min(abs(got - angle), 180 - abs(got - angle))
    assert diff < 2.0
    # A uniform segment of length L has variance L^2 / 12 along itself.
    assert w[1] == pytest.approx(length ** 2 / 12, rel=0.08)
    assert w[0] < 0.5


def test_linear_kernel_errors():
    with pytest.raises(InputError):
        data.linear_kernel(-1, 0)
    with pytest.raises(InputError):
        data.linear_kernel(5, 0, size=8)
    with pytest.raises(InputError):
        data.linear_kernel(30, 0, size=21)


def test_linear_bank():
    bank = data.linear_kernel_bank(size=41)
    assert bank.shape == (256, 41, 41)
    for k in bank[::17]:
        assert_valid_kernel(k, 41)
    # Short lines at near-axis angles can coincide (the segment stays in one
    # pixel row); from length 9 on every kernel is distinct.
    assert len({k.tobytes() for k in bank[32:]}) == 224
    small = data.linear_kernel_bank(lengths=[3, 7], angles=[0, 45, 90], size=11)
    assert small.shape == (6, 11, 11)


def test_shake_kernels_valid_and_varied():
    rng = np.random.default_rng(0)
    extents = []
    for _ in range(40):
        k = data.shake_kernel(rng, size=45)
        assert_valid_kernel(k, 45)
        nz = np.argwhere(k > 0)
        extents.append((nz.max(0) - nz.min(0) + 1).max())
    # Sizes range from small to nearly the window.
    assert min(extents) < 15 and max(extents) > 30
    assert max(extents) <= 45
    k = data.shake_kernel(np.random.default_rng(1), size=15, max_extent=6)
    assert_valid_kernel(k, 15)


def test_shake_kernel_deterministic():
    a = data.shake_kernel(np.random.default_rng(7), size=31)
    b = data.shake_kernel(np.random.default_rng(7), size=31)
    c = data.shake_kernel(np.random.default_rng(8), size=31)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_center_kernel():
    k = np.zeros((9, 9))
    k[0, 0:3] = 1
    out = data.center_kernel(k, 7)
    assert_valid_kernel(out, 7)
    with pytest.raises(InputError):
        data.center_kernel(np.ones((1, 9)), 7)


def test_augment_kernel():
    k = data.shake_kernel(np.random.default_rng(0), size=21)
    seen = set()
    for s in range(40):
        a = data.augment_kernel(k, np.random.default_rng(s))
        assert_valid_kernel(a, 21)
        seen.add(a.tobytes())
    assert len(seen) == 8


@pytest.mark.skipif(not POOL.is_file(), reason="shared kernel pool not present")
def test_pool_excludes_levin():
    pool, names = data.load_kernel_pool(POOL, return_names=True)
    assert pool and len(pool) == len(names)
    assert not any(n.startswith("levin09_") for n in names)
    assert "kair_k12_08" not in names and "kair_k12_09" not in names
    for k in pool:
        assert np.all(k >= 0) and k.sum() == pytest.approx(1.0)
    small = data.load_kernel_pool(POOL, max_size=25)
    assert 0 < len(small) < len(pool)
    for k in small:
        assert_valid_kernel(data.center_kernel(k, 25), 25)
    _, all_names = data.load_kernel_pool(POOL, exclude=(), return_names=True)
    assert sum(n.startswith("levin09_") for n in all_names) == 8


# ---------------------------------------------------------------- images

def test_list_and_load_images(tmp_path):
    import imageio.v3 as iio

    rgb = (np.random.default_rng(0).random((8, 10, 3)) * 255).astype(np.uint8)
    (tmp_path / "sub").mkdir()
    iio.imwrite(tmp_path / "b.png", rgb)
    iio.imwrite(tmp_path / "sub" / "a.PNG", rgb[..., 0])
    (tmp_path / "notes.txt").write_text("x")
    files = data.list_images(tmp_path)
    assert [f.name for f in files] == ["b.png", "a.PNG"]  # sorted by full path
    assert len(data.list_images(tmp_path, recursive=False)) == 1
    g = data.load_gray(tmp_path / "b.png")
    assert g.shape == (8, 10) and g.dtype == np.float64
    np.testing.assert_allclose(g, rgb @ np.array([0.2125, 0.7154, 0.0721]) / 255)
    g2 = data.load_gray(tmp_path / "sub" / "a.PNG")
    np.testing.assert_allclose(g2, rgb[..., 0] / 255)


def test_random_patch_rejects_flat():
    img = np.zeros((64, 64))
    img[:, 48:] = np.random.default_rng(0).random((64, 16))  # only the right strip has texture
    for s in range(20):
        p = data.random_patch(img, np.random.default_rng(s), 16, min_std=0.05, tries=50)
        assert p.shape == (16, 16) and p.std() >= 0.05
    # Entirely flat image: falls back to a crop instead of failing.
    p = data.random_patch(np.full((20, 20), 0.3), np.random.default_rng(0), 8)
    assert p.shape == (8, 8)
    with pytest.raises(InputError):
        data.random_patch(np.zeros((10, 10)), np.random.default_rng(0), 12)


def test_random_patch_rectangular():
    img = np.random.default_rng(0).random((40, 50))
    for s in range(10):
        assert data.random_patch(img, np.random.default_rng(s), (12, 20)).shape == (12, 20)


# ---------------------------------------------------------------- degradation

@pytest.mark.parametrize("kshape", [(3, 3), (5, 5), (3, 5), (4, 4)])
def test_blur_valid_matches_convolve2d(kshape):
    rng = np.random.default_rng(0)
    x = rng.random((12, 13))
    k = rng.random(kshape)
    k /= k.sum()
    y, xc = data.blur_valid(x, k)
    ref = signal.convolve2d(x, k, mode="valid")
    np.testing.assert_allclose(y, ref, atol=1e-12)
    assert xc.shape == y.shape


def test_blur_valid_alignment():
    # A centred delta shifted by one pixel must shift the output by one pixel.
    x = np.random.default_rng(1).random((11, 11))
    d = np.zeros((5, 5))
    d[2, 2] = 1
    y, xc = data.blur_valid(x, d)
    np.testing.assert_allclose(y, xc, atol=1e-12)
    d = np.zeros((5, 5))
    d[2, 3] = 1  # convolution: output[i, j] = x[i, j - 1] relative to centre
    y, xc = data.blur_valid(x, d)
    np.testing.assert_allclose(y, x[2:9, 1:8], atol=1e-12)
    # Symmetric kernel keeps a linear ramp unchanged at the aligned position.
    ramp = np.add.outer(np.arange(15.0), 2 * np.arange(15.0))
    y, xc = data.blur_valid(ramp, data.linear_kernel(5, 30, size=7))
    np.testing.assert_allclose(y, xc, atol=1e-9)


def test_degrade():
    y0 = np.full((64, 64), 0.5)
    y = data.degrade(y0, np.random.default_rng(0), noise_sigma=0.02, quantize=False)
    assert 0.015 < np.std(y - y0) < 0.025
    q = data.degrade(y0, np.random.default_rng(0), noise_sigma=0.02)
    np.testing.assert_allclose(q * 255, np.round(q * 255), atol=1e-9)
    z = data.degrade(np.array([[-0.2, 1.3]]), np.random.default_rng(0), noise_sigma=0)
    assert z.min() == 0 and z.max() == 1
    r = data.degrade(y0, np.random.default_rng(0), noise_sigma=(0.0, 0.05), quantize=False)
    assert np.std(r - y0) < 0.06
    with pytest.raises(InputError):
        data.degrade(y0, np.random.default_rng(0), noise_sigma=-1)


# ---------------------------------------------------------------- sampling

@pytest.mark.parametrize("mode", ["linear", "shake", "mixed"])
def test_pair_sampler_shapes(mode):
    s = data.PairSampler(synthetic_images(), patch_size=(24, 20), kernel_size=15,
                         kernel_mode=mode, pool=[data.linear_kernel(3, 10)])
    y, x, k = s.sample(np.random.default_rng(0))
    assert y.shape == (24, 20) and x.shape == (24, 20) and k.shape == (15, 15)
    assert y.dtype == np.float32
    assert_valid_kernel(k.astype(np.float64), 15)
    assert 0 <= y.min() and y.max() <= 1
    # Noise-free, unquantised: blurred equals the valid blur of the source patch.
    s0 = data.PairSampler(synthetic_images(), patch_size=16, kernel_size=9, kernel_mode=mode,
                          pool=[data.linear_kernel(3, 10)], noise_sigma=0.0, quantize=False,
                          dtype=np.float64)
    rng = np.random.default_rng(3)
    y, x, k = s0.sample(rng)
    rng = np.random.default_rng(3)
    img = s0.image(int(rng.integers(len(s0))))
    patch = data.random_patch(img, rng, (24, 24), min_std=s0.min_std, tries=s0.tries)
    kk = s0.kernel(rng)
    np.testing.assert_allclose(kk, k)
    yy, xx = data.blur_valid(patch, kk)
    np.testing.assert_allclose(y, np.clip(yy, 0, 1), atol=1e-12)
    np.testing.assert_allclose(x, xx)


def test_pair_sampler_errors():
    with pytest.raises(InputError):
        data.PairSampler([], kernel_mode="linear")
    with pytest.raises(InputError):
        data.PairSampler(synthetic_images(1), kernel_size=8, kernel_mode="linear")
    with pytest.raises(InputError):
        data.PairSampler(synthetic_images(1), kernel_mode="bogus")
    with pytest.raises(InputError):
        data.PairSampler(synthetic_images(1), kernel_size=9, kernel_mode="pool", pool=[])


def _sampler(**kw):
    opts = dict(patch_size=16, kernel_size=11, kernel_mode="mixed",
                pool=[data.shake_kernel(np.random.default_rng(5), size=11)])
    opts.update(kw)
    return data.PairSampler(synthetic_images(), **opts)


def test_batch_determinism_and_resume():
    s = _sampler()
    with data.BatchStream(s, 3, seed=42, stop_step=5, threads=2, prefetch=3) as st:
        run = list(st)
    assert len(run) == 5
    b = run[0]
    assert b.blurred.shape == (3, 16, 16) and b.sharp.shape == (3, 16, 16)
    assert b.kernel.shape == (3, 11, 11)
    # Same seed, fresh sampler, single thread: identical.
    with data.BatchStream(_sampler(), 3, seed=42, stop_step=5, threads=1, prefetch=1) as st:
        again = list(st)
    for a, c in zip(run, again):
        for u, v in zip(a, c):
            np.testing.assert_array_equal(u, v)
    # Resuming at step 3 reproduces batches 3 and 4.
    with data.BatchStream(s, 3, seed=42, start_step=3, stop_step=5) as st:
        resumed = list(st)
    assert len(resumed) == 2
    for a, c in zip(run[3:], resumed):
        for u, v in zip(a, c):
            np.testing.assert_array_equal(u, v)
    # make_batch is the pure function behind the stream.
    direct = data.make_batch(s, 3, seed=42, step=4)
    np.testing.assert_array_equal(direct.blurred, run[4].blurred)
    # Different steps and different seeds differ.
    assert not np.array_equal(run[0].blurred, run[1].blurred)
    other = data.make_batch(s, 3, seed=43, step=0)
    assert not np.array_equal(other.blurred, run[0].blurred)
    assert not np.array_equal(other.kernel, run[0].kernel)


def test_coarse_start_kernels():
    """Coarse starts: a blurred, centred copy of the true kernel on the
    chosen fraction of pairs, deltas elsewhere; batches without them are
    unchanged (old runs resume identically)."""
    k = np.zeros((11, 11))
    k[5, 2:9] = 1 / 7
    k0 = data.coarse_start_kernel(k, 0.5)
    assert k0.shape == (11, 11) and k0.min() >= 0 and abs(k0.sum() - 1) < 1e-12
    com = (np.arange(11)[:, None] * k0).sum(), (np.arange(11)[None, :] * k0).sum()
    assert max(abs(com[0] - 5), abs(com[1] - 5)) <= 0.5
    assert k0.max() < k.max()  # detail lost at the coarse scale
    assert np.abs(k0 - k).sum() < 1.0  # but still the same blur
    plain = data.make_batch(_sampler(), 4, seed=3, step=2)
    assert plain.k0 is None
    s = _sampler()
    s.coarse_start = 0.5
    b = data.make_batch(s, 4, seed=3, step=2)
    np.testing.assert_array_equal(b.blurred, plain.blurred)
    np.testing.assert_array_equal(b.kernel, plain.kernel)
    assert b.k0.shape == b.kernel.shape
    np.testing.assert_allclose(b.k0.sum(axis=(1, 2)), 1, rtol=1e-5)
    np.testing.assert_array_equal(b.k0, data.make_batch(s, 4, seed=3, step=2).k0)
    s.coarse_start = 1.0
    b1 = data.make_batch(s, 4, seed=3, step=2)
    assert all(k0.max() < 1 for k0 in b1.k0)
    s.coarse_start = 0.0
    with pytest.raises(InputError):
        data.PairSampler([np.zeros((32, 32))], patch_size=8, kernel_size=5, coarse_start=2)


def test_batch_stream_close_unbounded():
    st = data.BatchStream(_sampler(kernel_mode="linear"), 2, seed=0, prefetch=2)
    first = next(st)
    assert first.blurred.shape == (2, 16, 16)
    assert st.step == 1
    st.close()
    st.close()  # idempotent
    with pytest.raises(StopIteration):
        next(st)


def test_sample_rng_pure():
    a = data.sample_rng(1, 2, 3).random(4)
    np.testing.assert_array_equal(a, data.sample_rng(1, 2, 3).random(4))
    assert not np.array_equal(a, data.sample_rng(1, 2, 4).random(4))
    assert not np.array_equal(a, data.sample_rng(1, 3, 3).random(4))


def test_split_images():
    paths = ["r/bsds500_train/1.jpg", "r/kodak24/k1.png", "r/mcmaster18/m.png",
             "r/bsds500_val/v.jpg"]
    tr, ho = data.split_images(paths)
    assert [p.name for p in ho] == ["k1.png"]
    assert len(tr) == 3
    tr, ho = data.split_images(paths, holdout=("kodak24", "mcmaster18"), include=("bsds500_train",))
    assert [p.name for p in tr] == ["1.jpg"] and len(ho) == 2


@pytest.mark.skipif(not TRAIN.is_dir(), reason="shared training images not present")
def test_real_images_pipeline():
    files = data.list_images(TRAIN)
    assert len(files) > 300
    train, held = data.split_images(files)
    assert len(held) == 24 and not any("kodak24" in str(p) for p in train)
    pick = train[::100][:3]
    s = data.PairSampler(pick, patch_size=32, kernel_size=21, kernel_mode="mixed",
                         pool=data.load_kernel_pool(POOL, max_size=21) if POOL.is_file() else None)
    b = data.make_batch(s, 4, seed=0, step=0)
    assert b.blurred.shape == (4, 32, 32) and b.kernel.shape == (4, 21, 21)
    assert np.all((b.sharp >= 0) & (b.sharp <= 1))
    assert len(s._cache) >= 1
