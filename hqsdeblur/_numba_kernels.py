"""Numba (parallel, JIT) elementwise HQS kernels.

Same functions and signatures as :mod:`hqsdeblur._kernels_ref`, which is
the readable definition.  The public functions coerce the inputs (dtype,
C-contiguity, shapes) exactly like the reference and then call a jitted
loop over the flattened frequency/pixel index (``prange``), with the
channels looped inside.  Numba compiles one specialisation per dtype, so
``complex64``/``float32`` and ``complex128``/``float64`` inputs both stay
in their own precision.  Reductions over pixels use a fixed number of
blocks, so results do not depend on the number of threads.

Example
-------
>>> import numpy as np
>>> from hqsdeblur import _numba_kernels as nk
>>> nk.soft_shrink(np.array([[[-2.0, 0.5, 3.0]]]), np.array([1.0]))
array([[[-1.,  0.,  2.]]])
"""

import numpy as np
from numba import njit, prange

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
]

# Fixed block count for pixel reductions (thread-count independent rounding).
_NBLOCKS = 64
# Pixels per parallel work item of the purely elementwise loops.
_TILE = 2048

_jit = njit(parallel=True, fastmath=False, cache=True, nogil=True)


def _nblocks(n):
    return max(1, min(n, _NBLOCKS))


def _flat(a):
    """(C, ...) -> (C, N) view of a C-contiguous array (valid for C == 0)."""
    return a.reshape(a.shape[0], int(np.prod(a.shape[1:])))


# ---------------------------------------------------------------------------
# jitted loops
# ---------------------------------------------------------------------------

@_jit
def _soft_shrink(x, b, out):
    # tiles of the pixel index in parallel, channels inside, contiguous
    # branch-free inner loop (x - clip(x, -b, b); NaN propagates)
    C, N = x.shape
    nt = (N + _TILE - 1) // _TILE
    for t in prange(nt):
        start = t * _TILE
        stop = min(start + _TILE, N)
        for c in range(C):
            bc = b[c]
            for i in range(start, stop):
                v = x[c, i]
                w = v if v < bc else bc
                w = w if w > -bc else -bc
                out[c, i] = v - w


@_jit
def _soft_shrink_vjp(x, b, gbar, xbar, partial):
    C, N = x.shape
    nb = partial.shape[0]
    zero = x.dtype.type(0)
    for k in prange(nb):
        start = k * N // nb
        stop = (k + 1) * N // nb
        for c in range(C):
            bc = b[c]
            acc = 0.0
            for i in range(start, stop):
                v = x[c, i]
                g = gbar[c, i]
                xbar[c, i] = g if (v > bc or v < -bc) else zero
                acc += (g if v < -bc else zero) - (g if v > bc else zero)
            partial[k, c] = acc


@_jit
def _feature_update(Y, Z, K, zeta, G):
    C, N = Y.shape
    for i in prange(N):
        k = K[i]
        kc = k.conjugate()
        k2 = k.real * k.real + k.imag * k.imag
        for c in range(C):
            z = zeta[c]
            d = z * k2 + 1
            t = z * kc * Y[c, i] + Z[c, i]
            G[c, i] = t.real / d + 1j * (t.imag / d)


@_jit
def _feature_update_vjp(Y, K, zeta, G, Gbar, m, Ybar, Zbar, Kbar, partial):
    C, N = Y.shape
    F2 = m.shape[0]
    nb = partial.shape[0]
    for b in prange(nb):
        start = b * N // nb
        stop = (b + 1) * N // nb
        for i in range(start, stop):
            k = K[i]
            k2 = k.real * k.real + k.imag * k.imag
            mv = m[i % F2]
            acc = 0j
            for c in range(C):
                z = zeta[c]
                d = z * k2 + 1
                g = G[c, i]
                gb = Gbar[c, i]
                zb = gb.real / d + 1j * (gb.imag / d)
                Zbar[c, i] = zb
                Ybar[c, i] = z * (k * zb)
                r = Y[c, i] - g * k
                t = gb.conjugate() * r
                t = t.real / d + 1j * (t.imag / d)
                acc += -z * (zb * g.conjugate() * k) + z * t
                partial[b, c] += mv * (k.real * t.real + k.imag * t.imag)
            Kbar[i] = acc


@_jit
def _kernel_ls(Z, Y, P, rho, Kt):
    C, N = Z.shape[0], P.shape[0]
    for i in prange(N):
        num = 0j
        sq = 0.0
        for c in range(C):
            zc = Z[c, i]
            num += zc.conjugate() * Y[c, i]
            sq += zc.real * zc.real + zc.imag * zc.imag
        den = rho * sq + 1
        t = rho * num + P[i]
        Kt[i] = t.real / den + 1j * (t.imag / den)


@_jit
def _kernel_ls_vjp(Z, Y, rho, Kt, Ktbar, m, Zbar, Ybar, Pbar, partial):
    C, N = Z.shape
    F2 = m.shape[0]
    nb = partial.shape[0]
    for b in prange(nb):
        start = b * N // nb
        stop = (b + 1) * N // nb
        acc = 0.0
        for i in range(start, stop):
            cross = 0j
            sq = 0.0
            for c in range(C):
                zc = Z[c, i]
                cross += zc.conjugate() * Y[c, i]
                sq += zc.real * zc.real + zc.imag * zc.imag
            den = rho * sq + 1
            kt = Kt[i]
            kb = Ktbar[i]
            pb = kb.real / den + 1j * (kb.imag / den)
            Pbar[i] = pb
            t = -rho * (pb * kt.conjugate())
            pbc = rho * pb.conjugate()
            for c in range(C):
                zc = Z[c, i]
                Ybar[c, i] = rho * (zc * pb)
                Zbar[c, i] = t * zc + pbc * (Y[c, i] - kt * zc)
            u = kb.conjugate() * (cross - kt * sq)
            acc += m[i % F2] * u.real / den
        partial[b] = acc


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
    partial = np.zeros((_nblocks(xf.shape[1]), x.shape[0]), dtype=np.float64)
    _soft_shrink_vjp(xf, b, _flat(gbar), _flat(xbar), partial)
    return xbar, partial.sum(axis=0).astype(x.dtype)


def feature_update(Y, Z, K, zeta):
    """Feature-domain least squares ``(zeta conj(K) Y + Z) / (zeta |K|^2 + 1)``.

    See :func:`hqsdeblur._kernels_ref.feature_update`.
    """
    Y, Z, K, zeta = _prep_feature(Y, Z, K, zeta)
    G = np.empty_like(Y)
    _feature_update(_flat(Y), _flat(Z), K.reshape(-1), zeta, _flat(G))
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
    partial = np.zeros((_nblocks(K.size), Y.shape[0]), dtype=np.float64)
    _feature_update_vjp(_flat(Y), K.reshape(-1), zeta, _flat(G), _flat(Gbar), m,
                        _flat(Ybar), _flat(Zbar), Kbar.reshape(-1), partial)
    zeta_bar = (partial.sum(axis=0) / (H * W)).astype(zeta.dtype)
    return Ybar, Zbar, Kbar, zeta_bar


def kernel_ls(Z, Y, P, rho):
    """Kernel least squares ``(rho sum_c conj(Z_c) Y_c + P) / (rho sum_c |Z_c|^2 + 1)``.

    See :func:`hqsdeblur._kernels_ref.kernel_ls`.
    """
    Z, Y, P, rho = _prep_kernel(Z, Y, P, rho)
    rdt = P.real.dtype.type
    Kt = np.empty_like(P)
    _kernel_ls(_flat(Z), _flat(Y), P.reshape(-1), rdt(rho), Kt.reshape(-1))
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
    partial = np.zeros(_nblocks(Kt.size), dtype=np.float64)
    _kernel_ls_vjp(_flat(Z), _flat(Y), rdt(rho), Kt.reshape(-1), Ktbar.reshape(-1), m,
                   _flat(Zbar), _flat(Ybar), Pbar.reshape(-1), partial)
    return Zbar, Ybar, Pbar, float(partial.sum()) / (H * W)


def reconstruct_gray(Y0, K, W, G, eta):
    """Image update ``(conj(K) Y0 + sum_c eta_c conj(W_c) G_c) / (|K|^2 + sum_c eta_c |W_c|^2)``.

    See :func:`hqsdeblur._kernels_ref.reconstruct_gray`.
    """
    Y0, K, W, G, eta = _prep_recon(Y0, K, W, G, eta)
    X = np.empty_like(Y0)
    _reconstruct_gray(Y0.reshape(-1), K.reshape(-1), _flat(W), _flat(G), eta, X.reshape(-1))
    return X
