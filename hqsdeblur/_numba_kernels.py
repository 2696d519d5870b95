"""Numba (parallel, JIT) elementwise HQS kernels.

Same functions and signatures as :mod:`hqsdeblur._kernels_ref`, which is
the readable definition.  The public functions coerce the inputs (dtype,
C-contiguity, shapes) exactly like the reference and then call a jitted
loop over the flattened frequency/pixel index (``prange``), with the
channels looped inside.  Numba compiles one specialisation per dtype, so
``complex64``/``float32`` and ``complex128``/``float64`` inputs both stay
in their own precision.  Reductions over pixels use a fixed number of
blocks, so results do not depend on the number of threads.

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

# error_model="numpy": a float division by zero gives inf (as in NumPy)
# instead of a ZeroDivisionError check per element that stops vectorisation
_jit_span = njit(fastmath=False, cache=True, nogil=True, error_model="numpy")


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
