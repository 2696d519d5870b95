"""The compiled elementwise kernels (Numba, Cython/OpenMP) equal the NumPy reference.

The reference itself is checked against finite differences (its VJPs) and
small closed-form cases.  The Cython variant is skipped when the extension
is not built (e.g. when running from a source tree via PYTHONPATH).
Numba compiles each kernel once per dtype on first use (cached afterwards).
"""

import numpy as np
import pytest

from hqsdeblur import _kernels_ref as ref

try:
    from hqsdeblur.errors import InputError
except ImportError:  # errors module not written yet: the reference's fallback
    InputError = ref.InputError


def _load_numba():
    try:
        from hqsdeblur import _numba_kernels
    except ImportError as exc:  # pragma: no cover - numba is a hard dependency
        pytest.skip(f"numba kernels unavailable: {exc}")
    return _numba_kernels


def _load_cython():
    try:
        from hqsdeblur._ext import _elementwise
    except ImportError as exc:
        pytest.skip(
            "Cython extension hqsdeblur._ext._elementwise is not built "
            f"({exc}); build it with `pip install --no-build-isolation -e .`"
        )
    return _elementwise


@pytest.fixture(params=["numba", "cython"])
def impl(request):
    return _load_numba() if request.param == "numba" else _load_cython()


DTYPES = {  # complex dtype -> (real dtype, relative tolerance)
    np.complex128: (np.float64, 1e-12),
    np.complex64: (np.float32, 1e-5),
}


def _crandn(rng, shape, dtype):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


def _problem(cdt, H=8, W=10, C=3, seed=0):
    """Random inputs for every kernel on an (H, W // 2 + 1) half spectrum."""
    rng = np.random.default_rng(seed)
    rdt = DTYPES[cdt][0]
    F2 = W // 2 + 1
    p = dict(
        H=H, W=W,
        Y=_crandn(rng, (C, H, F2), cdt),
        Z=_crandn(rng, (C, H, F2), cdt),
        K=_crandn(rng, (H, F2), cdt),
        P=_crandn(rng, (H, F2), cdt),
        Gbar=_crandn(rng, (C, H, F2), cdt),
        Ktbar=_crandn(rng, (H, F2), cdt),
        Y0=_crandn(rng, (H, F2), cdt),
        zeta=rng.uniform(0.5, 2.0, C).astype(rdt),
        rho=0.7,
        x=rng.standard_normal((C, H, W)).astype(rdt),
        b=rng.uniform(0.0, 1.0, C).astype(rdt),
        gbar=rng.standard_normal((C, H, W)).astype(rdt),
    )
    p["b"][0] = 0.0  # zero threshold is allowed
    p["G"] = ref.feature_update(p["Y"], p["Z"], p["K"], p["zeta"])
    p["Kt"] = ref.kernel_ls(p["Z"], p["Y"], p["P"], p["rho"])
    return p


def _calls(p):
    """name -> callable(module) covering every kernel and the P=None case."""
    fs = (p["H"], p["W"])
    return {
        "soft_shrink": lambda m: m.soft_shrink(p["x"], p["b"]),
        "soft_shrink_vjp": lambda m: m.soft_shrink_vjp(p["x"], p["b"], p["gbar"]),
        "feature_update": lambda m: m.feature_update(p["Y"], p["Z"], p["K"], p["zeta"]),
        "feature_update_vjp": lambda m: m.feature_update_vjp(
            p["Y"], p["Z"], p["K"], p["zeta"], p["G"], p["Gbar"], fs),
        "kernel_ls": lambda m: m.kernel_ls(p["Z"], p["Y"], p["P"], p["rho"]),
        "kernel_ls_noP": lambda m: m.kernel_ls(p["Z"], p["Y"], None, p["rho"]),
        "kernel_ls_vjp": lambda m: m.kernel_ls_vjp(
            p["Z"], p["Y"], p["P"], p["rho"], p["Kt"], p["Ktbar"], fs),
        "kernel_ls_vjp_noP": lambda m: m.kernel_ls_vjp(
            p["Z"], p["Y"], None, p["rho"], p["Kt"], p["Ktbar"], fs),
        "reconstruct_gray": lambda m: m.reconstruct_gray(
            p["Y0"], p["K"], p["Y"], p["Z"], p["zeta"]),
    }


def _as_list(out):
    return list(out) if isinstance(out, tuple) else [out]


def _assert_close(got, want, rtol):
    """Normwise relative agreement, same dtype and shape."""
    for g, w in zip(_as_list(got), _as_list(want), strict=True):
        if isinstance(w, float):
            assert isinstance(g, float)
            assert abs(g - w) <= rtol * max(abs(w), 1e-30)
            continue
        assert g.dtype == w.dtype and g.shape == w.shape
        scale = max(np.max(np.abs(w)), 1e-30) if w.size else 1.0
        err = np.max(np.abs(g - w)) if w.size else 0.0
        assert err <= rtol * scale, f"normwise error {err / scale:.2e} > {rtol:.0e}"


# ---------------------------------------------------------------------------
# compiled == reference
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("cdt", list(DTYPES))
@pytest.mark.parametrize("W", [10, 9])  # even and odd widths (Nyquist column)
def test_matches_reference(impl, cdt, W):
    p = _problem(cdt, W=W)
    rtol = DTYPES[cdt][1]
    for name, call in _calls(p).items():
        want = call(ref)
        got = call(impl)
        try:
            _assert_close(got, want, rtol)
        except AssertionError as exc:
            raise AssertionError(f"{impl.__name__}.{name}: {exc}") from None


def test_non_contiguous_inputs(impl):
    p = _problem(np.complex128)
    rtol = DTYPES[np.complex128][1]
    big = _problem(np.complex128, H=16, W=18, C=6, seed=1)
    # strided views with the same shapes as the contiguous problem
    Yv, Zv = big["Y"][::2, ::2, :6], big["Z"][::2, ::2, :6]
    Kv = np.asfortranarray(big["K"][::2, :6])
    zeta = np.repeat(p["zeta"], 2)[::2]
    xv = np.ascontiguousarray(big["x"][::2, ::2, :10].transpose(0, 2, 1)).transpose(0, 2, 1)
    assert not (Yv.flags.c_contiguous or Kv.flags.c_contiguous or xv.flags.c_contiguous)
    _assert_close(impl.feature_update(Yv, Zv, Kv, zeta),
                  ref.feature_update(Yv.copy(), Zv.copy(), Kv.copy(), zeta.copy()), rtol)
    _assert_close(impl.kernel_ls(Zv, Yv, Kv.T.T, 0.3), ref.kernel_ls(Zv, Yv, Kv, 0.3), rtol)
    _assert_close(impl.reconstruct_gray(Kv, Kv, Yv, Zv, zeta),
                  ref.reconstruct_gray(Kv, Kv, Yv, Zv, zeta), rtol)
    _assert_close(impl.soft_shrink(xv, p["b"]), ref.soft_shrink(xv, p["b"]), rtol)
    _assert_close(impl.soft_shrink_vjp(xv, p["b"], xv), ref.soft_shrink_vjp(xv, p["b"], xv), rtol)


def test_dtype_promotion(impl):
    """float64 parameters with complex64 spectra stay single precision."""
    p = _problem(np.complex64)
    G = impl.feature_update(p["Y"], p["Z"], p["K"], p["zeta"].astype(np.float64))
    assert G.dtype == np.complex64
    X = impl.soft_shrink(p["x"].astype(np.float32), p["b"].astype(np.float64))
    assert X.dtype == np.float32
    # integer/real inputs are promoted to complex128
    Kt = impl.kernel_ls(np.ones((2, 3, 4)), np.ones((2, 3, 4)), None, 1)
    np.testing.assert_allclose(Kt, np.full((3, 4), 2 / 3))


def test_soft_shrink_out_and_inplace(impl):
    p = _problem(np.complex128)
    want = ref.soft_shrink(p["x"], p["b"])
    out = np.empty_like(p["x"])
    assert impl.soft_shrink(p["x"], p["b"], out=out) is out
    np.testing.assert_array_equal(out, want)
    x = p["x"].copy()
    impl.soft_shrink(x, p["b"], out=x)
    np.testing.assert_array_equal(x, want)
    with pytest.raises(ValueError):
        impl.soft_shrink(p["x"], p["b"], out=np.empty(p["x"].shape, np.float32))


def test_p_none_equals_zero(impl):
    p = _problem(np.complex64)
    zero = np.zeros_like(p["P"])
    np.testing.assert_array_equal(impl.kernel_ls(p["Z"], p["Y"], None, 2.0),
                                  impl.kernel_ls(p["Z"], p["Y"], zero, 2.0))


@pytest.mark.parametrize("module", ["ref", "impl"])
def test_shape_errors(impl, module):
    m = ref if module == "ref" else impl
    p = _problem(np.complex128)
    with pytest.raises(InputError):
        m.feature_update(p["Y"], p["Z"], p["K"][:, :-1], p["zeta"])
    with pytest.raises(InputError):
        m.soft_shrink(p["x"], p["b"][:-1])
    with pytest.raises(InputError):
        m.kernel_ls(p["Z"], p["Y"][:-1], None, 1.0)
    with pytest.raises(InputError):  # full grid inconsistent with half spectrum
        m.feature_update_vjp(p["Y"], p["Z"], p["K"], p["zeta"], p["G"], p["Gbar"], (8, 12))
    with pytest.raises(ValueError):
        m.soft_shrink(p["x"][0], p["b"])


def test_empty_channels(impl):
    cdt = np.complex128
    Y = np.zeros((0, 4, 3), cdt)
    K = np.ones((4, 3), cdt)
    assert impl.feature_update(Y, Y, K, np.zeros(0)).shape == (0, 4, 3)
    np.testing.assert_array_equal(impl.kernel_ls(Y, Y, None, 1.0), np.zeros((4, 3)))


# ---------------------------------------------------------------------------
# the reference itself
# ---------------------------------------------------------------------------

def test_reference_small_cases():
    out = ref.soft_shrink(np.array([[[-2.0, 0.5, 3.0, 0.0]]]), np.array([1.0]))
    np.testing.assert_array_equal(out, [[[-1.0, 0.0, 2.0, 0.0]]])
    np.testing.assert_array_equal(ref.half_spectrum_weights(6), [1, 2, 2, 1])
    np.testing.assert_array_equal(ref.half_spectrum_weights(7), [1, 2, 2, 2])
    # with zeta -> inf the feature update tends to the deconvolution Y / K
    Y, K = np.array([[[2 + 1j]]]), np.array([[1 - 1j]])
    G = ref.feature_update(Y, np.zeros_like(Y), K, np.array([1e12]))
    np.testing.assert_allclose(G, Y / K, rtol=1e-9)


def _re_inner(a, b):
    return float(np.sum(np.real(np.conj(a) * b)))


@pytest.mark.parametrize("W", [10, 9])
def test_reference_vjps_finite_differences(W):
    """Directional derivatives of the forward maps match the reference VJPs."""
    p = _problem(np.complex128, W=W, seed=3)
    H, rng, eps = p["H"], np.random.default_rng(7), 1e-6
    fs = (H, W)
    m = ref.half_spectrum_weights(W)

    def parseval(a, b):  # full-spectrum inner product seen through the half spectrum
        return float(np.sum(m * np.real(np.conj(a) * b))) / (H * W)

    def fd(f, args, i, d):
        ap = list(args)
        am = list(args)
        ap[i] = args[i] + eps * d
        am[i] = args[i] - eps * d
        return (f(*ap) - f(*am)) / (2 * eps)

    # feature update
    args = [p["Y"], p["Z"], p["K"], p["zeta"]]
    Yb, Zb, Kb, zb = ref.feature_update_vjp(*args, p["G"], p["Gbar"], fs)
    for i, bar in enumerate([Yb, Zb, Kb]):
        d = _crandn(rng, args[i].shape, np.complex128)
        dG = fd(ref.feature_update, args, i, d)
        assert np.isclose(_re_inner(p["Gbar"], dG), _re_inner(bar, d), rtol=1e-6)
    for c in range(len(zb)):
        d = np.zeros_like(p["zeta"])
        d[c] = 1
        dG = fd(ref.feature_update, args, 3, d)
        assert np.isclose(parseval(p["Gbar"], dG), zb[c], rtol=1e-6)

    # kernel least squares
    args = [p["Z"], p["Y"], p["P"], p["rho"]]
    Zb, Yb, Pb, rb = ref.kernel_ls_vjp(*args, p["Kt"], p["Ktbar"], fs)
    for i, bar in enumerate([Zb, Yb, Pb]):
        d = _crandn(rng, args[i].shape, np.complex128)
        dK = fd(ref.kernel_ls, args, i, d)
        assert np.isclose(_re_inner(p["Ktbar"], dK), _re_inner(bar, d), rtol=1e-6)
    dK = fd(ref.kernel_ls, args, 3, 1.0)
    assert np.isclose(parseval(p["Ktbar"], dK), rb, rtol=1e-6)

    # soft shrinkage (away from the kinks)
    x = p["x"].copy()
    b = np.full(x.shape[0], 0.3)
    x[np.abs(np.abs(x) - 0.3) < 1e-3] = 1.0
    xb, bb = ref.soft_shrink_vjp(x, b, p["gbar"])
    d = rng.standard_normal(x.shape)
    dS = fd(ref.soft_shrink, [x, b], 0, d)
    assert np.isclose(np.sum(p["gbar"] * dS), np.sum(xb * d), rtol=1e-6)
    for c in range(len(b)):
        e = np.zeros_like(b)
        e[c] = 1
        dS = fd(ref.soft_shrink, [x, b], 1, e)
        assert np.isclose(np.sum(p["gbar"] * dS), bb[c], rtol=1e-6)


# --------------------------------------------------------------------------
# Threads: kernels called inside the FFT channel threads run serially there,
# and BLAS runs on one thread inside the library's entry points.


def test_channel_threads_run_kernels_serially():
    mod = _load_cython()
    import threading

    from hqsdeblur.backend import _serial_kernels_here
    from hqsdeblur.steps import fourier

    main_team = mod.thread_team()
    fresh = []
    t = threading.Thread(target=lambda: fresh.append(mod.thread_team()))
    t.start()
    t.join()
    if fresh[0] < 2:
        pytest.skip("OpenMP teams are 1 thread here already (OMP_NUM_THREADS=1 or one core)")
    seen = []

    def worker():
        _serial_kernels_here()
        seen.append(mod.thread_team())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [1]
    assert mod.thread_team() == main_team  # a per-thread setting

    # the channel loop sets it in every thread it uses
    teams = []
    fourier._over_slices(4, 2, lambda i, w: teams.append((threading.get_ident(), mod.thread_team(), w)))
    assert len(teams) == 4 and all(tm == 1 and w == 1 for _, tm, w in teams)
    assert mod.thread_team() == main_team


def test_blas_single_thread_inside_entry_points():
    pytest.importorskip("threadpoolctl")
    import threading

    from hqsdeblur.backend import _blas_controller, blas_single_thread

    def blas_threads():  # what the libraries report now
        return [lib.get_num_threads() for lib in _blas_controller().lib_controllers if lib.user_api == "blas"]

    before = blas_threads()
    if not before or max(before) < 2:
        pytest.skip("BLAS already runs on one thread here (nothing to limit)")

    @blas_single_thread
    def inner(x):
        return blas_threads(), x

    inside, x = inner(3)
    assert x == 3 and all(n == 1 for n in inside)
    assert blas_threads() == before
    assert inner.__name__ == "inner"

    # The setting is process-wide: the first call in (main thread) sets it,
    # the last one out (a worker thread here) restores it, and later calls
    # from other threads still take effect (threadpoolctl lets only the
    # thread that set OpenBLAS's limit change it, unless released).
    entered, release = threading.Event(), threading.Event()

    @blas_single_thread
    def worker():
        entered.set()
        release.wait(5)

    @blas_single_thread
    def main_then_leave():
        t = threading.Thread(target=worker)
        t.start()
        entered.wait(5)
        return t

    t = main_then_leave()
    assert all(n == 1 for n in blas_threads())  # the worker is still inside
    release.set()
    t.join()
    assert blas_threads() == before
    seen = []
    w = threading.Thread(target=lambda: seen.append(inner(0)[0]))
    w.start()
    w.join()
    assert all(n == 1 for n in seen[0]) and blas_threads() == before

    @blas_single_thread
    def fails():
        raise ValueError

    with pytest.raises(ValueError):
        fails()
    assert blas_threads() == before


def test_over_slices_inside_a_pool_thread_runs_serially():
    """A stack step called from inside a channel thread must not wait on the
    pool it runs in (it would deadlock once every pool thread waits)."""
    import threading

    from hqsdeblur.steps import fourier

    out = []

    def outer(i, w):
        inner = []
        fourier._over_slices(3, 2, lambda j, w2: inner.append((threading.current_thread().name, w2)))
        out.append((threading.current_thread().name, inner))

    fourier._over_slices(2, 2, outer)
    assert len(out) == 2
    for name, inner in out:
        assert name.startswith("hqsdeblur-fft") and len(inner) == 3
        assert all(n == name and w == 1 for n, w in inner)


def test_fast_len_is_the_smallest_7_smooth_size():
    from hqsdeblur.steps.fourier import fast_len

    def smooth(n):
        for p in (2, 3, 5, 7):
            while n % p == 0:
                n //= p
        return n == 1

    for n in range(1, 1200):
        m = fast_len(n)
        assert m >= n and smooth(m) and not any(smooth(j) for j in range(n, m))
    assert fast_len(334) == 336
