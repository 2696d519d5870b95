"""Fused kernels of the unrolled fast path: every compiled variant equals the
NumPy reference, the reference equals the step kernels it fuses, and the
fast forward pass gives the NumPy fast path's output on every backend."""

import os

import numpy as np
import pytest

from hqsdeblur import _fused_ref as ref
from hqsdeblur import _kernels_ref, unrolled
from hqsdeblur.backend import get_backend, use_backend
from hqsdeblur.errors import InputError
from hqsdeblur.unrolled import UnrolledConfig, UnrolledModel, init_params

TOL = {np.complex128: 1e-12, np.complex64: 1e-5}
REAL = {np.complex128: np.float64, np.complex64: np.float32}


def _module(backend):
    if backend.name == "numpy":
        return ref
    if backend.name == "cupy":
        pytest.skip("the fused kernels are host (NumPy array) kernels")
    mod = unrolled._fused_kernels(backend)
    if mod is None:  # pragma: no cover - an old build without _fused
        pytest.skip(f"no fused kernels for {backend.name}")
    return mod


def _crandn(rng, shape, cdt):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(cdt)


def _close(a, b, tol):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(1.0, float(np.abs(b).max()) if b.size else 1.0)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    assert float(np.abs(a - b).max(initial=0)) <= tol * scale


# (C or None for a single 2-D channel, F1, F2): odd and even sizes, and a
# stack large enough for the parallel loops
SHAPES = [(None, 7, 5), (None, 8, 6), (3, 7, 4), (2, 9, 6), (4, 128, 129)]


# --------------------------------------------------------------- references

@pytest.mark.parametrize("cdt", [np.complex128, np.complex64])
def test_reference_equals_the_step_kernels(cdt):
    """The fused references are the existing kernels rewritten: features
    Y_c = E_c Yg, P = conj(K) Yg, K2 = |K|^2."""
    rng = np.random.default_rng(0)
    C, F1, F2 = 3, 8, 5
    E, Z = _crandn(rng, (C, F1, F2), cdt), _crandn(rng, (C, F1, F2), cdt)
    K, Yg = _crandn(rng, (F1, F2), cdt), _crandn(rng, (F1, F2), cdt)
    zeta = rng.uniform(0.5, 2.0, C).astype(REAL[cdt])
    K2 = (K.real**2 + K.imag**2).astype(REAL[cdt])
    tol = 1e2 * TOL[cdt]
    G = ref.fused_feature_update(E, np.conj(K) * Yg, Z, K2, zeta)
    _close(G, _kernels_ref.feature_update(E * Yg, Z, K, zeta), tol)
    num, sq = np.zeros((F1, F2), cdt), np.zeros((F1, F2), REAL[cdt])
    ref.fused_kernel_ls_sums(Z, E, num, sq)
    rho = 0.7
    _close(((rho * num * Yg + K) / (rho * sq + 1)).astype(cdt), _kernels_ref.kernel_ls(Z, E * Yg, K, rho), tol)
    x = rng.standard_normal((C, 6, 7)).astype(REAL[cdt])
    b = np.abs(zeta)
    _close(ref.fused_soft_shrink(x, b), _kernels_ref.soft_shrink(x, b), 0)


# ---------------------------------------------------------- kernel parity

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cdt", [np.complex128, np.complex64])
@pytest.mark.parametrize("inplace", [False, True])
def test_feature_update(backend, shape, cdt, inplace):
    mod = _module(backend)
    rng = np.random.default_rng(1)
    C, F1, F2 = shape
    lead = () if C is None else (C,)
    E, Z = _crandn(rng, lead + (F1, F2), cdt), _crandn(rng, lead + (F1, F2), cdt)
    P = _crandn(rng, (F1, F2), cdt)
    K2 = rng.uniform(0, 3, (F1, F2)).astype(REAL[cdt])
    zeta = rng.uniform(0.5, 2.0) if C is None else rng.uniform(0.5, 2.0, C)
    want = ref.fused_feature_update(E, P, Z, K2, zeta)
    for parallel in (True, False):
        Zi = Z.copy()
        out = Zi if inplace else np.empty_like(Z)
        got = mod.fused_feature_update(E, P, Zi, K2, zeta, out=out, parallel=parallel)
        assert got is out
        _close(got, want, TOL[cdt])
    _close(mod.fused_feature_update(E, P, Z, K2, zeta), want, TOL[cdt])  # allocated output


@pytest.mark.parametrize("shape", [(None, 7, 5), (None, 8, 6), (3, 7, 9), (4, 128, 130)])
@pytest.mark.parametrize("rdt", [np.float64, np.float32])
@pytest.mark.parametrize("two", [False, True])
def test_soft_shrink(backend, shape, rdt, two):
    mod = _module(backend)
    rng = np.random.default_rng(2)
    C, H, W = shape
    lead = () if C is None else (C,)
    g = rng.standard_normal(lead + (H, W)).astype(rdt)
    g.flat[3] = np.nan  # propagates
    b = rng.uniform(0, 1) if C is None else rng.uniform(0, 1, C)
    b2 = rng.uniform(0, 1) if C is None else rng.uniform(0, 1, C)
    for parallel in (True, False):
        if two:
            want = ref.fused_soft_shrink(g, b, b2=b2)
            out, out2 = np.empty_like(g), np.empty_like(g)
            got = mod.fused_soft_shrink(g, b, out, b2=b2, out2=out2, parallel=parallel)
            assert got[0] is out and got[1] is out2
            for a, w in zip(got, want):
                np.testing.assert_array_equal(a, w)  # elementwise, exact
        else:
            want = ref.fused_soft_shrink(g, b)
            np.testing.assert_array_equal(mod.fused_soft_shrink(g, b, parallel=parallel), want)
            gi = g.copy()  # in place
            np.testing.assert_array_equal(mod.fused_soft_shrink(gi, b, gi, parallel=parallel), want)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cdt", [np.complex128, np.complex64])
def test_kernel_ls_sums(backend, shape, cdt):
    mod = _module(backend)
    rng = np.random.default_rng(3)
    C, F1, F2 = shape
    lead = () if C is None else (C,)
    Z, E = _crandn(rng, lead + (F1, F2), cdt), _crandn(rng, lead + (F1, F2), cdt)
    num0 = _crandn(rng, (F1, F2), cdt)
    sq0 = rng.uniform(0, 1, (F1, F2)).astype(REAL[cdt])
    want = ref.fused_kernel_ls_sums(Z, E, num0.copy(), sq0.copy())
    for parallel in (True, False):
        num, sq = num0.copy(), sq0.copy()
        got = mod.fused_kernel_ls_sums(Z, E, num, sq, parallel=parallel)
        assert got[0] is num and got[1] is sq
        _close(num, want[0], TOL[cdt])
        _close(sq, want[1], TOL[cdt])


def test_bad_arguments_are_refused(backend):
    mod = _module(backend)
    rng = np.random.default_rng(4)
    E, Z, P = (_crandn(rng, (2, 4, 3), np.complex64) for _ in range(3))
    K2 = np.ones((4, 3), np.float32)
    with pytest.raises(InputError):
        mod.fused_feature_update(E, P, Z, K2, 1.0)  # P must be (F1, F2)
    with pytest.raises(InputError):
        mod.fused_feature_update(E, P[0], Z, K2, [1.0, 2.0, 3.0])  # zeta length
    with pytest.raises(InputError):  # out overlapping Z without being Z
        big = np.zeros((3, 4, 3), np.complex64)
        mod.fused_feature_update(E, P[0], big[:2], K2, 1.0, out=big[1:])
    with pytest.raises(InputError):
        mod.fused_feature_update(E, P[0], Z, K2, 1.0, out=np.empty((2, 4, 3), np.complex128))
    with pytest.raises(InputError):
        mod.fused_soft_shrink(np.ones((2, 3, 3), np.float32), 0.5, out2=np.empty((2, 3, 3), np.float32))
    with pytest.raises(InputError):
        mod.fused_soft_shrink(np.ones((2, 3, 3), np.complex64), 0.5)
    with pytest.raises(InputError):
        mod.fused_kernel_ls_sums(Z, E, np.zeros((4, 3), np.complex64), np.zeros((4, 3), np.float64))


# ---------------------------------------------------------- fast forward

def _fast(model, y, be, **kw):
    with use_backend(be):
        return model.forward(y, **kw)


def _check_fast_forward(model, y, backend, tol_x, tol_k, **kw):
    if backend.name == "cupy":
        pytest.skip("the fast path serves NumPy arrays")
    if backend.name != "numpy":
        assert unrolled._fused_kernels(backend) is not None
    x0, k0 = _fast(model, y, "numpy", **kw)
    x1, k1 = _fast(model, y, backend.name, **kw)
    assert x1.dtype == y.dtype and k1.dtype == y.dtype
    assert np.abs(x1 - x0).max() <= tol_x * max(1.0, np.abs(x0).max())
    assert np.abs(k1 - k0).max() <= tol_k


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 2e-5)])
@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("shape", [(37, 50), (50, 37)])
def test_fast_forward_random_model(backend, dtype, tol, workers, shape, monkeypatch):
    """Small random model (no shared data), FFT grids 45 x 60 and 60 x 45
    (odd and even sizes on both axes), one and two channel groups
    (threads), from the delta and from a given k0."""
    monkeypatch.setenv("HQSDEBLUR_FFT_WORKERS", workers)
    cfg = UnrolledConfig(channels=5, layers=3, kernel_size=9)
    model = UnrolledModel(cfg, init_params(cfg, seed=3))
    assert unrolled._smooth_grid(shape, 8) == {(37, 50): (45, 60), (50, 37): (60, 45)}[shape]
    rng = np.random.default_rng(5)
    y = rng.random(shape).astype(dtype)
    _check_fast_forward(model, y, backend, tol, tol)
    k0 = rng.random((9, 9)).astype(dtype)
    _check_fast_forward(model, y, backend, tol, tol, k0=k0 / k0.sum())


def test_fast_forward_state(backend):
    """return_state gives the same final features and kernel spectra."""
    if backend.name == "cupy":
        pytest.skip("the fast path serves NumPy arrays")
    cfg = UnrolledConfig(channels=4, layers=2, kernel_size=7)
    model = UnrolledModel(cfg, init_params(cfg, seed=4))
    y = np.random.default_rng(6).random((30, 41))
    x0, k0, s0 = _fast(model, y, "numpy", return_state=True)
    x1, k1, s1 = _fast(model, y, backend.name, return_state=True)
    for key in ("Gf", "K", "W", "eta"):
        _close(s1[key], s0[key], 1e-10)


@pytest.fixture(scope="module")
def published():
    from conftest import SHARED

    from hqsdeblur.model_io import load_model

    path = os.path.join(SHARED, "reference", "dublid_linear_16c10l.npz")
    blurred = os.path.join(SHARED, "reference", "parity_000_00.npz")
    if not (os.path.exists(path) and os.path.exists(blurred)):
        pytest.skip("../shared/reference is absent")
    return load_model(path), np.load(blurred)["blurred"]


@pytest.mark.parametrize("dtype, tol_x, tol_k", [(np.float32, 1e-5, 1e-6), (np.float64, 1e-12, 1e-13)])
def test_fast_forward_published_model(published, backend, dtype, tol_x, tol_k):
    model, y = published
    _check_fast_forward(model, y.astype(dtype), backend, tol_x, tol_k)


def test_fused_kernels_dispatch():
    assert unrolled._fused_kernels(get_backend("numpy")) is None
    assert unrolled._fused_kernels(get_backend("numba")) is not None
