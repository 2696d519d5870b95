# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False, nonecheck=False
"""Compiled (Cython + OpenMP) elementwise HQS kernels.

Same functions and signatures as :mod:`hqsdeblur._kernels_ref`, which is
the readable definition.  Complex arrays are processed through a real view
(``complex64 -> float32`` pairs, ``complex128 -> float64`` pairs), so that a
single fused type ``floating`` specialises every loop consistently.  The
parallel loop runs over fixed tiles of the flattened frequency/pixel index
(whole rows of the half spectrum for the VJPs) with the channels looped
inside, every channel a contiguous span (the layout of the Numba kernels:
the spans vectorise, a loop over the channels per frequency does not).
Reductions over pixels sum one partial per tile in a fixed order, so
results do not depend on the number of threads.  Without OpenMP the
``prange`` loops simply run serially.
"""

cimport cython
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc

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
    "set_thread_team",
    "thread_team",
]

cdef enum:
    TILE = 2048  # values of the frequency/pixel index per parallel work item


cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static const int HQS_HAVE_OPENMP = 1;
    static void hqs_set_team(int n) { omp_set_num_threads(n); }
    static int hqs_team(void) { return omp_get_max_threads(); }
    #else
    static const int HQS_HAVE_OPENMP = 0;
    static void hqs_set_team(int n) { (void)n; }
    static int hqs_team(void) { return 1; }
    #endif
    """
    const int HQS_HAVE_OPENMP
    void hqs_set_team(int n) nogil
    int hqs_team() nogil


def have_openmp():
    """Whether this extension was compiled with OpenMP support."""
    return bool(HQS_HAVE_OPENMP)


def set_thread_team(int n):
    """Size of the OpenMP teams that this calling thread opens from now on
    (``omp_set_num_threads``: a per-thread setting). The FFT channel threads
    set 1, so that a kernel called inside one of them does not open a
    second team on cores that the other channel threads already use."""
    hqs_set_team(max(1, n))


def thread_team():
    """Size of the OpenMP team this calling thread would open (1 without
    OpenMP)."""
    return hqs_team()


def _rview(a, Py_ssize_t lead):
    """Flat real view: (lead, 2 * n) for complex, (lead, n) for real."""
    a = a.reshape(lead, a.size // lead if lead else int(np.prod(a.shape[1:])))
    if a.dtype.kind == "c":
        a = a.view(np.float32 if a.dtype == np.complex64 else np.float64)
    return a


def _row_tile(Py_ssize_t F1, Py_ssize_t F2):
    """Frequencies per tile (whole rows of an (F1, F2) half spectrum, so the
    column weights line up with each row) and the number of tiles."""
    rows = max(1, TILE // max(F2, 1))
    return rows * F2, (F1 + rows - 1) // rows


# ---------------------------------------------------------------------------
# spans: one channel, indices [0, n) of pointers the caller offsets to a tile
# ---------------------------------------------------------------------------
# Not ``inline`` (as in _fused.pyx: GCC 12 vectorises these loops worse once
# inlined into the tile loops).  Literals are typed (``one``): Cython writes
# ``1`` as ``1.0``, which would turn float32 arithmetic into double.

cdef double _sum_span(const double* w, Py_ssize_t n) noexcept nogil:
    # eight interleaved partial sums in a fixed order: vectorised/pipelined,
    # where one sequential float sum is latency bound (and does not vectorise
    # without reassociation); the rounding depends on n only
    cdef double a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0
    cdef Py_ssize_t i, n8 = n - n % 8
    for i in range(0, n8, 8):
        a0 += w[i]
        a1 += w[i + 1]
        a2 += w[i + 2]
        a3 += w[i + 3]
        a4 += w[i + 4]
        a5 += w[i + 5]
        a6 += w[i + 6]
        a7 += w[i + 7]
    for i in range(n8, n):
        a0 += w[i]
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))


cdef void _shrink_span(const floating* x, floating b, floating* out, Py_ssize_t n) noexcept nogil:
    # x - clip(x, -b, b), branch free; NaN -> b in the clip, so NaN propagates
    cdef Py_ssize_t i
    cdef floating v, w
    for i in range(n):
        v = x[i]
        w = v if v < b else b
        w = w if w > -b else -b
        out[i] = v - w


cdef void _shrink_vjp_span(const floating* x, floating b, const floating* gbar, floating* xbar,
                           double* w, Py_ssize_t n) noexcept nogil:
    # xbar = gbar where |x| > b (b >= 0), else 0; w = -sign(x) xbar, the b
    # cotangent per pixel.  One comparison per select: GCC 12 does not
    # if-convert two comparisons of x (x > b, x < -b) and leaves the loop
    # scalar.  NaN: |NaN| > b is false, so xbar = 0.
    cdef Py_ssize_t i
    cdef floating v, g, a
    cdef floating zero = 0
    for i in range(n):
        v = x[i]
        g = gbar[i]  # loaded unconditionally, so the select if-converts
        a = g if (v if v >= zero else -v) > b else zero
        xbar[i] = a
        w[i] = a if v < zero else -a


cdef void _fu_span(const floating* Y, const floating* Z, const floating* K, floating z,
                   floating* G, Py_ssize_t n) noexcept nogil:
    # G = (zeta conj(K) Y + Z) / (zeta |K|^2 + 1)
    cdef Py_ssize_t i
    cdef floating kr, ki, d, yr, yi
    cdef floating one = 1
    for i in range(n):
        kr = K[2 * i]
        ki = K[2 * i + 1]
        d = z * (kr * kr + ki * ki) + one
        yr = Y[2 * i]
        yi = Y[2 * i + 1]
        G[2 * i] = (z * (kr * yr + ki * yi) + Z[2 * i]) / d
        G[2 * i + 1] = (z * (kr * yi - ki * yr) + Z[2 * i + 1]) / d


cdef void _fu_vjp_span(const floating* Y, const floating* G, const floating* Gb,
                       const floating* K, floating z, const floating* m,
                       floating* Ybar, floating* Zbar, double* kacc, double* w,
                       Py_ssize_t nrows, Py_ssize_t F2) noexcept nogil:
    # Ybar, Zbar; kacc += this channel's share of Kbar (float64, channel
    # order); w = its zeta cotangent per frequency.  Whole rows, so that the
    # column weight m[j] lines up.  One reciprocal of D instead of four
    # divisions.  The loop needs 12 run-time alias checks, more than GCC's
    # default 10 (meson.build raises the limit; split in two loops it
    # vectorised without, but ran ~25 % slower).
    cdef Py_ssize_t r, j, i
    cdef floating kr, ki, d, gr, gi, br, bi, zr, zi, rr, ri, tr, ti, ar, ai
    cdef floating one = 1
    for r in range(nrows):
        for j in range(F2):
            i = r * F2 + j
            kr = K[2 * i]
            ki = K[2 * i + 1]
            d = one / (z * (kr * kr + ki * ki) + one)  # 1 / D
            gr = G[2 * i]
            gi = G[2 * i + 1]
            br = Gb[2 * i]
            bi = Gb[2 * i + 1]
            # Zbar = Gbar / D ; Ybar = zeta K Zbar
            zr = br * d
            zi = bi * d
            Zbar[2 * i] = zr
            Zbar[2 * i + 1] = zi
            Ybar[2 * i] = z * (kr * zr - ki * zi)
            Ybar[2 * i + 1] = z * (kr * zi + ki * zr)
            # residual R = Y - G K
            rr = Y[2 * i] - (gr * kr - gi * ki)
            ri = Y[2 * i + 1] - (gr * ki + gi * kr)
            # a = Zbar conj(G) K
            tr = zr * gr + zi * gi
            ti = zi * gr - zr * gi
            ar = tr * kr - ti * ki
            ai = tr * ki + ti * kr
            # t = conj(Gbar) R / D ; Kbar += zeta (t - a)
            tr = (br * rr + bi * ri) * d
            ti = (br * ri - bi * rr) * d
            kacc[2 * i] += z * tr - z * ar
            kacc[2 * i + 1] += z * ti - z * ai
            # Re(conj(Gbar) conj(K) R / D) = Re(conj(K) t)
            w[i] = m[j] * (kr * tr + ki * ti)


cdef void _cross_span(const floating* Z, const floating* Y, floating* cross, floating* sq,
                      Py_ssize_t n) noexcept nogil:
    # cross += conj(Z) Y ; sq += |Z|^2 (working precision, channel order)
    cdef Py_ssize_t i
    cdef floating zr, zi, yr, yi
    for i in range(n):
        zr = Z[2 * i]
        zi = Z[2 * i + 1]
        yr = Y[2 * i]
        yi = Y[2 * i + 1]
        cross[2 * i] = cross[2 * i] + (zr * yr + zi * yi)
        cross[2 * i + 1] = cross[2 * i + 1] + (zr * yi - zi * yr)
        sq[i] = sq[i] + (zr * zr + zi * zi)


cdef void _kls_out_span(floating* Kt, const floating* sq, const floating* P, floating rh,
                        Py_ssize_t n) noexcept nogil:
    # Kt holds the cross sums on entry: Kt = (rho cross + P) / (rho sq + 1)
    cdef Py_ssize_t i
    cdef floating den
    cdef floating one = 1
    for i in range(n):
        den = rh * sq[i] + one
        Kt[2 * i] = (rh * Kt[2 * i] + P[2 * i]) / den
        Kt[2 * i + 1] = (rh * Kt[2 * i + 1] + P[2 * i + 1]) / den


cdef void _klsvjp_mid_span(const floating* cross, const floating* sq, const floating* Kt,
                           const floating* Ktbar, floating rh, const floating* m,
                           floating* Pbar, floating* tt, double* w,
                           Py_ssize_t nrows, Py_ssize_t F2) noexcept nogil:
    # per frequency: Pbar = Ktbar / den, tt = -rho Pbar conj(Kt) and the rho
    # cotangent w = m Re(conj(Ktbar) (cross - Kt sq)) / den
    cdef Py_ssize_t r, j, i
    cdef floating den, s, kr, ki, br, bi, pr, pi
    cdef floating one = 1
    for r in range(nrows):
        for j in range(F2):
            i = r * F2 + j
            s = sq[i]
            den = rh * s + one
            kr = Kt[2 * i]
            ki = Kt[2 * i + 1]
            br = Ktbar[2 * i]
            bi = Ktbar[2 * i + 1]
            pr = br / den
            pi = bi / den
            Pbar[2 * i] = pr
            Pbar[2 * i + 1] = pi
            tt[2 * i] = -rh * (pr * kr + pi * ki)
            tt[2 * i + 1] = -rh * (pi * kr - pr * ki)
            w[i] = m[j] * (br * (cross[2 * i] - kr * s) + bi * (cross[2 * i + 1] - ki * s)) / den


cdef void _klsvjp_out_span(const floating* Z, const floating* Y, const floating* Kt,
                           const floating* pb, const floating* tt, floating rh,
                           floating* Zbar, floating* Ybar, Py_ssize_t n) noexcept nogil:
    # Ybar = rho Z Pbar ; Zbar = tt Z + rho conj(Pbar) (Y - Kt Z)
    cdef Py_ssize_t i
    cdef floating zr, zi, pr, pi, kr, ki, yr, yi, tr, ti
    for i in range(n):
        zr = Z[2 * i]
        zi = Z[2 * i + 1]
        pr = pb[2 * i]
        pi = pb[2 * i + 1]
        kr = Kt[2 * i]
        ki = Kt[2 * i + 1]
        tr = tt[2 * i]
        ti = tt[2 * i + 1]
        Ybar[2 * i] = rh * (zr * pr - zi * pi)
        Ybar[2 * i + 1] = rh * (zr * pi + zi * pr)
        yr = Y[2 * i] - (kr * zr - ki * zi)
        yi = Y[2 * i + 1] - (kr * zi + ki * zr)
        Zbar[2 * i] = (tr * zr - ti * zi) + rh * (pr * yr + pi * yi)
        Zbar[2 * i + 1] = (tr * zi + ti * zr) + rh * (pr * yi - pi * yr)


cdef void _recon_init_span(const floating* K, const floating* Y0, floating* X, floating* den,
                           Py_ssize_t n) noexcept nogil:
    # X = conj(K) Y0 ; den = |K|^2
    cdef Py_ssize_t i
    cdef floating kr, ki
    for i in range(n):
        kr = K[2 * i]
        ki = K[2 * i + 1]
        X[2 * i] = kr * Y0[2 * i] + ki * Y0[2 * i + 1]
        X[2 * i + 1] = kr * Y0[2 * i + 1] - ki * Y0[2 * i]
        den[i] = kr * kr + ki * ki


cdef void _recon_acc_span(const floating* W, const floating* G, floating e, floating* X,
                          floating* den, Py_ssize_t n) noexcept nogil:
    # X += eta conj(W) G ; den += eta |W|^2
    cdef Py_ssize_t i
    cdef floating wr, wi, gr, gi
    for i in range(n):
        wr = W[2 * i]
        wi = W[2 * i + 1]
        gr = G[2 * i]
        gi = G[2 * i + 1]
        X[2 * i] = X[2 * i] + e * (wr * gr + wi * gi)
        X[2 * i + 1] = X[2 * i + 1] + e * (wr * gi - wi * gr)
        den[i] = den[i] + e * (wr * wr + wi * wi)


cdef void _div_span(floating* X, const floating* den, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        X[2 * i] = X[2 * i] / den[i]
        X[2 * i + 1] = X[2 * i + 1] / den[i]


cdef inline Py_ssize_t _stop(Py_ssize_t t, Py_ssize_t tile, Py_ssize_t n) noexcept nogil:
    return t * tile + tile if t * tile + tile < n else n


# ---------------------------------------------------------------------------
# soft shrinkage
# ---------------------------------------------------------------------------

def _soft_shrink(const floating[:, ::1] x, const floating[::1] b, floating[:, ::1] out):
    # tiles of the pixel index in parallel, channels inside
    cdef Py_ssize_t C = x.shape[0], N = x.shape[1], nt = (N + TILE - 1) // TILE, t, c, s
    if C == 0 or N == 0:
        return
    for t in prange(nt, nogil=True, schedule="static"):
        s = t * TILE
        for c in range(C):
            _shrink_span(&x[c, s], b[c], &out[c, s], _stop(t, TILE, N) - s)


def _soft_shrink_vjp(const floating[:, ::1] x, const floating[::1] b, const floating[:, ::1] gbar,
                     floating[:, ::1] xbar, double[:, ::1] partial):
    # partial: (tiles, C), one b-cotangent sum per tile and channel
    cdef Py_ssize_t C = x.shape[0], N = x.shape[1], nt = partial.shape[0], t, c, s, n
    cdef double* w
    cdef int nfail = 0
    if C == 0 or N == 0:
        return
    with nogil, parallel():
        w = <double*>malloc(TILE * sizeof(double))
        for t in prange(nt, schedule="static"):
            if w == NULL:
                nfail += 1
            else:
                s = t * TILE
                n = _stop(t, TILE, N) - s
                for c in range(C):
                    _shrink_vjp_span(&x[c, s], b[c], &gbar[c, s], &xbar[c, s], w, n)
                    partial[t, c] = _sum_span(w, n)
        free(w)
    if nfail:
        raise MemoryError()


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
    partial = np.zeros(((N + TILE - 1) // TILE, C), dtype=np.float64)
    _soft_shrink_vjp(_rview(x, C), b, _rview(gbar, C), _rview(xbar, C), partial)
    return xbar, partial.sum(axis=0).astype(x.dtype)


# ---------------------------------------------------------------------------
# feature update
# ---------------------------------------------------------------------------

def _feature_update(const floating[:, ::1] Y, const floating[:, ::1] Z, const floating[::1] K,
                    const floating[::1] zeta, floating[:, ::1] G):
    cdef Py_ssize_t C = Y.shape[0], N = K.shape[0] // 2, nt = (N + TILE - 1) // TILE, t, c, s
    if C == 0 or N == 0:
        return
    for t in prange(nt, nogil=True, schedule="static"):
        s = t * TILE
        for c in range(C):
            _fu_span(&Y[c, 2 * s], &Z[c, 2 * s], &K[2 * s], zeta[c], &G[c, 2 * s],
                     _stop(t, TILE, N) - s)


def feature_update(Y, Z, K, zeta):
    """Feature-domain least squares ``(zeta conj(K) Y + Z) / (zeta |K|^2 + 1)``.

    See :func:`hqsdeblur._kernels_ref.feature_update`.
    """
    Y, Z, K, zeta = _prep_feature(Y, Z, K, zeta)
    C = Y.shape[0]
    G = np.empty_like(Y)
    _feature_update(_rview(Y, C), _rview(Z, C), _rview(K, 1)[0], zeta, _rview(G, C))
    return G


def _feature_update_vjp(const floating[:, ::1] Y, const floating[::1] K, const floating[::1] zeta,
                        const floating[:, ::1] G, const floating[:, ::1] Gbar,
                        const floating[::1] m, floating[:, ::1] Ybar, floating[:, ::1] Zbar,
                        floating[::1] Kbar, double[:, ::1] partial, Py_ssize_t tile):
    # tiles of `tile` frequencies (whole rows); partial: (tiles, C)
    cdef Py_ssize_t C = Y.shape[0], N = K.shape[0] // 2, F2 = m.shape[0], nt = partial.shape[0]
    cdef Py_ssize_t t, c, s, n, i
    cdef double* kacc
    cdef double* w
    cdef int nfail = 0
    if N == 0 or F2 == 0:
        return
    with nogil, parallel():
        kacc = <double*>malloc(3 * tile * sizeof(double))
        w = kacc + 2 * tile
        for t in prange(nt, schedule="static"):
            if kacc == NULL:
                nfail += 1
            else:
                s = t * tile
                n = _stop(t, tile, N) - s
                for i in range(2 * n):
                    kacc[i] = 0
                for c in range(C):
                    _fu_vjp_span(&Y[c, 2 * s], &G[c, 2 * s], &Gbar[c, 2 * s], &K[2 * s], zeta[c],
                                 &m[0], &Ybar[c, 2 * s], &Zbar[c, 2 * s], kacc, w, n // F2, F2)
                    partial[t, c] = _sum_span(w, n)
                for i in range(2 * n):
                    Kbar[2 * s + i] = <floating>kacc[i]
        free(kacc)
    if nfail:
        raise MemoryError()


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
    m = half_spectrum_weights(W, dtype=zeta.dtype)
    Ybar = np.empty_like(Y)
    Zbar = np.empty_like(Y)
    Kbar = np.empty_like(K)
    tile, nt = _row_tile(*K.shape)
    partial = np.zeros((nt, C), dtype=np.float64)
    _feature_update_vjp(_rview(Y, C), _rview(K, 1)[0], zeta, _rview(G, C), _rview(Gbar, C), m,
                        _rview(Ybar, C), _rview(Zbar, C), _rview(Kbar, 1)[0], partial, tile)
    zeta_bar = (partial.sum(axis=0) / (H * W)).astype(zeta.dtype)
    return Ybar, Zbar, Kbar, zeta_bar


# ---------------------------------------------------------------------------
# kernel least squares
# ---------------------------------------------------------------------------

def _kernel_ls(const floating[:, ::1] Z, const floating[:, ::1] Y, const floating[::1] P,
               double rho, floating[::1] Kt):
    # the channel sums accumulate in Kt itself (cross) and a per-thread sq
    cdef Py_ssize_t C = Z.shape[0], N = P.shape[0] // 2, nt = (N + TILE - 1) // TILE
    cdef Py_ssize_t t, c, s, n, i
    cdef floating rh = <floating>rho
    cdef floating* sq
    cdef int nfail = 0
    if N == 0:
        return
    with nogil, parallel():
        sq = <floating*>malloc(TILE * sizeof(floating))
        for t in prange(nt, schedule="static"):
            if sq == NULL:
                nfail += 1
            else:
                s = t * TILE
                n = _stop(t, TILE, N) - s
                for i in range(n):
                    sq[i] = 0
                    Kt[2 * (s + i)] = 0
                    Kt[2 * (s + i) + 1] = 0
                for c in range(C):
                    _cross_span(&Z[c, 2 * s], &Y[c, 2 * s], &Kt[2 * s], sq, n)
                _kls_out_span(&Kt[2 * s], sq, &P[2 * s], rh, n)
        free(sq)
    if nfail:
        raise MemoryError()


def kernel_ls(Z, Y, P, rho):
    """Kernel least squares ``(rho sum_c conj(Z_c) Y_c + P) / (rho sum_c |Z_c|^2 + 1)``.

    See :func:`hqsdeblur._kernels_ref.kernel_ls`.
    """
    Z, Y, P, rho = _prep_kernel(Z, Y, P, rho)  # P=None -> zeros
    C = Z.shape[0]
    Kt = np.empty_like(P)
    _kernel_ls(_rview(Z, C), _rview(Y, C), _rview(P, 1)[0], rho, _rview(Kt, 1)[0])
    return Kt


def _kernel_ls_vjp(const floating[:, ::1] Z, const floating[:, ::1] Y, double rho,
                   const floating[::1] Kt, const floating[::1] Ktbar, const floating[::1] m,
                   floating[:, ::1] Zbar, floating[:, ::1] Ybar, floating[::1] Pbar,
                   double[::1] partial, Py_ssize_t tile):
    # tiles of `tile` frequencies (whole rows); partial: one rho sum per tile
    cdef Py_ssize_t C = Z.shape[0], N = Kt.shape[0] // 2, F2 = m.shape[0], nt = partial.shape[0]
    cdef Py_ssize_t t, c, s, n, i
    cdef floating rh = <floating>rho
    cdef floating* cross
    cdef floating* sq
    cdef floating* tt
    cdef double* w
    cdef int nfail = 0
    if N == 0 or F2 == 0:
        return
    with nogil, parallel():
        # w first: the double block stays aligned for any `floating`
        w = <double*>malloc(tile * sizeof(double) + 5 * tile * sizeof(floating))
        cross = <floating*>(w + tile)
        sq = cross + 2 * tile
        tt = sq + tile
        for t in prange(nt, schedule="static"):
            if w == NULL:
                nfail += 1
            else:
                s = t * tile
                n = _stop(t, tile, N) - s
                for i in range(n):
                    sq[i] = 0
                    cross[2 * i] = 0
                    cross[2 * i + 1] = 0
                for c in range(C):
                    _cross_span(&Z[c, 2 * s], &Y[c, 2 * s], cross, sq, n)
                _klsvjp_mid_span(cross, sq, &Kt[2 * s], &Ktbar[2 * s], rh, &m[0], &Pbar[2 * s], tt, w,
                                 n // F2, F2)
                partial[t] = _sum_span(w, n)
                for c in range(C):
                    _klsvjp_out_span(&Z[c, 2 * s], &Y[c, 2 * s], &Kt[2 * s], &Pbar[2 * s], tt, rh,
                                     &Zbar[c, 2 * s], &Ybar[c, 2 * s], n)
        free(w)
    if nfail:
        raise MemoryError()


def kernel_ls_vjp(Z, Y, P, rho, Kt, Ktbar, full_shape):
    """Vector-Jacobian product of :func:`kernel_ls`.

    See :func:`hqsdeblur._kernels_ref.kernel_ls_vjp`.  `P` may be None (the
    ridge prior): it enters only the forward map, not its derivative.
    """
    Z, Y, P, rho = _prep_kernel(Z, Y, P, rho)
    Kt = _as(Kt, Z.dtype, 2, "Kt")
    Ktbar = _as(Ktbar, Z.dtype, 2, "Ktbar")
    _check_same(Kt.shape, Z.shape[1:], "Kt")
    _check_same(Ktbar.shape, Z.shape[1:], "Ktbar")
    H, W = _check_full_shape(full_shape, *Z.shape[1:])
    C = Z.shape[0]
    rdt = np.float32 if Z.dtype == np.complex64 else np.float64
    m = half_spectrum_weights(W, dtype=rdt)
    Zbar = np.empty_like(Z)
    Ybar = np.empty_like(Z)
    Pbar = np.empty_like(Kt)
    tile, nt = _row_tile(*Kt.shape)
    partial = np.zeros(nt, dtype=np.float64)
    _kernel_ls_vjp(_rview(Z, C), _rview(Y, C), rho, _rview(Kt, 1)[0], _rview(Ktbar, 1)[0], m,
                   _rview(Zbar, C), _rview(Ybar, C), _rview(Pbar, 1)[0], partial, tile)
    return Zbar, Ybar, Pbar, float(partial.sum()) / (H * W)


# ---------------------------------------------------------------------------
# gray image reconstruction
# ---------------------------------------------------------------------------

def _reconstruct_gray(const floating[::1] Y0, const floating[::1] K, const floating[:, ::1] W,
                      const floating[:, ::1] G, const floating[::1] eta, floating[::1] X):
    # numerator accumulated in X itself, the denominator in a per-thread buffer
    cdef Py_ssize_t C = W.shape[0], N = K.shape[0] // 2, nt = (N + TILE - 1) // TILE, t, c, s, n
    cdef floating* den
    cdef int nfail = 0
    if N == 0:
        return
    with nogil, parallel():
        den = <floating*>malloc(TILE * sizeof(floating))
        for t in prange(nt, schedule="static"):
            if den == NULL:
                nfail += 1
            else:
                s = t * TILE
                n = _stop(t, TILE, N) - s
                _recon_init_span(&K[2 * s], &Y0[2 * s], &X[2 * s], den, n)
                for c in range(C):
                    _recon_acc_span(&W[c, 2 * s], &G[c, 2 * s], eta[c], &X[2 * s], den, n)
                _div_span(&X[2 * s], den, n)
        free(den)
    if nfail:
        raise MemoryError()


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
