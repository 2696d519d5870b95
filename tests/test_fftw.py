"""FFTW plans (optional pyFFTW) against scipy.fft: single transforms, the
stack helpers, the unrolled forward, threads and the wisdom file."""

import json
import threading

import numpy as np
import pytest
import scipy.fft

pyfftw = pytest.importorskip("pyfftw")

from hqsdeblur import _fftw  # noqa: E402
from hqsdeblur.steps import fourier  # noqa: E402
from hqsdeblur.unrolled import UnrolledModel  # noqa: E402

TOL = {np.float32: 2e-5, np.float64: 1e-12}


@pytest.fixture
def fftw_on(monkeypatch):
    monkeypatch.setenv("HQSDEBLUR_FFTW", "1")
    assert _fftw.enabled()


def _misaligned(shape, dtype):
    """A C-contiguous array whose data pointer is off FFTW's SIMD alignment."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    raw = pyfftw.empty_aligned(n + 1, dtype=dtype)
    a = raw[1:].reshape(shape)
    assert a.ctypes.data % pyfftw.simd_alignment != 0
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(24, 30), (21, 35), (16, 17)])
def test_transforms_match_scipy(fftw_on, dtype, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    ref = scipy.fft.rfft2(x)
    scale = np.abs(ref).max()
    # aligned in and out, misaligned in and out, no out
    for src, out in [(x, _fftw.empty_aligned(ref.shape, ref.dtype)),
                     (_misaligned(shape, dtype), _misaligned(ref.shape, ref.dtype)), (x, None)]:
        src[...] = x
        X = _fftw.rfft2(src, out)
        assert X.dtype == ref.dtype and (out is None or X is out)
        assert np.abs(X - ref).max() < TOL[dtype] * scale
        np.testing.assert_array_equal(src, x)  # the forward transform keeps its input
        back = _fftw.irfft2(X.copy(), shape)
        assert back.dtype == x.dtype
        assert np.abs(back - x).max() < TOL[dtype] * np.abs(x).max() * 10
    with pytest.raises(ValueError, match="does not match the grid"):
        _fftw.irfft2(ref, (shape[0], shape[1] + 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stack_helpers_agree_with_and_without_fftw(monkeypatch, dtype):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 26, 33)).astype(dtype)
    out = {}
    for env in ("1", "0"):
        monkeypatch.setenv("HQSDEBLUR_FFTW", env)
        R = fourier.rfft2_stack(a)
        A = R.copy()
        g = fourier.irfft2_stack(R, a.shape[1:])
        np.testing.assert_array_equal(R, A)  # irfft2_stack leaves its input alone
        out[env] = (R, g)
    scale = np.abs(out["0"][0]).max()
    assert np.abs(out["1"][0] - out["0"][0]).max() < TOL[dtype] * scale
    assert np.abs(out["1"][1] - a).max() < TOL[dtype] * 10 and np.abs(out["0"][1] - a).max() < TOL[dtype] * 10


@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_unrolled_forward_agrees_with_and_without_fftw(monkeypatch, backend):
    import hqsdeblur
    from test_unrolled import _tiny

    if backend not in hqsdeblur.available_backends():
        pytest.skip(f"backend {backend} not available")
    cfg, p = _tiny()
    m = UnrolledModel(cfg, p)
    y = np.random.default_rng(2).random((37, 52))
    res = {}
    for env in ("1", "0"):
        monkeypatch.setenv("HQSDEBLUR_FFTW", env)
        res[env] = m.forward(y, backend=backend), m.forward(y, tape=True, backend=backend)[:2]
    for a, b in zip(res["1"], res["0"]):
        assert np.abs(a[0] - b[0]).max() < 1e-10 and np.abs(a[1] - b[1]).max() < 1e-10


def test_plans_keep_no_caller_arrays(fftw_on):
    x = _fftw.empty_aligned((20, 26), np.float32)
    x[...] = 1
    out = _fftw.empty_aligned((20, 14), np.complex64)
    _fftw.rfft2(x, out)
    p = _fftw._plan("r2c", x.shape, np.float32)
    assert p.fftw.input_array is p.src and p.fftw.output_array is p.dst
    assert out[0, 0] == 20 * 26


def test_stack_scratch_is_aligned(fftw_on):
    # misaligned scratch would cost FFTW one more copy per channel
    for b in fourier._slice_buffers(5, 2, (20, 13), np.complex64):
        assert b.ctypes.data % pyfftw.simd_alignment == 0


def test_plans_are_per_thread(fftw_on):
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((8, 40, 50)).astype(np.float32)
    ref = scipy.fft.rfft2(xs)
    got = [None] * len(xs)
    plans = {}

    def work(i0):
        for i in range(i0, len(xs), 2):
            got[i] = _fftw.rfft2(xs[i], _fftw.empty_aligned(ref.shape[1:], ref.dtype))
        plans[i0] = _fftw._plan("r2c", xs.shape[1:], np.float32)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert plans[0] is not plans[1]  # never one plan's arrays swapped under another thread
    assert np.abs(np.stack(got) - ref).max() < 2e-5 * np.abs(ref).max()


def test_wisdom_file_written_read_and_corruption_ignored(fftw_on, monkeypatch, tmp_path):
    monkeypatch.setenv("HQSDEBLUR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_fftw, "_WISDOM", {"loaded": False, "saved": None})
    monkeypatch.setattr(_fftw, "_LOCAL", threading.local())
    pyfftw.forget_wisdom()
    x = np.random.default_rng(4).standard_normal((18, 22)).astype(np.float32)
    _fftw.rfft2(x)
    path = tmp_path / "fftw_wisdom.json"
    parts = json.loads(path.read_text())
    assert len(parts) == 3 and "fftwf" in parts[1]  # single-precision wisdom
    # a corrupt file: the plan is made again, the transform is still right
    path.write_text("{not json")
    monkeypatch.setattr(_fftw, "_WISDOM", {"loaded": False, "saved": None})
    monkeypatch.setattr(_fftw, "_LOCAL", threading.local())
    X = _fftw.rfft2(x)
    assert np.abs(X - scipy.fft.rfft2(x)).max() < 1e-4
    json.loads(path.read_text())  # rewritten whole (atomic), valid again
    # an unwritable cache directory only costs the planning
    monkeypatch.setenv("HQSDEBLUR_CACHE_DIR", str(tmp_path / "file"))
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(_fftw, "_LOCAL", threading.local())
    X = _fftw.rfft2(x[:, :20])
    assert np.abs(X - scipy.fft.rfft2(x[:, :20])).max() < 1e-4


def test_switch_off(monkeypatch):
    monkeypatch.setenv("HQSDEBLUR_FFTW", "0")
    assert not _fftw.enabled()
    assert type(_fftw.empty_aligned((3, 4), np.float32)) is np.ndarray
    monkeypatch.setenv("HQSDEBLUR_FFTW", "off")
    assert not _fftw.enabled()
    x = np.random.default_rng(5).standard_normal((3, 12, 14))
    np.testing.assert_allclose(fourier.rfft2_stack(x), scipy.fft.rfft2(x), atol=1e-12)
