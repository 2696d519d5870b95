"""Numba (parallel, JIT) elementwise HQS kernels.

Same functions and signatures as :mod:`hqsdeblur._kernels_ref`, which is
the readable definition.  The public functions coerce the inputs (dtype,
C-contiguity, shapes) exactly like the reference and then call a jitted
loop over the flattened frequency/pixel index (``prange``), with the
channels looped inside.  Numba compiles one specialisation per dtype, so
``complex64``/``float32`` and ``complex128``/``float64`` inputs both stay
in their own precision.  Reductions over pixels use fixed tiles, so
results do not depend on the number of threads.

The ``fused_*`` kernels of the unrolled network's fast path (references in
:mod:`hqsdeblur._fused_ref`) work on real views of the complex arrays
(interleaved re/im), so they vectorise like the Cython versions; each has a
parallel (tiles of the frequency index) and a serial variant, and all
release the GIL so that the fast path can run channel groups on threads.

Example
-------
>>> import numpy as np
>>> from hqsdeblur import _numba_kernels as nk
>>> nk.soft_shrink(np.array([[[-2.0, 0.5, 3.0]]]), np.array([1.0]))
array([[[-1.,  0.,  2.]]])
"""

import numpy as np
from numba import njit, prange

from hqsdeblur import _fused_ref as _fr
from hqsdeblur._kernels_ref import (
    _as,
    _check_full_shape,
    _check_out,
    _check_same,
    _prep_feature,
    _prep_kernel,
    _prep_recon,
    _prep_shrink,
    half_spectrum_weights,
)

__all__ = [
    "soft_shrink",
    "soft_shrink_vjp",
    "feature_update",
    "feature_update_vjp",
    "kernel_ls",
    "kernel_ls_vjp",
    "reconstruct_gray",
    "fused_feature_update",
    "fused_soft_shrink",
    "fused_kernel_ls_sums",
]

# Pixels per parallel work item of the purely elementwise loops.
_TILE = 2048

_jit = njit(parallel=True, fastmath=False, cache=True, nogil=True)

# error_model="numpy": a float division by zero gives inf (as in NumPy)
# instead of a ZeroDivisionError check per element that stops vectorisation
_jit_span = njit(fastmath=False, cache=True, nogil=True, error_model="numpy")


def _flat(a):
    """(C, ...) -> (C, N) view of a C-contiguous array (valid for C == 0)."""
    return a.reshape(a.shape[0], int(np.prod(a.shape[1:])))


def _rv(a):
    """(C, ...) complex -> (C, 2 N) real view (interleaved re/im) of a
    C-contiguous array (valid for C == 0)."""
    f = _flat(a)
    return f.view(f.real.dtype) if f.dtype.kind == "c" else f


# ---------------------------------------------------------------------------
# jitted loops
# ---------------------------------------------------------------------------

@_jit
def _soft_shrink(x, b, out):
    # tiles of the pixel index in parallel, channels inside; each channel a
    # contiguous span from index 0 (vectorises: see the fused kernels below)
    C, N = x.shape
    for t in prange((N + _TILE - 1) // _TILE):
        s = t * _TILE
        e = min(s + _TILE, N)
        for c in range(C):
            _shrink_span(x[c, s:e], b[c], out[c, s:e], e - s)


# The backward kernels and their forward partners work on tiles of whole
# rows of the half spectrum (so the column weights m_v line up with each
# row), the channels looped inside a tile, every channel a contiguous span
# on real views (complex values as interleaved re/im pairs): the spans
# vectorise, where a loop over the channels per frequency does not (it was
# ~5-10x slower). Channel sums are accumulated per frequency in float64 in
# channel order, as before; the sums over frequencies go through a float64
# buffer summed with reassociation allowed (a strict sequential float sum
# does not vectorise), one partial per tile (fixed tiles: the result does not
# depend on the number of threads).

_jit_sum = njit(fastmath={"reassoc"}, cache=True, nogil=True)


@_jit_sum
def _sum_span(w, n):
    acc = 0.0
    for i in range(n):
        acc += w[i]
    return acc


def _row_tiles(F1, F2):
    """Rows per tile and number of tiles of an (F1, F2) half spectrum."""
    rows = max(1, _TILE // max(F2, 1))
    return rows, (F1 + rows - 1) // rows


@_jit_span
def _shrink_vjp_span(x, b, gbar, xbar, w, n):
    zero = x.dtype.type(0)
    for i in range(n):
        v = x[i]
        g = gbar[i]
        hi = v > b
        lo = v < -b
        xbar[i] = g if (hi or lo) else zero
        w[i] = (g if lo else zero) - (g if hi else zero)


@_jit
def _soft_shrink_vjp(x, b, gbar, xbar, partial):
    C, N = x.shape
    for t in prange(partial.shape[0]):
        s = t * _TILE
        e = min(s + _TILE, N)
        w = np.empty(e - s, np.float64)
        for c in range(C):
            _shrink_vjp_span(x[c, s:e], b[c], gbar[c, s:e], xbar[c, s:e], w, e - s)
            partial[t, c] = _sum_span(w, e - s)


@_jit_span
def _fu_y_span(Y, Z, K, z, G, n):
    # G = (z conj(K) Y + Z) / (z |K|^2 + 1), in the order of the complex
    # expression it replaces
    one = K.dtype.type(1)
    for i in range(n):
        kr = K[2 * i]
        ki = K[2 * i + 1]
        d = z * (kr * kr + ki * ki) + one
        ar = z * kr
        ai = -(z * ki)
        yr = Y[2 * i]
        yi = Y[2 * i + 1]
        G[2 * i] = (ar * yr - ai * yi + Z[2 * i]) / d
        G[2 * i + 1] = (ar * yi + ai * yr + Z[2 * i + 1]) / d


@_jit
def _feature_update(Y, Z, K, zeta, G):
    # real views: Y, Z, G (C, 2N), K (2N,)
    C = Y.shape[0]
    N = K.shape[0] // 2
    for t in prange((N + _TILE - 1) // _TILE):
        s = t * _TILE
        e = min(s + _TILE, N)
        for c in range(C):
            _fu_y_span(Y[c, 2 * s:2 * e], Z[c, 2 * s:2 * e], K[2 * s:2 * e], zeta[c], G[c, 2 * s:2 * e], e - s)


@_jit_span
def _fu_vjp_span(Y, G, Gb, K, z, m, Ybar, Zbar, kacc, w, nrows, F2):
    one = K.dtype.type(1)
    for r in range(nrows):
        for j in range(F2):
            i = r * F2 + j
            kr = K[2 * i]
            ki = K[2 * i + 1]
            d = z * (kr * kr + ki * ki) + one
            gbr = Gb[2 * i]
            gbi = Gb[2 * i + 1]
            zbr = gbr / d
            zbi = gbi / d
            Zbar[2 * i] = zbr
            Zbar[2 * i + 1] = zbi
            Ybar[2 * i] = z * (kr * zbr - ki * zbi)
            Ybar[2 * i + 1] = z * (kr * zbi + ki * zbr)
            gr = G[2 * i]
            gi = G[2 * i + 1]
            rr = Y[2 * i] - (gr * kr - gi * ki)
            ri = Y[2 * i + 1] - (gr * ki + gi * kr)
            tr = (gbr * rr + gbi * ri) / d  # conj(Gbar) R / D
            ti = (gbr * ri - gbi * rr) / d
            ar = zbr * gr + zbi * gi  # Zbar conj(G), times K
            ai = zbi * gr - zbr * gi
            br = ar * kr - ai * ki
            bi = ar * ki + ai * kr
            kacc[2 * i] += -z * br + z * tr
            kacc[2 * i + 1] += -z * bi + z * ti
            w[i] = m[j] * (kr * tr + ki * ti)


@_jit
def _feature_update_vjp(Y, K, zeta, G, Gbar, m, Ybar, Zbar, Kbar, partial):
    # real views: Y, G, Gbar, Ybar, Zbar (C, 2N), K, Kbar (2N,); tiles of rows
    C = Y.shape[0]
    N = K.shape[0] // 2
    F2 = m.shape[0]
    rows = max(1, _TILE // F2)
    for t in prange(partial.shape[0]):
        s = t * rows * F2
        e = min(s + rows * F2, N)
        nr = (e - s) // F2
        kacc = np.zeros(2 * (e - s), np.float64)
        w = np.empty(e - s, np.float64)
        for c in range(C):
            _fu_vjp_span(Y[c, 2 * s:2 * e], G[c, 2 * s:2 * e], Gbar[c, 2 * s:2 * e], K[2 * s:2 * e], zeta[c], m,
                         Ybar[c, 2 * s:2 * e], Zbar[c, 2 * s:2 * e], kacc, w, nr, F2)
            partial[t, c] = _sum_span(w, e - s)
        for i in range(2 * (e - s)):
            Kbar[2 * s + i] = kacc[i]


@_jit_span
def _cross_span(Z, Y, cross, sq, n):
    # cross += conj(Z) Y, sq += |Z|^2, per frequency in float64
    for i in range(n):
        zr = Z[2 * i]
        zi = Z[2 * i + 1]
        yr = Y[2 * i]
        yi = Y[2 * i + 1]
        cross[2 * i] += zr * yr + zi * yi
        cross[2 * i + 1] += zr * yi - zi * yr
        sq[i] += zr * zr + zi * zi


@_jit_span
def _kls_out_span(cross, sq, P, rho, Kt, n):
    for i in range(n):
        den = rho * sq[i] + 1
        Kt[2 * i] = (rho * cross[2 * i] + P[2 * i]) / den
        Kt[2 * i + 1] = (rho * cross[2 * i + 1] + P[2 * i + 1]) / den


@_jit
def _kernel_ls(Z, Y, P, rho, Kt):
    # real views: Z, Y (C, 2N), P, Kt (2N,)
    C = Z.shape[0]
    N = P.shape[0] // 2
    for t in prange((N + _TILE - 1) // _TILE):
        s = t * _TILE
        e = min(s + _TILE, N)
        cross = np.zeros(2 * (e - s), np.float64)
        sq = np.zeros(e - s, np.float64)
        for c in range(C):
            _cross_span(Z[c, 2 * s:2 * e], Y[c, 2 * s:2 * e], cross, sq, e - s)
        _kls_out_span(cross, sq, P[2 * s:2 * e], rho, Kt[2 * s:2 * e], e - s)


@_jit_span
def _klsvjp_mid_span(cross, sq, Kt, Ktbar, rho, m, Pbar, pb, tt, w, nrows, F2):
    # per frequency, in float64: pb = Ktbar / den (Pbar), tt = -rho pb conj(Kt)
    # (both stored in the working precision) and the rho cotangent
    # Re(conj(Ktbar) (cross - Kt sq)) / den
    for r in range(nrows):
        for j in range(F2):
            i = r * F2 + j
            den = rho * sq[i] + 1
            kbr = Ktbar[2 * i]
            kbi = Ktbar[2 * i + 1]
            pr = kbr / den
            pi = kbi / den
            Pbar[2 * i] = pr
            Pbar[2 * i + 1] = pi
            pb[2 * i] = pr
            pb[2 * i + 1] = pi
            ktr = Kt[2 * i]
            kti = Kt[2 * i + 1]
            tt[2 * i] = -rho * (pr * ktr + pi * kti)
            tt[2 * i + 1] = -rho * (pi * ktr - pr * kti)
            ur = cross[2 * i] - ktr * sq[i]
            ui = cross[2 * i + 1] - kti * sq[i]
            w[i] = m[j] * (kbr * ur + kbi * ui) / den


@_jit_span
def _klsvjp_out_span(Z, Y, Kt, pb, tt, rho, Zbar, Ybar, n):
    # Ybar = rho Z pb ; Zbar = tt Z + rho conj(pb) (Y - Kt Z)
    for i in range(n):
        zr = Z[2 * i]
        zi = Z[2 * i + 1]
        pr = pb[2 * i]
        pi = pb[2 * i + 1]
        Ybar[2 * i] = rho * (zr * pr - zi * pi)
        Ybar[2 * i + 1] = rho * (zr * pi + zi * pr)
        ktr = Kt[2 * i]
        kti = Kt[2 * i + 1]
        rr = Y[2 * i] - (ktr * zr - kti * zi)
        ri = Y[2 * i + 1] - (ktr * zi + kti * zr)
        qr = rho * pr
        qi = -(rho * pi)
        Zbar[2 * i] = (tt[2 * i] * zr - tt[2 * i + 1] * zi) + (qr * rr - qi * ri)
        Zbar[2 * i + 1] = (tt[2 * i] * zi + tt[2 * i + 1] * zr) + (qr * ri + qi * rr)


@_jit
def _kernel_ls_vjp(Z, Y, rho, Kt, Ktbar, m, Zbar, Ybar, Pbar, partial):
    # real views: Z, Y, Zbar, Ybar (C, 2N), Kt, Ktbar, Pbar (2N,); tiles of rows
    C = Z.shape[0]
    N = Kt.shape[0] // 2
    F2 = m.shape[0]
    rows = max(1, _TILE // F2)
    for t in prange(partial.shape[0]):
        s = t * rows * F2
        e = min(s + rows * F2, N)
        n = e - s
        cross = np.zeros(2 * n, np.float64)
        sq = np.zeros(n, np.float64)
        for c in range(C):
            _cross_span(Z[c, 2 * s:2 * e], Y[c, 2 * s:2 * e], cross, sq, n)
        # pb and tt in the working precision: the per-channel pass then runs
        # without conversions (~2x faster in float32)
        pb = np.empty(2 * n, Z.dtype)
        tt = np.empty(2 * n, Z.dtype)
        w = np.empty(n, np.float64)
        _klsvjp_mid_span(cross, sq, Kt[2 * s:2 * e], Ktbar[2 * s:2 * e], rho, m, Pbar[2 * s:2 * e], pb, tt, w,
                         n // F2, F2)
        partial[t] = _sum_span(w, n)
        for c in range(C):
            _klsvjp_out_span(Z[c, 2 * s:2 * e], Y[c, 2 * s:2 * e], Kt[2 * s:2 * e], pb, tt, rho,
                             Zbar[c, 2 * s:2 * e], Ybar[c, 2 * s:2 * e], n)


@_jit
def _reconstruct_gray(Y0, K, W, G, eta, X):
    C, N = W.shape
    for i in prange(N):
        k = K[i]
        num = k.conjugate() * Y0[i]
        den = k.real * k.real + k.imag * k.imag
        for c in range(C):
            e = eta[c]
            w = W[c, i]
            num += e * (w.conjugate() * G[c, i])
            den += e * (w.real * w.real + w.imag * w.imag)
        X[i] = num.real / den + 1j * (num.imag / den)


# ---------------------------------------------------------------------------
# public front ends (same coercion as the reference)
# ---------------------------------------------------------------------------

def soft_shrink(x, b, out=None):
    """Per-channel soft thresholding ``sign(x) * max(|x| - b, 0)``.

    See :func:`hqsdeblur._kernels_ref.soft_shrink`.
    """
    x, b = _prep_shrink(x, b)
    out = _check_out(out, x)
    _soft_shrink(_flat(x), b, _flat(out))
    return out


def soft_shrink_vjp(x, b, gbar):
    """Vector-Jacobian product of :func:`soft_shrink`.

    See :func:`hqsdeblur._kernels_ref.soft_shrink_vjp`.
    """
    x, b = _prep_shrink(x, b)
    gbar = _as(gbar, x.dtype, 3, "gbar")
    _check_same(gbar.shape, x.shape, "gbar")
    xbar = np.empty_like(x)
    xf = _flat(x)
    partial = np.zeros(((xf.shape[1] + _TILE - 1) // _TILE, x.shape[0]), dtype=np.float64)
    _soft_shrink_vjp(xf, b, _flat(gbar), _flat(xbar), partial)
    return xbar, partial.sum(axis=0).astype(x.dtype)


def feature_update(Y, Z, K, zeta):
    """Feature-domain least squares ``(zeta conj(K) Y + Z) / (zeta |K|^2 + 1)``.

    See :func:`hqsdeblur._kernels_ref.feature_update`.
    """
    Y, Z, K, zeta = _prep_feature(Y, Z, K, zeta)
    G = np.empty_like(Y)
    _feature_update(_rv(Y), _rv(Z), _rv(K[None])[0], zeta, _rv(G))
    return G


def feature_update_vjp(Y, Z, K, zeta, G, Gbar, full_shape):
    """Vector-Jacobian product of :func:`feature_update`.

    See :func:`hqsdeblur._kernels_ref.feature_update_vjp`.
    """
    Y, Z, K, zeta = _prep_feature(Y, Z, K, zeta)
    G = _as(G, Y.dtype, 3, "G")
    Gbar = _as(Gbar, Y.dtype, 3, "Gbar")
    _check_same(G.shape, Y.shape, "G")
    _check_same(Gbar.shape, Y.shape, "Gbar")
    H, W = _check_full_shape(full_shape, *Y.shape[1:])
    m = half_spectrum_weights(W, dtype=zeta.dtype)
    Ybar = np.empty_like(Y)
    Zbar = np.empty_like(Y)
    Kbar = np.empty_like(K)
    partial = np.zeros((_row_tiles(*K.shape)[1], Y.shape[0]), dtype=np.float64)
    _feature_update_vjp(_rv(Y), _rv(K[None])[0], zeta, _rv(G), _rv(Gbar), m,
                        _rv(Ybar), _rv(Zbar), _rv(Kbar[None])[0], partial)
    zeta_bar = (partial.sum(axis=0) / (H * W)).astype(zeta.dtype)
    return Ybar, Zbar, Kbar, zeta_bar


def kernel_ls(Z, Y, P, rho):
    """Kernel least squares ``(rho sum_c conj(Z_c) Y_c + P) / (rho sum_c |Z_c|^2 + 1)``.

    See :func:`hqsdeblur._kernels_ref.kernel_ls`.
    """
    Z, Y, P, rho = _prep_kernel(Z, Y, P, rho)
    rdt = P.real.dtype.type
    Kt = np.empty_like(P)
    _kernel_ls(_rv(Z), _rv(Y), _rv(P[None])[0], rdt(rho), _rv(Kt[None])[0])
    return Kt


def kernel_ls_vjp(Z, Y, P, rho, Kt, Ktbar, full_shape):
    """Vector-Jacobian product of :func:`kernel_ls`.

    See :func:`hqsdeblur._kernels_ref.kernel_ls_vjp`.
    """
    Z, Y, P, rho = _prep_kernel(Z, Y, P, rho)
    Kt = _as(Kt, Z.dtype, 2, "Kt")
    Ktbar = _as(Ktbar, Z.dtype, 2, "Ktbar")
    _check_same(Kt.shape, Z.shape[1:], "Kt")
    _check_same(Ktbar.shape, Z.shape[1:], "Ktbar")
    H, W = _check_full_shape(full_shape, *Z.shape[1:])
    rdt = Kt.real.dtype.type
    m = half_spectrum_weights(W, dtype=rdt)
    Zbar = np.empty_like(Z)
    Ybar = np.empty_like(Z)
    Pbar = np.empty_like(Kt)
    partial = np.zeros(_row_tiles(*Kt.shape)[1], dtype=np.float64)
    _kernel_ls_vjp(_rv(Z), _rv(Y), rdt(rho), _rv(Kt[None])[0], _rv(Ktbar[None])[0], m,
                   _rv(Zbar), _rv(Ybar), _rv(Pbar[None])[0], partial)
    return Zbar, Ybar, Pbar, float(partial.sum()) / (H * W)


def reconstruct_gray(Y0, K, W, G, eta):
    """Image update ``(conj(K) Y0 + sum_c eta_c conj(W_c) G_c) / (|K|^2 + sum_c eta_c |W_c|^2)``.

    See :func:`hqsdeblur._kernels_ref.reconstruct_gray`.
    """
    Y0, K, W, G, eta = _prep_recon(Y0, K, W, G, eta)
    X = np.empty_like(Y0)
    _reconstruct_gray(Y0.reshape(-1), K.reshape(-1), _flat(W), _flat(G), eta, X.reshape(-1))
    return X


# ---------------------------------------------------------------------------
# fused kernels of the unrolled fast path (see hqsdeblur._fused_ref)
# ---------------------------------------------------------------------------
# Spans loop over 1-D real views (complex values as interleaved re/im pairs)
# from index 0: with a non-zero start LLVM cannot drop Numba's negative-index
# wraparound and the loops do not vectorise (~25 % slower). Tiles therefore
# pass slices. The per-channel entries take the arrays as they are and view
# them inside (2 us a call instead of ~25 us through the coercing front end).
# Serial and parallel loops are separate functions: Numba's on-disk cache
# keys its entries by function and line, not by the parallel flag.

# (_jit_span: see the top of the module)


@_jit_span
def _fu_span(E, P, Z, K2, zc, out, n):
    # G = (zeta E P + Z) / (zeta K2 + 1) in the NumPy fast path's order:
    # the product E P, times zeta, plus Z, times the reciprocal denominator
    one = K2.dtype.type(1)
    for i in range(n):
        d = one / (K2[i] * zc + one)
        er = E[2 * i]
        ei = E[2 * i + 1]
        pr = P[2 * i]
        pi = P[2 * i + 1]
        out[2 * i] = ((er * pr - ei * pi) * zc + Z[2 * i]) * d
        out[2 * i + 1] = ((er * pi + ei * pr) * zc + Z[2 * i + 1]) * d


@_jit_span
def _fu_span_inplace(E, P, Z, K2, zc, n):
    # the same, overwriting Z (one array: no run-time alias check that
    # sends the loop to its scalar version)
    one = K2.dtype.type(1)
    for i in range(n):
        d = one / (K2[i] * zc + one)
        er = E[2 * i]
        ei = E[2 * i + 1]
        pr = P[2 * i]
        pi = P[2 * i + 1]
        gr = ((er * pr - ei * pi) * zc + Z[2 * i]) * d
        gi = ((er * pi + ei * pr) * zc + Z[2 * i + 1]) * d
        Z[2 * i] = gr
        Z[2 * i + 1] = gi


@_jit_span
def _shrink_span(g, b, out, n):
    # g - clip(g, -b, b), branch free; NaN propagates
    for i in range(n):
        v = g[i]
        w = v if v < b else b
        w = w if w > -b else -b
        out[i] = v - w


@_jit_span
def _shrink2_span(g, b, b2, out, out2, n):
    for i in range(n):
        v = g[i]
        w = v if v < b else b
        w = w if w > -b else -b
        w2 = v if v < b2 else b2
        w2 = w2 if w2 > -b2 else -b2
        out[i] = v - w
        out2[i] = v - w2


@_jit_span
def _kls_span(Z, E, num, sq, n):
    # num += conj(Z) E ; sq += |Z|^2
    for i in range(n):
        zr = Z[2 * i]
        zi = Z[2 * i + 1]
        er = E[2 * i]
        ei = E[2 * i + 1]
        num[2 * i] += zr * er + zi * ei
        num[2 * i + 1] += zr * ei - zi * er
        sq[i] += zr * zr + zi * zi


# one channel, arrays as given (C-contiguous, checked by the front ends)

@_jit_span
def _fu_channel(E, P, Z, K2, zc, out):
    rd = K2.dtype
    _fu_span(E.reshape(E.size).view(rd), P.reshape(P.size).view(rd), Z.reshape(Z.size).view(rd),
             K2.reshape(K2.size), zc, out.reshape(out.size).view(rd), K2.size)


@_jit_span
def _fu_channel_inplace(E, P, Z, K2, zc):
    rd = K2.dtype
    _fu_span_inplace(E.reshape(E.size).view(rd), P.reshape(P.size).view(rd),
                     Z.reshape(Z.size).view(rd), K2.reshape(K2.size), zc, K2.size)


@_jit_span
def _shrink_channel(g, b, out):
    _shrink_span(g.reshape(g.size), b, out.reshape(out.size), g.size)


@_jit_span
def _shrink2_channel(g, b, b2, out, out2):
    _shrink2_span(g.reshape(g.size), b, b2, out.reshape(out.size), out2.reshape(out2.size), g.size)


@_jit_span
def _kls_channel(Z, E, num, sq):
    rd = sq.dtype
    _kls_span(Z.reshape(Z.size).view(rd), E.reshape(E.size).view(rd), num.reshape(num.size).view(rd),
              sq.reshape(sq.size), sq.size)


# channel stacks: real views (C, 2 n) / (C, n); tiles of the index in
# parallel with the channels inside (the shared arrays stay in cache)

@_jit
def _fu_par(E, P, Z, K2, zeta, out, n):
    for t in prange((n + _TILE - 1) // _TILE):
        s = t * _TILE
        e = min(s + _TILE, n)
        for c in range(E.shape[0]):
            _fu_span(E[c, 2 * s:2 * e], P[2 * s:2 * e], Z[c, 2 * s:2 * e], K2[s:e], zeta[c],
                     out[c, 2 * s:2 * e], e - s)


@_jit
def _fu_inplace_par(E, P, Z, K2, zeta, n):
    for t in prange((n + _TILE - 1) // _TILE):
        s = t * _TILE
        e = min(s + _TILE, n)
        for c in range(E.shape[0]):
            _fu_span_inplace(E[c, 2 * s:2 * e], P[2 * s:2 * e], Z[c, 2 * s:2 * e], K2[s:e], zeta[c], e - s)


@_jit
def _shrink_par(g, b, out, n):
    for t in prange((n + _TILE - 1) // _TILE):
        s = t * _TILE
        e = min(s + _TILE, n)
        for c in range(g.shape[0]):
            _shrink_span(g[c, s:e], b[c], out[c, s:e], e - s)


@_jit
def _shrink2_par(g, b, b2, out, out2, n):
    for t in prange((n + _TILE - 1) // _TILE):
        s = t * _TILE
        e = min(s + _TILE, n)
        for c in range(g.shape[0]):
            _shrink2_span(g[c, s:e], b[c], b2[c], out[c, s:e], out2[c, s:e], e - s)


@_jit
def _kls_par(Z, E, num, sq, n):
    for t in prange((n + _TILE - 1) // _TILE):
        s = t * _TILE
        e = min(s + _TILE, n)
        for c in range(Z.shape[0]):
            _kls_span(Z[c, 2 * s:2 * e], E[c, 2 * s:2 * e], num[2 * s:2 * e], sq[s:e], e - s)


@_jit_span
def _fu_ser(E, P, Z, K2, zeta, out, n):
    for c in range(E.shape[0]):
        _fu_span(E[c], P, Z[c], K2, zeta[c], out[c], n)


@_jit_span
def _fu_inplace_ser(E, P, Z, K2, zeta, n):
    for c in range(E.shape[0]):
        _fu_span_inplace(E[c], P, Z[c], K2, zeta[c], n)


@_jit_span
def _shrink_ser(g, b, out, n):
    for c in range(g.shape[0]):
        _shrink_span(g[c], b[c], out[c], n)


@_jit_span
def _shrink2_ser(g, b, b2, out, out2, n):
    for c in range(g.shape[0]):
        _shrink2_span(g[c], b[c], b2[c], out[c], out2[c], n)


@_jit_span
def _kls_ser(Z, E, num, sq, n):
    for c in range(Z.shape[0]):
        _kls_span(Z[c], E[c], num, sq, n)


def _plain(a, dt, shape):
    """`a` is a C-contiguous ndarray of dtype `dt` and shape `shape` (the
    per-channel entries need no coercion)."""
    return type(a) is np.ndarray and a.dtype == dt and a.shape == shape and a.flags.c_contiguous


def _scalar(v):
    return isinstance(v, (float, np.floating))


def fused_feature_update(E, P, Z, K2, zeta, out=None, *, parallel=True):
    """Feature update ``(zeta_c E_c P + Z_c) / (zeta_c K2 + 1)`` in one pass.

    See :func:`hqsdeblur._fused_ref.fused_feature_update`.
    """
    if (type(Z) is np.ndarray and Z.ndim == 2 and Z.dtype.kind == "c" and _scalar(zeta)
            and (not parallel or not _fr.parallel_pays(Z.size))):
        # one channel, nothing to coerce: straight to the loop
        cdt, sh = Z.dtype, Z.shape
        rdt = K2.dtype if isinstance(K2, np.ndarray) else None
        if (_plain(Z, cdt, sh) and _plain(E, cdt, sh) and _plain(P, cdt, sh) and rdt is not None
                and rdt.itemsize * 2 == cdt.itemsize and rdt.kind == "f" and _plain(K2, rdt, sh)
                and out is not None and out.flags.writeable and not np.may_share_memory(out, E)
                and not np.may_share_memory(out, P)):
            if out is Z:
                _fu_channel_inplace(E, P, Z, K2, rdt.type(zeta))
                return out
            if _plain(out, cdt, sh) and not np.may_share_memory(out, Z):
                _fu_channel(E, P, Z, K2, rdt.type(zeta), out)
                return out
    E3, P, Z3, K2, zeta, out, out3, inplace = _fr.prep_feature_update(E, P, Z, K2, zeta, out)
    n = K2.size
    Ev, Pv, Kv = _fr.real_view(E3), _fr.real_view(P[None])[0], K2.reshape(-1)
    par = parallel and _fr.parallel_pays(n * E3.shape[0])
    if inplace:
        (_fu_inplace_par if par else _fu_inplace_ser)(Ev, Pv, _fr.real_view(out3), Kv, zeta, n)
    else:
        (_fu_par if par else _fu_ser)(Ev, Pv, _fr.real_view(Z3), Kv, zeta, _fr.real_view(out3), n)
    return out


def fused_soft_shrink(g, b, out=None, *, b2=None, out2=None, parallel=True):
    """Soft shrink ``g - clip(g, -b, b)``, optionally also with ``b2``, in one pass.

    See :func:`hqsdeblur._fused_ref.fused_soft_shrink`.
    """
    if (type(g) is np.ndarray and g.ndim <= 2 and g.dtype.kind == "f" and _scalar(b)
            and out is not None and (not parallel or not _fr.parallel_pays(g.size))):
        rdt, sh = g.dtype, g.shape
        if _plain(g, rdt, sh) and _plain(out, rdt, sh) and out.flags.writeable:
            if b2 is None and out2 is None:
                _shrink_channel(g, rdt.type(b), out)
                return out
            if (_scalar(b2) and out2 is not None and _plain(out2, rdt, sh) and out2.flags.writeable
                    and not np.may_share_memory(out2, g) and not np.may_share_memory(out2, out)):
                _shrink2_channel(g, rdt.type(b), rdt.type(b2), out, out2)
                return out, out2
    g3, b, out, out3, b2, out2, out2_3 = _fr.prep_soft_shrink(g, b, out, b2, out2)
    n = g3.shape[1]
    par = parallel and _fr.parallel_pays(g3.size)
    if b2 is None:
        (_shrink_par if par else _shrink_ser)(g3, b, out3, n)
        return out
    (_shrink2_par if par else _shrink2_ser)(g3, b, b2, out3, out2_3, n)
    return out, out2


def fused_kernel_ls_sums(Z, E, num, sqsum, *, parallel=True):
    """Accumulate ``num += sum_c conj(Z_c) E_c`` and ``sqsum += sum_c |Z_c|^2``.

    See :func:`hqsdeblur._fused_ref.fused_kernel_ls_sums`.
    """
    if (type(Z) is np.ndarray and Z.ndim == 2 and Z.dtype.kind == "c"
            and (not parallel or not _fr.parallel_pays(Z.size))):
        cdt, sh = Z.dtype, Z.shape
        rdt = sqsum.dtype if isinstance(sqsum, np.ndarray) else None
        if (_plain(Z, cdt, sh) and _plain(E, cdt, sh) and _plain(num, cdt, sh) and rdt is not None
                and rdt.itemsize * 2 == cdt.itemsize and rdt.kind == "f" and _plain(sqsum, rdt, sh)
                and num.flags.writeable and sqsum.flags.writeable):
            _kls_channel(Z, E, num, sqsum)
            return num, sqsum
    Z3, E3, num, sqsum = _fr.prep_kernel_ls_sums(Z, E, num, sqsum)
    n = sqsum.size
    Zv, Ev = _fr.real_view(Z3), _fr.real_view(E3)
    Nv, Sv = _fr.real_view(num[None])[0], sqsum.reshape(-1)
    (_kls_par if parallel and _fr.parallel_pays(Z3.size) else _kls_ser)(Zv, Ev, Nv, Sv, n)
    return num, sqsum
