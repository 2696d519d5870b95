# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False, nonecheck=False
"""Compiled (Cython + OpenMP) elementwise HQS kernels.

Same functions and signatures as :mod:`hqsdeblur._kernels_ref`, which is
the readable definition.  Complex arrays are processed through a real view
(``complex64 -> float32`` pairs, ``complex128 -> float64`` pairs), so that a
single fused type ``floating`` specialises every loop consistently.  The
parallel loop runs over the flattened frequency/pixel index with the
channels looped inside; reductions over pixels use a fixed number of blocks
(independent of the thread count) so results are deterministic.  Without
OpenMP the ``prange`` loops simply run serially.
"""

cimport cython
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport fabs

import numpy as np

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
    "have_openmp",
]

# Number of blocks used for reductions over pixels: fixed, so the summation
# order (hence the rounding) does not depend on the number of threads.
cdef enum:
    NBLOCKS = 64
    TILE = 2048  # pixels per parallel work item of the purely elementwise loops


cdef extern from *:
    """
    #ifdef _OPENMP
    static const int HQS_HAVE_OPENMP = 1;
    #else
    static const int HQS_HAVE_OPENMP = 0;
    #endif
    """
    const int HQS_HAVE_OPENMP


def have_openmp():
    """Whether this extension was compiled with OpenMP support."""
    return bool(HQS_HAVE_OPENMP)


cdef inline Py_ssize_t _nblocks(Py_ssize_t n) noexcept nogil:
    return NBLOCKS if n >= NBLOCKS else (n if n > 0 else 1)


def _rview(a, Py_ssize_t lead):
    """Flat real view: (lead, 2 * n) for complex, (lead, n) for real."""
    a = a.reshape(lead, a.size // lead if lead else int(np.prod(a.shape[1:])))
    if a.dtype.kind == "c":
        a = a.view(np.float32 if a.dtype == np.complex64 else np.float64)
    return a


# ---------------------------------------------------------------------------
# soft shrinkage
# ---------------------------------------------------------------------------

def _soft_shrink(floating[:, ::1] x, floating[::1] b, floating[:, ::1] out):
    # Tiles of the pixel index in parallel, channels inside, and a contiguous
    # branch-free inner loop (x - clip(x, -b, b)) that the compiler vectorises.
    cdef Py_ssize_t C = x.shape[0], N = x.shape[1]
    cdef Py_ssize_t nt = (N + TILE - 1) // TILE, t, i, c, start, stop
    cdef floating v, bc, w
    for t in prange(nt, nogil=True, schedule="static"):
        start = t * TILE
        stop = start + TILE if start + TILE < N else N
        for c in range(C):
            bc = b[c]
            for i in range(start, stop):
                v = x[c, i]
                w = v if v < bc else bc      # NaN -> bc, so NaN propagates
                w = w if w > -bc else -bc
                out[c, i] = v - w


def _soft_shrink_vjp(floating[:, ::1] x, floating[::1] b, floating[:, ::1] gbar,
                     floating[:, ::1] xbar, double[:, ::1] partial):
    cdef Py_ssize_t C = x.shape[0], N = x.shape[1], nb = partial.shape[0]
    cdef Py_ssize_t k, i, c, start, stop
    cdef floating v, g, bc
    cdef double acc
    for k in prange(nb, nogil=True, schedule="static"):
        start = k * N // nb
        stop = (k + 1) * N // nb
        for c in range(C):
            bc = b[c]
            acc = 0.0
            for i in range(start, stop):
                v = x[c, i]
                g = gbar[c, i]
                xbar[c, i] = g if (v > bc or v < -bc) else 0
                acc = acc + ((g if v < -bc else 0) - (g if v > bc else 0))
            partial[k, c] = acc


def soft_shrink(x, b, out=None):
    """Per-channel soft thresholding ``sign(x) * max(|x| - b, 0)``.

    See :func:`hqsdeblur._kernels_ref.soft_shrink`.
    """
    x, b = _prep_shrink(x, b)
    out = _check_out(out, x)
    C = x.shape[0]
    _soft_shrink(_rview(x, C), b, _rview(out, C))
    return out


def soft_shrink_vjp(x, b, gbar):
    """Vector-Jacobian product of :func:`soft_shrink`.

    See :func:`hqsdeblur._kernels_ref.soft_shrink_vjp`.
    """
    x, b = _prep_shrink(x, b)
    gbar = _as(gbar, x.dtype, 3, "gbar")
    _check_same(gbar.shape, x.shape, "gbar")
    C = x.shape[0]
    N = x.size // C if C else 0
    xbar = np.empty_like(x)
    partial = np.zeros((_nblocks(N), C), dtype=np.float64)
    _soft_shrink_vjp(_rview(x, C), b, _rview(gbar, C), _rview(xbar, C), partial)
    return xbar, partial.sum(axis=0).astype(x.dtype)


# ---------------------------------------------------------------------------
# feature update
# ---------------------------------------------------------------------------

def _feature_update(floating[:, ::1] Y, floating[:, ::1] Z, floating[::1] K,
                    floating[::1] zeta, floating[:, ::1] G):
    cdef Py_ssize_t C = Y.shape[0], N = K.shape[0] // 2, i, c, r, s
    cdef floating kr, ki, k2, z, d, yr, yi
    for i in prange(N, nogil=True, schedule="static"):
        r = 2 * i
        s = r + 1
        kr = K[r]
        ki = K[s]
        k2 = kr * kr + ki * ki
        for c in range(C):
            z = zeta[c]
            d = z * k2 + 1
            yr = Y[c, r]
            yi = Y[c, s]
            # zeta * conj(K) * Y + Z
            G[c, r] = (z * (kr * yr + ki * yi) + Z[c, r]) / d
            G[c, s] = (z * (kr * yi - ki * yr) + Z[c, s]) / d


def feature_update(Y, Z, K, zeta):
    """Feature-domain least squares ``(zeta conj(K) Y + Z) / (zeta |K|^2 + 1)``.

    See :func:`hqsdeblur._kernels_ref.feature_update`.
    """
    Y, Z, K, zeta = _prep_feature(Y, Z, K, zeta)
    C = Y.shape[0]
    G = np.empty_like(Y)
    _feature_update(_rview(Y, C), _rview(Z, C), _rview(K, 1)[0], zeta, _rview(G, C))
    return G


def _feature_update_vjp(floating[:, ::1] Y, floating[::1] K, floating[::1] zeta,
                        floating[:, ::1] G, floating[:, ::1] Gbar, floating[::1] m,
                        floating[:, ::1] Ybar, floating[:, ::1] Zbar, floating[::1] Kbar,
                        double[:, ::1] partial):
    cdef Py_ssize_t C = Y.shape[0], N = K.shape[0] // 2, nb = partial.shape[0]
    cdef Py_ssize_t F2 = m.shape[0]
    cdef Py_ssize_t k, i, c, r, s, start, stop
    cdef floating kr, ki, k2, z, d, gr, gi, br, bi, zr, zi, rr, ri, tr, ti, mv
    cdef double accr, acci
    for k in prange(nb, nogil=True, schedule="static"):
        start = k * N // nb
        stop = (k + 1) * N // nb
        for i in range(start, stop):
            r = 2 * i
            s = r + 1
            kr = K[r]
            ki = K[s]
            k2 = kr * kr + ki * ki
            mv = m[i % F2]
            accr = 0.0
            acci = 0.0
            for c in range(C):
                z = zeta[c]
                d = z * k2 + 1
                gr = G[c, r]
                gi = G[c, s]
                br = Gbar[c, r]
                bi = Gbar[c, s]
                # Zbar = Gbar / D ; Ybar = zeta K Zbar
                zr = br / d
                zi = bi / d
                Zbar[c, r] = zr
                Zbar[c, s] = zi
                Ybar[c, r] = z * (kr * zr - ki * zi)
                Ybar[c, s] = z * (kr * zi + ki * zr)
                # residual R = Y - G K
                rr = Y[c, r] - (gr * kr - gi * ki)
                ri = Y[c, s] - (gr * ki + gi * kr)
                # -zeta Zbar conj(G) K
                tr = zr * gr + zi * gi
                ti = zi * gr - zr * gi
                accr = accr - z * (tr * kr - ti * ki)
                acci = acci - z * (tr * ki + ti * kr)
                # + zeta conj(Gbar) R / D
                tr = (br * rr + bi * ri) / d
                ti = (br * ri - bi * rr) / d
                accr = accr + z * tr
                acci = acci + z * ti
                # Re(conj(Gbar) conj(K) R / D) = Re(conj(K) (conj(Gbar) R / D))
                partial[k, c] = partial[k, c] + mv * (kr * tr + ki * ti)
            Kbar[r] = <floating>accr
            Kbar[s] = <floating>acci


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
    C = Y.shape[0]
    N = K.size
    m = half_spectrum_weights(W, dtype=zeta.dtype)
    Ybar = np.empty_like(Y)
    Zbar = np.empty_like(Y)
    Kbar = np.empty_like(K)
    partial = np.zeros((_nblocks(N), C), dtype=np.float64)
    _feature_update_vjp(_rview(Y, C), _rview(K, 1)[0], zeta, _rview(G, C), _rview(Gbar, C), m,
                        _rview(Ybar, C), _rview(Zbar, C), _rview(Kbar, 1)[0], partial)
    zeta_bar = (partial.sum(axis=0) / (H * W)).astype(zeta.dtype)
    return Ybar, Zbar, Kbar, zeta_bar


# ---------------------------------------------------------------------------
# kernel least squares
# ---------------------------------------------------------------------------

def _kernel_ls(floating[:, ::1] Z, floating[:, ::1] Y, floating[::1] P, double rho,
               floating[::1] Kt):
    cdef Py_ssize_t C = Z.shape[0], N = P.shape[0] // 2, i, c, r, s
    cdef floating zr, zi, yr, yi, nr, ni, sq, den
    cdef floating rh = <floating>rho
    for i in prange(N, nogil=True, schedule="static"):
        r = 2 * i
        s = r + 1
        nr = 0
        ni = 0
        sq = 0
        for c in range(C):
            zr = Z[c, r]
            zi = Z[c, s]
            yr = Y[c, r]
            yi = Y[c, s]
            nr = nr + (zr * yr + zi * yi)
            ni = ni + (zr * yi - zi * yr)
            sq = sq + (zr * zr + zi * zi)
        den = rh * sq + 1
        Kt[r] = (rh * nr + P[r]) / den
        Kt[s] = (rh * ni + P[s]) / den


def kernel_ls(Z, Y, P, rho):
    """Kernel least squares ``(rho sum_c conj(Z_c) Y_c + P) / (rho sum_c |Z_c|^2 + 1)``.

    See :func:`hqsdeblur._kernels_ref.kernel_ls`.
    """
    Z, Y, P, rho = _prep_kernel(Z, Y, P, rho)
    C = Z.shape[0]
    Kt = np.empty_like(P)
    _kernel_ls(_rview(Z, C), _rview(Y, C), _rview(P, 1)[0], rho, _rview(Kt, 1)[0])
    return Kt


def _kernel_ls_vjp(floating[:, ::1] Z, floating[:, ::1] Y, double rho, floating[::1] Kt,
                   floating[::1] Ktbar, floating[::1] m, floating[:, ::1] Zbar,
                   floating[:, ::1] Ybar, floating[::1] Pbar, double[::1] partial):
    cdef Py_ssize_t C = Z.shape[0], N = Kt.shape[0] // 2, nb = partial.shape[0]
    cdef Py_ssize_t F2 = m.shape[0]
    cdef Py_ssize_t k, i, c, r, s, start, stop
    cdef floating zr, zi, yr, yi, sq, nr, ni, den, pr, pi, kr, ki, br, bi, tr, ti
    cdef floating rh = <floating>rho
    cdef double acc
    for k in prange(nb, nogil=True, schedule="static"):
        start = k * N // nb
        stop = (k + 1) * N // nb
        acc = 0.0
        for i in range(start, stop):
            r = 2 * i
            s = r + 1
            nr = 0
            ni = 0
            sq = 0
            for c in range(C):
                zr = Z[c, r]
                zi = Z[c, s]
                yr = Y[c, r]
                yi = Y[c, s]
                nr = nr + (zr * yr + zi * yi)
                ni = ni + (zr * yi - zi * yr)
                sq = sq + (zr * zr + zi * zi)
            den = rh * sq + 1
            kr = Kt[r]
            ki = Kt[s]
            br = Ktbar[r]
            bi = Ktbar[s]
            pr = br / den
            pi = bi / den
            Pbar[r] = pr
            Pbar[s] = pi
            # -rho Pbar conj(Kt): (t) ; rho conj(Pbar)
            tr = -rh * (pr * kr + pi * ki)
            ti = -rh * (pi * kr - pr * ki)
            for c in range(C):
                zr = Z[c, r]
                zi = Z[c, s]
                Ybar[c, r] = rh * (zr * pr - zi * pi)
                Ybar[c, s] = rh * (zr * pi + zi * pr)
                yr = Y[c, r] - (kr * zr - ki * zi)
                yi = Y[c, s] - (kr * zi + ki * zr)
                Zbar[c, r] = (tr * zr - ti * zi) + rh * (pr * yr + pi * yi)
                Zbar[c, s] = (tr * zi + ti * zr) + rh * (pr * yi - pi * yr)
            # Re(conj(Ktbar) (cross - Kt S) / den)
            acc = acc + m[i % F2] * (br * (nr - kr * sq) + bi * (ni - ki * sq)) / den
        partial[k] = acc


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
    C = Z.shape[0]
    N = Kt.size
    rdt = np.float32 if Z.dtype == np.complex64 else np.float64
    m = half_spectrum_weights(W, dtype=rdt)
    Zbar = np.empty_like(Z)
    Ybar = np.empty_like(Z)
    Pbar = np.empty_like(Kt)
    partial = np.zeros(_nblocks(N), dtype=np.float64)
    _kernel_ls_vjp(_rview(Z, C), _rview(Y, C), rho, _rview(Kt, 1)[0], _rview(Ktbar, 1)[0], m,
                   _rview(Zbar, C), _rview(Ybar, C), _rview(Pbar, 1)[0], partial)
    return Zbar, Ybar, Pbar, float(partial.sum()) / (H * W)


# ---------------------------------------------------------------------------
# gray image reconstruction
# ---------------------------------------------------------------------------

def _reconstruct_gray(floating[::1] Y0, floating[::1] K, floating[:, ::1] W,
                      floating[:, ::1] G, floating[::1] eta, floating[::1] X):
    cdef Py_ssize_t C = W.shape[0], N = K.shape[0] // 2, i, c, r, s
    cdef floating kr, ki, wr, wi, gr, gi, e, nr, ni, den
    for i in prange(N, nogil=True, schedule="static"):
        r = 2 * i
        s = r + 1
        kr = K[r]
        ki = K[s]
        nr = kr * Y0[r] + ki * Y0[s]
        ni = kr * Y0[s] - ki * Y0[r]
        den = kr * kr + ki * ki
        for c in range(C):
            e = eta[c]
            wr = W[c, r]
            wi = W[c, s]
            gr = G[c, r]
            gi = G[c, s]
            nr = nr + e * (wr * gr + wi * gi)
            ni = ni + e * (wr * gi - wi * gr)
            den = den + e * (wr * wr + wi * wi)
        X[r] = nr / den
        X[s] = ni / den


def reconstruct_gray(Y0, K, W, G, eta):
    """Image update ``(conj(K) Y0 + sum_c eta_c conj(W_c) G_c) / (|K|^2 + sum_c eta_c |W_c|^2)``.

    See :func:`hqsdeblur._kernels_ref.reconstruct_gray`.
    """
    Y0, K, W, G, eta = _prep_recon(Y0, K, W, G, eta)
    C = W.shape[0]
    X = np.empty_like(Y0)
    _reconstruct_gray(_rview(Y0, 1)[0], _rview(K, 1)[0], _rview(W, C), _rview(G, C), eta,
                      _rview(X, 1)[0])
    return X
