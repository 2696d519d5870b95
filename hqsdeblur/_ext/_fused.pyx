# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False, nonecheck=False
"""Compiled (Cython + OpenMP) fused kernels of the unrolled fast path.

Same functions and signatures as :mod:`hqsdeblur._fused_ref`, which is the
readable definition and does the argument coercion.  As in
:mod:`hqsdeblur._ext._elementwise`, complex arrays are processed through a
real view (interleaved re/im pairs), so one fused type ``floating``
specialises every loop for float32/complex64 and float64/complex128.  The
loops run over tiles of the frequency/pixel index with the channels inside,
in parallel (``prange``) for large arrays and otherwise serially without
the GIL, so that the fast path can run channel groups on Python threads.
Without OpenMP the ``prange`` loops simply run serially.  A single channel
whose arrays need no coercion (the fast path's calls) goes straight from
C-level checks to the loop, ~1 us a call instead of ~40 us through the
coercing front end.

Example
-------
>>> import numpy as np
>>> from hqsdeblur._ext import _fused
>>> _fused.fused_soft_shrink(np.array([-2.0, 0.5, 3.0]), 1.0)
array([-1.,  0.,  2.])
"""

cimport cython
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange

import numpy as np

cnp.import_array()

from hqsdeblur import _fused_ref as _fr

__all__ = ["fused_feature_update", "fused_soft_shrink", "fused_kernel_ls_sums"]

cdef enum:
    TILE = 2048  # values of the frequency/pixel index per work item


# ---------------------------------------------------------------------------
# spans: one channel, indices [start, stop) of the (pair) index
# ---------------------------------------------------------------------------
# Not ``inline``: inlined into their callers, GCC 12 vectorises these loops
# worse (feature update 190 -> 100 us, sums 116 -> 80 us on a 360 x 251
# spectrum when they stay functions).

cdef void _fu_span(const floating* E, const floating* P, const floating* Z,
                          const floating* K2, floating zc, floating* out,
                          Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    # G = (zeta E P + Z) / (zeta K2 + 1) in the NumPy fast path's order: the
    # product E P, times zeta, plus Z, times the reciprocal denominator
    cdef Py_ssize_t i
    cdef floating d, er, ei, pr, pi
    cdef floating one = 1  # a typed 1: Cython writes the literal as 1.0 (double)
    for i in range(start, stop):
        d = one / (K2[i] * zc + one)
        er = E[2 * i]
        ei = E[2 * i + 1]
        pr = P[2 * i]
        pi = P[2 * i + 1]
        out[2 * i] = ((er * pr - ei * pi) * zc + Z[2 * i]) * d
        out[2 * i + 1] = ((er * pi + ei * pr) * zc + Z[2 * i + 1]) * d


cdef void _fu_span_inplace(const floating* E, const floating* P, floating* Z,
                                  const floating* K2, floating zc,
                                  Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    # the same, overwriting Z (one pointer: no run-time alias check that
    # would send the loop to its scalar version)
    cdef Py_ssize_t i
    cdef floating d, er, ei, pr, pi, gr, gi
    cdef floating one = 1
    for i in range(start, stop):
        d = one / (K2[i] * zc + one)
        er = E[2 * i]
        ei = E[2 * i + 1]
        pr = P[2 * i]
        pi = P[2 * i + 1]
        gr = ((er * pr - ei * pi) * zc + Z[2 * i]) * d
        gi = ((er * pi + ei * pr) * zc + Z[2 * i + 1]) * d
        Z[2 * i] = gr
        Z[2 * i + 1] = gi


cdef void _shrink_span(const floating* g, floating b, floating* out,
                              Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    # g - clip(g, -b, b), branch free (vectorised); NaN propagates
    cdef Py_ssize_t i
    cdef floating v, w
    for i in range(start, stop):
        v = g[i]
        w = v if v < b else b
        w = w if w > -b else -b
        out[i] = v - w


cdef void _shrink2_span(const floating* g, floating b, floating b2, floating* out,
                               floating* out2, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating v, w, w2
    for i in range(start, stop):
        v = g[i]
        w = v if v < b else b
        w = w if w > -b else -b
        w2 = v if v < b2 else b2
        w2 = w2 if w2 > -b2 else -b2
        out[i] = v - w
        out2[i] = v - w2


cdef void _kls_span(const floating* Z, const floating* E, floating* num, floating* sq,
                           Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    # num += conj(Z) E ; sq += |Z|^2
    cdef Py_ssize_t i
    cdef floating zr, zi, er, ei
    for i in range(start, stop):
        zr = Z[2 * i]
        zi = Z[2 * i + 1]
        er = E[2 * i]
        ei = E[2 * i + 1]
        num[2 * i] += zr * er + zi * ei
        num[2 * i + 1] += zr * ei - zi * er
        sq[i] += zr * zr + zi * zi


# ---------------------------------------------------------------------------
# tile loops (channels inside a tile, so the shared arrays stay in cache)
# ---------------------------------------------------------------------------

cdef inline Py_ssize_t _stop(Py_ssize_t t, Py_ssize_t n) noexcept nogil:
    return t * TILE + TILE if t * TILE + TILE < n else n


def _fu(const floating[:, ::1] E, const floating[::1] P, const floating[:, ::1] Z,
        const floating[::1] K2, const floating[::1] zeta, floating[:, ::1] out,
        bint parallel):
    cdef Py_ssize_t C = E.shape[0], n = K2.shape[0], nt = (n + TILE - 1) // TILE, t, c
    if n == 0 or C == 0:
        return
    # serial (parallel=False): the caller runs channel groups on threads of its own
    for t in prange(nt, nogil=True, schedule="static", use_threads_if=parallel):
        for c in range(C):
            _fu_span(&E[c, 0], &P[0], &Z[c, 0], &K2[0], zeta[c], &out[c, 0],
                     t * TILE, _stop(t, n))


def _fu_inplace(const floating[:, ::1] E, const floating[::1] P, floating[:, ::1] Z,
                const floating[::1] K2, const floating[::1] zeta, bint parallel):
    cdef Py_ssize_t C = E.shape[0], n = K2.shape[0], nt = (n + TILE - 1) // TILE, t, c
    if n == 0 or C == 0:
        return
    # serial (parallel=False): the caller runs channel groups on threads of its own
    for t in prange(nt, nogil=True, schedule="static", use_threads_if=parallel):
        for c in range(C):
            _fu_span_inplace(&E[c, 0], &P[0], &Z[c, 0], &K2[0], zeta[c], t * TILE, _stop(t, n))


def _shrink(const floating[:, ::1] g, const floating[::1] b, floating[:, ::1] out, bint parallel):
    cdef Py_ssize_t C = g.shape[0], n = g.shape[1], nt = (n + TILE - 1) // TILE, t, c
    if n == 0 or C == 0:
        return
    # serial (parallel=False): the caller runs channel groups on threads of its own
    for t in prange(nt, nogil=True, schedule="static", use_threads_if=parallel):
        for c in range(C):
            _shrink_span(&g[c, 0], b[c], &out[c, 0], t * TILE, _stop(t, n))


def _shrink2(const floating[:, ::1] g, const floating[::1] b, const floating[::1] b2,
             floating[:, ::1] out, floating[:, ::1] out2, bint parallel):
    cdef Py_ssize_t C = g.shape[0], n = g.shape[1], nt = (n + TILE - 1) // TILE, t, c
    if n == 0 or C == 0:
        return
    # serial (parallel=False): the caller runs channel groups on threads of its own
    for t in prange(nt, nogil=True, schedule="static", use_threads_if=parallel):
        for c in range(C):
            _shrink2_span(&g[c, 0], b[c], b2[c], &out[c, 0], &out2[c, 0], t * TILE, _stop(t, n))


def _kls(const floating[:, ::1] Z, const floating[:, ::1] E, floating[::1] num, floating[::1] sq,
         bint parallel):
    cdef Py_ssize_t C = Z.shape[0], n = sq.shape[0], nt = (n + TILE - 1) // TILE, t, c
    if n == 0 or C == 0:
        return
    # serial (parallel=False): the caller runs channel groups on threads of its own
    for t in prange(nt, nogil=True, schedule="static", use_threads_if=parallel):
        for c in range(C):
            _kls_span(&Z[c, 0], &E[c, 0], &num[0], &sq[0], t * TILE, _stop(t, n))


# ---------------------------------------------------------------------------
# one channel, no coercion: C-level checks, then the loop without the GIL
# ---------------------------------------------------------------------------

cdef inline bint _plain(object a, int typenum, cnp.ndarray like) except -1:
    """`a` is an aligned, native, C-contiguous ndarray of `typenum` and of
    the shape of `like`."""
    cdef cnp.ndarray arr
    cdef int k
    if not cnp.PyArray_Check(a):
        return False
    arr = <cnp.ndarray>a
    if (cnp.PyArray_TYPE(arr) != typenum or cnp.PyArray_NDIM(arr) != cnp.PyArray_NDIM(like)
            or not cnp.PyArray_IS_C_CONTIGUOUS(arr) or not cnp.PyArray_ISALIGNED(arr)
            or not cnp.PyArray_ISNOTSWAPPED(arr)):
        return False
    for k in range(cnp.PyArray_NDIM(like)):
        if cnp.PyArray_DIMS(arr)[k] != cnp.PyArray_DIMS(like)[k]:
            return False
    return True


cdef inline bint _overlap(cnp.ndarray a, cnp.ndarray b) noexcept:
    cdef char* pa = <char*>cnp.PyArray_DATA(a)
    cdef char* pb = <char*>cnp.PyArray_DATA(b)
    return pa < pb + cnp.PyArray_NBYTES(b) and pb < pa + cnp.PyArray_NBYTES(a)


cdef inline bint _scalar(object v) except -1:
    return isinstance(v, (float, np.floating))


cdef inline int _real_of(int ct) noexcept:
    if ct == cnp.NPY_COMPLEX64:
        return cnp.NPY_FLOAT32
    if ct == cnp.NPY_COMPLEX128:
        return cnp.NPY_FLOAT64
    return -1


cdef bint _fu_direct(object E, object P, object Z, object K2, object zeta, object out,
                     bint parallel) except -1:
    cdef cnp.ndarray z_, e_, p_, k_, o_
    cdef int ct, rt
    cdef Py_ssize_t n
    cdef double zc
    cdef bint inplace
    if not (cnp.PyArray_Check(Z) and _scalar(zeta) and cnp.PyArray_Check(out)):
        return False
    z_ = <cnp.ndarray>Z
    ct = cnp.PyArray_TYPE(z_)
    rt = _real_of(ct)
    if cnp.PyArray_NDIM(z_) != 2 or rt < 0:
        return False
    n = cnp.PyArray_SIZE(z_)
    if parallel and _fr.parallel_pays(n):
        return False
    if not (_plain(Z, ct, z_) and _plain(E, ct, z_) and _plain(P, ct, z_) and _plain(K2, rt, z_)
            and _plain(out, ct, z_) and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out)):
        return False
    e_, p_, k_, o_ = <cnp.ndarray>E, <cnp.ndarray>P, <cnp.ndarray>K2, <cnp.ndarray>out
    if _overlap(o_, e_) or _overlap(o_, p_) or _overlap(o_, k_):
        return False  # the coercing path says why
    inplace = cnp.PyArray_DATA(o_) == cnp.PyArray_DATA(z_)
    if not inplace and _overlap(o_, z_):
        return False
    zc = float(zeta)
    if ct == cnp.NPY_COMPLEX64:
        with nogil:
            if inplace:
                _fu_span_inplace(<const float*>cnp.PyArray_DATA(e_), <const float*>cnp.PyArray_DATA(p_),
                                 <float*>cnp.PyArray_DATA(o_), <const float*>cnp.PyArray_DATA(k_),
                                 <float>zc, 0, n)
            else:
                _fu_span(<const float*>cnp.PyArray_DATA(e_), <const float*>cnp.PyArray_DATA(p_),
                         <const float*>cnp.PyArray_DATA(z_), <const float*>cnp.PyArray_DATA(k_),
                         <float>zc, <float*>cnp.PyArray_DATA(o_), 0, n)
    else:
        with nogil:
            if inplace:
                _fu_span_inplace(<const double*>cnp.PyArray_DATA(e_), <const double*>cnp.PyArray_DATA(p_),
                                 <double*>cnp.PyArray_DATA(o_), <const double*>cnp.PyArray_DATA(k_),
                                 zc, 0, n)
            else:
                _fu_span(<const double*>cnp.PyArray_DATA(e_), <const double*>cnp.PyArray_DATA(p_),
                         <const double*>cnp.PyArray_DATA(z_), <const double*>cnp.PyArray_DATA(k_),
                         zc, <double*>cnp.PyArray_DATA(o_), 0, n)
    return True


cdef bint _shrink_direct(object g, object b, object out, object b2, object out2,
                         bint parallel) except -1:
    cdef cnp.ndarray g_, o_, o2_
    cdef int rt
    cdef Py_ssize_t n
    cdef double bc, bc2 = 0
    cdef bint two = b2 is not None
    if not (cnp.PyArray_Check(g) and _scalar(b) and cnp.PyArray_Check(out)):
        return False
    g_ = <cnp.ndarray>g
    rt = cnp.PyArray_TYPE(g_)
    if cnp.PyArray_NDIM(g_) > 2 or cnp.PyArray_NDIM(g_) < 1 or (rt != cnp.NPY_FLOAT32 and rt != cnp.NPY_FLOAT64):
        return False
    n = cnp.PyArray_SIZE(g_)
    if parallel and _fr.parallel_pays(n):
        return False
    if not (_plain(g, rt, g_) and _plain(out, rt, g_) and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out)):
        return False
    o_ = <cnp.ndarray>out
    if cnp.PyArray_DATA(o_) != cnp.PyArray_DATA(g_) and _overlap(o_, g_):
        return False
    if two:
        if not (_scalar(b2) and _plain(out2, rt, g_) and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out2)):
            return False
        o2_ = <cnp.ndarray>out2
        if _overlap(o2_, g_) or _overlap(o2_, o_):
            return False
        bc2 = float(b2)
    elif out2 is not None:
        return False
    else:
        o2_ = o_
    bc = float(b)
    if rt == cnp.NPY_FLOAT32:
        with nogil:
            if two:
                _shrink2_span(<const float*>cnp.PyArray_DATA(g_), <float>bc, <float>bc2,
                              <float*>cnp.PyArray_DATA(o_), <float*>cnp.PyArray_DATA(o2_), 0, n)
            else:
                _shrink_span(<const float*>cnp.PyArray_DATA(g_), <float>bc, <float*>cnp.PyArray_DATA(o_), 0, n)
    else:
        with nogil:
            if two:
                _shrink2_span(<const double*>cnp.PyArray_DATA(g_), bc, bc2,
                              <double*>cnp.PyArray_DATA(o_), <double*>cnp.PyArray_DATA(o2_), 0, n)
            else:
                _shrink_span(<const double*>cnp.PyArray_DATA(g_), bc, <double*>cnp.PyArray_DATA(o_), 0, n)
    return True


cdef bint _kls_direct(object Z, object E, object num, object sqsum, bint parallel) except -1:
    cdef cnp.ndarray z_, e_, n_, s_
    cdef int ct, rt
    cdef Py_ssize_t n
    if not cnp.PyArray_Check(Z):
        return False
    z_ = <cnp.ndarray>Z
    ct = cnp.PyArray_TYPE(z_)
    rt = _real_of(ct)
    if cnp.PyArray_NDIM(z_) != 2 or rt < 0:
        return False
    n = cnp.PyArray_SIZE(z_)
    if parallel and _fr.parallel_pays(n):
        return False
    if not (_plain(Z, ct, z_) and _plain(E, ct, z_) and _plain(num, ct, z_) and _plain(sqsum, rt, z_)
            and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>num) and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>sqsum)):
        return False
    e_, n_, s_ = <cnp.ndarray>E, <cnp.ndarray>num, <cnp.ndarray>sqsum
    if _overlap(n_, z_) or _overlap(n_, e_) or _overlap(s_, z_) or _overlap(s_, e_) or _overlap(n_, s_):
        return False
    if ct == cnp.NPY_COMPLEX64:
        with nogil:
            _kls_span(<const float*>cnp.PyArray_DATA(z_), <const float*>cnp.PyArray_DATA(e_),
                      <float*>cnp.PyArray_DATA(n_), <float*>cnp.PyArray_DATA(s_), 0, n)
    else:
        with nogil:
            _kls_span(<const double*>cnp.PyArray_DATA(z_), <const double*>cnp.PyArray_DATA(e_),
                      <double*>cnp.PyArray_DATA(n_), <double*>cnp.PyArray_DATA(s_), 0, n)
    return True


# ---------------------------------------------------------------------------
# public front ends (coercion shared with the reference)
# ---------------------------------------------------------------------------

def fused_feature_update(E, P, Z, K2, zeta, out=None, *, parallel=True):
    """Feature update ``(zeta_c E_c P + Z_c) / (zeta_c K2 + 1)`` in one pass.

    See :func:`hqsdeblur._fused_ref.fused_feature_update`.
    """
    if out is not None and _fu_direct(E, P, Z, K2, zeta, out, parallel):
        return out
    E3, P, Z3, K2, zeta, out, out3, inplace = _fr.prep_feature_update(E, P, Z, K2, zeta, out)
    par = bool(parallel) and _fr.parallel_pays(K2.size * E3.shape[0])
    Ev, Pv, Kv = _fr.real_view(E3), _fr.real_view(P[None])[0], K2.reshape(-1)
    if inplace:
        _fu_inplace(Ev, Pv, _fr.real_view(out3), Kv, zeta, par)
    else:
        _fu(Ev, Pv, _fr.real_view(Z3), Kv, zeta, _fr.real_view(out3), par)
    return out


def fused_soft_shrink(g, b, out=None, *, b2=None, out2=None, parallel=True):
    """Soft shrink ``g - clip(g, -b, b)``, optionally also with ``b2``, in one pass.

    See :func:`hqsdeblur._fused_ref.fused_soft_shrink`.
    """
    if out is not None and _shrink_direct(g, b, out, b2, out2, parallel):
        return out if b2 is None else (out, out2)
    g3, b, out, out3, b2, out2, out2_3 = _fr.prep_soft_shrink(g, b, out, b2, out2)
    par = bool(parallel) and _fr.parallel_pays(g3.size)
    if b2 is None:
        _shrink(g3, b, out3, par)
        return out
    _shrink2(g3, b, b2, out3, out2_3, par)
    return out, out2


def fused_kernel_ls_sums(Z, E, num, sqsum, *, parallel=True):
    """Accumulate ``num += sum_c conj(Z_c) E_c`` and ``sqsum += sum_c |Z_c|^2``.

    See :func:`hqsdeblur._fused_ref.fused_kernel_ls_sums`.
    """
    if _kls_direct(Z, E, num, sqsum, parallel):
        return num, sqsum
    Z3, E3, num, sqsum = _fr.prep_kernel_ls_sums(Z, E, num, sqsum)
    par = bool(parallel) and _fr.parallel_pays(Z3.size)
    _kls(_fr.real_view(Z3), _fr.real_view(E3), _fr.real_view(num[None])[0], sqsum.reshape(-1), par)
    return num, sqsum
