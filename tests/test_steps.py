"""Adjoint (dot-product) tests of every linear step and finite-difference
checks of every VJP, in float64, on every available backend."""

import numpy as np
import pytest

from hqsdeblur.backend import to_numpy, use_backend
from hqsdeblur.steps import features, filters, fourier, kernel, reconstruct, shrink

from conftest import dot_test, fd_check

S = (12, 10)  # an even/even FFT grid
S_ODD = (11, 9)


@pytest.fixture
def be(backend):
    with use_backend(backend.name):
        yield backend


def rng_arr(xp, shape, seed):
    return xp.asarray(np.random.default_rng(seed).standard_normal(shape))


# ---------------------------------------------------------------- linear maps


@pytest.mark.parametrize("grid", [S, S_ODD])
def test_embed_pad_roll_adjoints(be, grid):
    xp = be.xp
    dot_test(lambda a: fourier.embed(a, grid, (2, 3)), lambda b: fourier.embed_adjoint(b, (4, 5), (2, 3)), (3, 4, 5), (3,) + grid, xp=xp)
    dot_test(lambda a: fourier.pad_post(a, grid), lambda b: fourier.pad_post_adjoint(b, (4, 5)), (4, 5), grid, xp=xp)
    dot_test(lambda a: fourier.roll(a, (3, -2)), lambda b: fourier.roll_adjoint(b, (3, -2)), grid, grid, xp=xp)


@pytest.mark.parametrize("grid", [S, S_ODD])
def test_psf2otf_adjoint(be, grid):
    xp = be.xp
    # k -> circular convolution kernel on the grid (spatial), through the spectrum
    A = lambda k: be.irfft2(fourier.psf2otf(k, grid), s=grid)
    AT = lambda y: fourier.psf2otf_adjoint(be.rfft2(y), (5, 5), grid)
    dot_test(A, AT, (5, 5), grid, xp=xp)
    k = rng_arr(xp, (5, 5), 1)
    assert np.allclose(to_numpy(fourier.otf2psf(fourier.psf2otf(k, grid), (5, 5), grid)), to_numpy(k))


@pytest.mark.parametrize("grid", [S, S_ODD])
def test_rfft2_adjoint(be, grid):
    xp = be.xp
    rng = np.random.default_rng(3)
    x = xp.asarray(rng.standard_normal(grid))
    G = be.rfft2(xp.asarray(rng.standard_normal(grid))) + 1j * be.rfft2(xp.asarray(rng.standard_normal(grid)))
    lhs = float((be.rfft2(x).conj() * G).real.sum())
    rhs = float((x * fourier.rfft2_adjoint(G, grid)).sum())
    assert abs(lhs - rhs) < 1e-10 * abs(lhs)


def test_spectral_inner_is_spatial_inner(be):
    xp = be.xp
    for grid in (S, S_ODD):
        a, b = rng_arr(xp, grid, 1), rng_arr(xp, grid, 2)
        assert abs(float(fourier.spectral_inner(be.rfft2(a), be.rfft2(b), grid)) - float((a * b).sum())) < 1e-10


def test_fourier_multiplier_adjoint(be):
    xp = be.xp
    M = be.rfft2(rng_arr(xp, S, 5))
    A = lambda x: be.irfft2(M * be.rfft2(x), s=S)
    AT = lambda y: be.irfft2(M.conj() * be.rfft2(y), s=S)
    dot_test(A, AT, S, S, xp=xp)


@pytest.mark.parametrize("p", [(1, 1), (2, 1), (0, 2)])
def test_pad_reflect_adjoint(be, p):
    dot_test(lambda x: filters.pad_reflect(x, p), lambda y: filters.pad_reflect_adjoint(y, p), (2, 7, 6), (2, 7 + 2 * p[0], 6 + 2 * p[1]), xp=be.xp)


def test_correlate_bank_adjoints(be):
    xp = be.xp
    w = rng_arr(xp, (4, 3, 3, 3), 1)
    x = rng_arr(xp, (3, 9, 8), 2)
    dot_test(lambda a: filters.correlate_bank(a, w), lambda y: filters.correlate_bank_vjp(x, w, y)[0], (3, 9, 8), (4, 9, 8), xp=xp)
    dot_test(lambda v: filters.correlate_bank(x, v), lambda y: filters.correlate_bank_vjp(x, w, y)[1], (4, 3, 3, 3), (4, 9, 8), xp=xp)


def test_correlate_bank_matches_reflect_definition(be):
    xp = be.xp
    w = rng_arr(xp, (2, 1, 3, 3), 1)
    x = rng_arr(xp, (1, 6, 7), 2)
    out = to_numpy(filters.correlate_bank(x, w))
    xp_ = np.pad(to_numpy(x), ((0, 0), (1, 1), (1, 1)), mode="reflect")
    wn = to_numpy(w)
    ref = np.zeros((2, 6, 7))
    for o in range(2):
        for i in range(6):
            for j in range(7):
                ref[o, i, j] = (wn[o, 0] * xp_[0, i : i + 3, j : j + 3]).sum()
    assert np.allclose(out, ref, atol=1e-12)


def test_cascade_vjp_and_composition(be):
    xp = be.xp
    ws = [rng_arr(xp, (3, 1, 3, 3), 1), rng_arr(xp, (3, 3, 3, 3), 2), rng_arr(xp, (3, 3, 3, 3), 3)]
    x = rng_arr(xp, (1, 16, 15), 4)
    outs = filters.cascade(x, ws)
    bars = [rng_arr(xp, o.shape, 10 + i) for i, o in enumerate(outs)]

    def loss(v):
        o = filters.cascade(xp.asarray(v), ws)
        return float(sum((a * b).sum() for a, b in zip(o, bars)))

    xbar, wbars = filters.cascade_vjp(x, ws, outs, bars)
    fd_check(loss, to_numpy(x), to_numpy(xbar))
    for l in range(3):
        def lw(v, l=l):
            w2 = list(ws)
            w2[l] = xp.asarray(v)
            o = filters.cascade(x, w2)
            return float(sum((a * b).sum() for a, b in zip(o, bars)))

        fd_check(lw, to_numpy(ws[l]), to_numpy(wbars[l]))
    # Composition: equal to the cascade away from the reflect-padded border.
    eff = filters.compose_cascade(ws)[-1]
    assert eff.shape == (3, 1, 7, 7)
    direct = to_numpy(filters.correlate_bank(x, eff))
    assert np.allclose(direct[:, 3:-3, 3:-3], to_numpy(outs[-1])[:, 3:-3, 3:-3], atol=1e-10)


# -------------------------------------------------------------- nonlinear steps


def _spec(be, a):
    return be.rfft2(a)


@pytest.mark.parametrize("grid", [S, S_ODD])
def test_feature_update_vjp(be, grid):
    xp = be.xp
    C = 3
    y, z, k = rng_arr(xp, (C,) + grid, 1), rng_arr(xp, (C,) + grid, 2), rng_arr(xp, grid, 3)
    zeta = xp.asarray([0.5, 2.0, 7.0])
    gbar = rng_arr(xp, (C,) + grid, 4)

    def run(y, z, k, zeta):
        return be.irfft2(features.feature_update(be.rfft2(y), be.rfft2(z), be.rfft2(k), zeta), s=grid)

    G = features.feature_update(be.rfft2(y), be.rfft2(z), be.rfft2(k), zeta)
    Yb, Zb, Kb, zb = features.feature_update_vjp(be.rfft2(y), be.rfft2(z), be.rfft2(k), zeta, G, be.rfft2(gbar), grid)
    L = lambda *a: float((run(*[xp.asarray(v) for v in a]) * gbar).sum())
    fd_check(lambda v: L(v, z, k, zeta), to_numpy(y), to_numpy(be.irfft2(Yb, s=grid)))
    fd_check(lambda v: L(y, v, k, zeta), to_numpy(z), to_numpy(be.irfft2(Zb, s=grid)))
    fd_check(lambda v: L(y, z, v, zeta), to_numpy(k), to_numpy(be.irfft2(Kb, s=grid)))
    fd_check(lambda v: L(y, z, k, v), to_numpy(zeta), to_numpy(zb))


def test_soft_shrink_vjp(be):
    xp = be.xp
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (3, 6, 5))
    b = np.array([0.3, 0.05, 1.1])  # > 0: thresholds live on b >= 0
    # stay away from the kinks |x| = b
    x = np.where(np.abs(np.abs(x) - b[:, None, None]) < 0.05, x + 0.1, x)
    gbar = rng.standard_normal(x.shape)
    X, B, Gb = xp.asarray(x), xp.asarray(b), xp.asarray(gbar)
    xb, bb = shrink.soft_shrink_vjp(X, B, Gb)
    L = lambda xx, bv: float((shrink.soft_shrink(xp.asarray(xx), xp.asarray(bv)) * Gb).sum())
    fd_check(lambda v: L(v, b), x, to_numpy(xb))
    fd_check(lambda v: L(x, v), b, to_numpy(bb))
    assert np.allclose(to_numpy(shrink.soft_shrink(X, B)), np.sign(x) * np.maximum(np.abs(x) - b[:, None, None], 0))


def test_hard_shrink(be):
    xp = be.xp
    x = xp.asarray(np.array([[[-2.0, 0.5, 1.5]]]))
    out = to_numpy(shrink.hard_shrink(x, xp.asarray([1.0])))
    assert np.array_equal(out, [[[-2.0, 0.0, 1.5]]])


@pytest.mark.parametrize("with_prior", [True, False])
@pytest.mark.parametrize("grid", [S, S_ODD])
def test_kernel_ls_vjp(be, grid, with_prior):
    xp = be.xp
    C = 2
    z, y, p = rng_arr(xp, (C,) + grid, 1), rng_arr(xp, (C,) + grid, 2), rng_arr(xp, grid, 3)
    rho = 0.7
    kbar = rng_arr(xp, grid, 4)

    def run(z, y, p, rho):
        P = be.rfft2(p) if with_prior else None
        return be.irfft2(kernel.kernel_ls(be.rfft2(z), be.rfft2(y), P, rho), s=grid)

    P = be.rfft2(p) if with_prior else None
    Kt = kernel.kernel_ls(be.rfft2(z), be.rfft2(y), P, rho)
    Zb, Yb, Pb, rb = kernel.kernel_ls_vjp(be.rfft2(z), be.rfft2(y), P, rho, Kt, be.rfft2(kbar), grid)
    L = lambda *a: float((run(*a) * kbar).sum())
    fd_check(lambda v: L(xp.asarray(v), y, p, rho), to_numpy(z), to_numpy(be.irfft2(Zb, s=grid)))
    fd_check(lambda v: L(z, xp.asarray(v), p, rho), to_numpy(y), to_numpy(be.irfft2(Yb, s=grid)))
    if with_prior:
        fd_check(lambda v: L(z, y, xp.asarray(v), rho), to_numpy(p), to_numpy(be.irfft2(Pb, s=grid)))
    fd_check(lambda v: L(z, y, p, float(v)), np.float64(rho), float(rb))


def test_project_simplex_and_vjp(be):
    xp = be.xp
    rng = np.random.default_rng(2)
    v = rng.standard_normal((5, 5)) * 0.3 + 0.05
    k = to_numpy(kernel.project_simplex(xp.asarray(v)))
    assert abs(k.sum() - 1) < 1e-12 and k.min() >= 0
    # optimality: it is the closest point (compare with random feasible points)
    for _ in range(20):
        q = rng.dirichlet(np.ones(25)).reshape(5, 5)
        assert ((k - v) ** 2).sum() <= ((q - v) ** 2).sum() + 1e-12
    kbar = rng.standard_normal((5, 5))
    g = kernel.project_simplex_vjp(xp.asarray(k), xp.asarray(kbar))
    fd_check(lambda u: float((to_numpy(kernel.project_simplex(xp.asarray(u))) * kbar).sum()), v, to_numpy(g))
    # with a support mask
    mask = np.zeros((5, 5), bool)
    mask[1:4, 1:4] = True
    km = to_numpy(kernel.project_simplex(xp.asarray(v), mask=xp.asarray(mask)))
    assert km[~mask].max() == 0 and abs(km.sum() - 1) < 1e-12


def test_soft_threshold_normalize_vjp(be):
    xp = be.xp
    rng = np.random.default_rng(5)
    grid = (16, 14)
    kt = rng.uniform(0, 0.05, grid)
    kt[2, 3] = 0.2
    win = (7, 7)
    bias = 0.1  # keep many entries active so the map is not flat
    k, m = kernel.soft_threshold_normalize(xp.asarray(kt), bias, win)
    k = to_numpy(k)
    assert abs(k.sum() - 1) < 1e-7 and k.min() >= 0
    kbar = rng.standard_normal(win)
    ktb, bb = kernel.soft_threshold_normalize_vjp(xp.asarray(kt), bias, win, xp.asarray(k), m, xp.asarray(kbar))
    L = lambda a, b: float((to_numpy(kernel.soft_threshold_normalize(xp.asarray(a), b, win)[0]) * kbar).sum())
    fd_check(lambda v: L(v, bias), kt, to_numpy(ktb), h=1e-7)
    fd_check(lambda v: L(kt, float(v)), np.float64(bias), float(bb), h=1e-7)


def test_center_of_mass_shift(be):
    xp = be.xp
    k = np.zeros((9, 9))
    k[1, 6] = 1
    sh = kernel.center_of_mass_shift(xp.asarray(k))
    assert sh == (3, -2)
    out = to_numpy(kernel.shift_kernel(xp.asarray(k), sh))
    assert out[4, 4] == 1


@pytest.mark.parametrize("grid", [S, S_ODD])
def test_reconstruct_gray_vjp(be, grid):
    xp = be.xp
    C = 3
    y0, k = rng_arr(xp, grid, 1), rng_arr(xp, grid, 2)
    w, g = rng_arr(xp, (C,) + grid, 3), rng_arr(xp, (C,) + grid, 4)
    eta = xp.asarray([0.4, 1.5, 0.9])
    xbar = rng_arr(xp, grid, 5)

    def run(y0, k, w, g, eta):
        return be.irfft2(reconstruct.reconstruct(be.rfft2(y0), be.rfft2(k), be.rfft2(w), be.rfft2(g), eta), s=grid)

    spec = [be.rfft2(a) for a in (y0, k, w, g)]
    X = reconstruct.reconstruct(*spec, eta)
    bars = reconstruct.reconstruct_vjp(*spec, eta, X, be.rfft2(xbar), grid)
    args = [y0, k, w, g, eta]
    for i in range(5):
        def L(v, i=i):
            a = list(args)
            a[i] = xp.asarray(v)
            return float((run(*a) * xbar).sum())

        grad = bars[i] if i == 4 else be.irfft2(bars[i], s=grid)
        fd_check(L, to_numpy(args[i]), to_numpy(grad))


def test_reconstruct_colour_vjp_and_gray_consistency(be):
    xp = be.xp
    grid = S
    C, n = 3, 3
    y0, k = rng_arr(xp, (n,) + grid, 1), rng_arr(xp, grid, 2)
    w, g = rng_arr(xp, (C, n) + grid, 3), rng_arr(xp, (C,) + grid, 4)
    eta = xp.asarray([0.4, 1.5, 0.9])
    xbar = rng_arr(xp, (n,) + grid, 5)

    def run(y0, k, w, g, eta):
        return be.irfft2(reconstruct.reconstruct(be.rfft2(y0), be.rfft2(k), be.rfft2(w), be.rfft2(g), eta), s=grid)

    spec = [be.rfft2(a) for a in (y0, k, w, g)]
    X = reconstruct.reconstruct(*spec, eta)
    bars = reconstruct.reconstruct_vjp(*spec, eta, X, be.rfft2(xbar), grid)
    args = [y0, k, w, g, eta]
    for i in range(5):
        def L(v, i=i):
            a = list(args)
            a[i] = xp.asarray(v)
            return float((run(*a) * xbar).sum())

        grad = bars[i] if i == 4 else be.irfft2(bars[i], s=grid)
        fd_check(L, to_numpy(args[i]), to_numpy(grad))
    # one colour channel through the matrix path equals the gray formula
    Xg = reconstruct.reconstruct(spec[0][:1], spec[1], spec[2][:, :1], spec[3], eta)
    Xs = reconstruct.reconstruct(spec[0][0], spec[1], spec[2][:, 0], spec[3], eta)
    assert np.allclose(to_numpy(Xg[0]), to_numpy(Xs), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("grid,off", [((20, 17), (4, 5)), ((9, 8), (0, 0)), ((30, 12), (8, 2))])
def test_periodic_extend_adjoint_and_content(be, grid, off):
    from hqsdeblur.steps import border

    xp = be.xp
    dot_test(lambda a: border.periodic_extend(a, grid, off), lambda b: border.periodic_extend_adjoint(b, (2, 9, 8), grid, off), (2, 9, 8), (2,) + grid, xp=xp)
    y = rng_arr(xp, (9, 8), 1)
    e = to_numpy(border.periodic_extend(y, grid, off))
    r = np.roll(e, (-off[0], -off[1]), axis=(0, 1))
    assert np.array_equal(r[:9, :8], to_numpy(y))


def test_shrink_any_trailing_shape_on_every_backend(be):
    xp = be.xp
    x = rng_arr(xp, (2, 3, 5, 4), 1)
    b = xp.asarray([0.2, 0.5])
    ref = np.sign(to_numpy(x)) * np.maximum(np.abs(to_numpy(x)) - np.array([0.2, 0.5])[:, None, None, None], 0)
    assert np.allclose(to_numpy(shrink.soft_shrink(x, b)), ref)
    xb, bb = shrink.soft_shrink_vjp(x, b, x)
    assert xb.shape == x.shape and bb.shape == (2,)


def test_clean_normalize_and_vjp(be):
    """The classical cleaning rule: cut below 5 % of the maximum, drop small
    components, normalise, re-centre; its VJP against central differences."""
    xp = be.xp
    rng = np.random.default_rng(11)
    grid, win = (20, 18), (9, 9)
    kt = rng.uniform(-0.01, 0.002, grid)  # noise: negative or below the cut
    kt[1:4, 2:6] = rng.uniform(0.2, 1.0, (3, 4))  # the kernel, off-centre
    kt[7, 7] = 0.03  # an isolated speck above the cut: < 2 % of the mass
    k, info = kernel.clean_normalize(xp.asarray(kt), win)
    k = to_numpy(k)
    assert abs(k.sum() - 1) < 1e-12 and k.min() >= 0
    assert np.count_nonzero(k) == 12  # the 3 x 4 block only
    cy, cx = (np.indices(win) * k).sum(axis=(1, 2))
    assert abs(cy - 4) <= 0.5 and abs(cx - 4) <= 0.5  # centred
    kbar = rng.standard_normal(win)
    ktb = to_numpy(kernel.clean_normalize_vjp(xp.asarray(kt), win, info, xp.asarray(kbar)))
    assert np.count_nonzero(ktb) == 12
    L = lambda a: float((to_numpy(kernel.clean_normalize(xp.asarray(a), win)[0]) * kbar).sum())
    fd_check(L, kt, ktb, h=1e-7)
    # nothing positive: the delta, and no gradient
    k0, info0 = kernel.clean_normalize(xp.asarray(-np.abs(kt)), win)
    assert to_numpy(k0)[4, 4] == 1 and to_numpy(k0).sum() == 1
    assert not to_numpy(kernel.clean_normalize_vjp(xp.asarray(kt), win, info0, xp.asarray(kbar))).any()
