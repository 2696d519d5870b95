"""FFT grid, padding, embedding, circular shifts and kernel <-> transfer function.

Every map here is linear and comes with its adjoint. Conventions used by all
steps:

* Spectra are half spectra of real arrays on an FFT grid ``S = (Hf, Wf)``
  (``rfft2``: unnormalised forward, 1/N inverse, N = Hf*Wf).
* **Cotangents of spectra** are carried as the spectrum of the real spatial
  cotangent: if ``a`` is real with spectrum ``A = F(a)`` and ``abar`` is the
  gradient of a loss with respect to ``a``, the spectral cotangent is
  ``Abar = F(abar)``. Then ``dL = <abar, da> = (1/N) Re sum_full conj(Abar) dA``
  and the adjoint of a Fourier multiplier ``M`` is multiplication by
  ``conj(M)``; ``rfft2`` and ``irfft2`` need no adjoint of their own.
* A spectrum that depends on another as ``dX = A conj(dW) + B dW`` sends the
  cotangent ``Wbar = Xbar conj(B) + conj(Xbar) A`` back (Wirtinger calculus).
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import scipy.fft

from .. import _fftw
from ..backend import _serial_kernels_here, backend_for

__all__ = [
    "fft_shape",
    "pad_post",
    "pad_post_adjoint",
    "embed",
    "embed_adjoint",
    "roll",
    "roll_adjoint",
    "psf2otf",
    "psf2otf_adjoint",
    "otf2psf",
    "rfft2_adjoint",
    "rfft2_stack",
    "irfft2_stack",
    "spectral_inner",
    "half_weights",
]


@functools.lru_cache(maxsize=4096)
def fast_len(n):
    """The smallest 7-smooth integer ``>= n`` (only factors 2, 3, 5, 7).

    pocketfft transforms 7-smooth lengths as fast per point as 5-smooth ones
    (within +-10 % over 300..1100 here), and the nearest 7-smooth size is
    often smaller than ``scipy.fft.next_fast_len(n, real=True)`` (5-smooth):
    336 instead of 360 for 334, the grid of a 290-row image and a 45-tap
    kernel, whose network forward then runs ~10 % faster (the grid of the
    unrolled network's 'smooth' border).

    Examples
    --------
    >>> fast_len(334), fast_len(494), fast_len(1)
    (336, 500, 1)
    """
    m = max(1, int(n))
    while True:
        k = m
        for p in (2, 3, 5, 7):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def fft_shape(shape, *, pad=0, multiple=None):
    """FFT grid for an array of `shape` padded by `pad` on every side.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)``.
    pad : int
        Padding added on each side (e.g. ``kernel_size - 1``).
    multiple : int, optional
        Round each side up to a multiple of this (the published network uses
        64). Default: the next 5-smooth size (``scipy.fft.next_fast_len``),
        which is smaller and as fast. (:func:`fast_len`, 7-smooth, gained
        nothing for the classical mode on Levin's images, 1.72-1.78 s either
        way, and would move its published scores: it is kept for the
        unrolled network's 'smooth' border.)

    Examples
    --------
    >>> fft_shape((290, 450), pad=44, multiple=64)
    (384, 576)
    """
    out = []
    for n in shape[-2:]:
        m = n + 2 * pad
        if multiple:
            m = -(-m // multiple) * multiple
        else:
            m = scipy.fft.next_fast_len(m, real=True)
        out.append(int(m))
    return tuple(out)


def pad_post(a, shape):
    """Append zeros at the bottom and right of the last two axes up to `shape`."""
    return embed(a, shape, (0, 0))


def pad_post_adjoint(a, shape):
    """Adjoint of :func:`pad_post`: the top-left crop to `shape`."""
    return embed_adjoint(a, shape, (0, 0))


def embed(a, shape, offset):
    """Place `a` (..., h, w) at `offset` inside zeros of shape (..., *shape)."""
    xp = backend_for(a).xp
    h, w = a.shape[-2:]
    oy, ox = offset
    out = xp.zeros(a.shape[:-2] + tuple(shape), dtype=a.dtype)
    out[..., oy : oy + h, ox : ox + w] = a
    return out


def embed_adjoint(b, shape, offset):
    """Adjoint of :func:`embed`: the crop of size `shape` at `offset`."""
    oy, ox = offset
    return b[..., oy : oy + shape[0], ox : ox + shape[1]]


def roll(a, shift):
    """Circular shift of the last two axes: ``out[i, j] = a[i - sy, j - sx]``."""
    xp = backend_for(a).xp
    return xp.roll(a, tuple(shift), axis=(-2, -1))


def roll_adjoint(a, shift):
    """Adjoint (and inverse) of :func:`roll`."""
    return roll(a, (-shift[0], -shift[1]))


def psf2otf(k, shape, *, centre=None):
    """Transfer function (half spectrum) of kernel `k` on an FFT grid.

    The kernel is post-padded to `shape` and circularly shifted so that its
    pixel `centre` lands at the origin; ``centre=(0, 0)`` keeps it at the
    top-left corner, as the published network does. Default centre:
    ``(kh // 2, kw // 2)``.
    """
    if centre is None:
        centre = (k.shape[-2] // 2, k.shape[-1] // 2)
    be = backend_for(k)
    if be.xp is np and _fits(k.shape[-2:], shape, centre):
        return _psf2otf_small(k, tuple(shape), centre)
    big = roll(pad_post(k, shape), (-centre[0], -centre[1]))
    return be.rfft2(big)


def psf2otf_adjoint(K_bar, kshape, shape, *, centre=None):
    """Kernel cotangent from the spectral cotangent of :func:`psf2otf`."""
    if centre is None:
        centre = (kshape[-2] // 2, kshape[-1] // 2)
    be = backend_for(K_bar)
    if be.xp is np and _fits(kshape[-2:], shape, centre):
        return _psf2otf_adjoint_small(K_bar, tuple(kshape[-2:]), tuple(shape), centre)
    big = be.irfft2(K_bar, s=tuple(shape))
    return pad_post_adjoint(roll(big, centre), kshape[-2:])


# Small kernels on host arrays: the rows of the kernel by a real FFT, the
# columns by a DFT matrix product (only the kernel's rows are non-zero, or
# only they survive the crop). Same values as rfft2 / irfft2 of the padded,
# rolled kernel up to float rounding, at ~1/4 (forward) and ~1/3 (adjoint)
# of the cost of the full transforms on a 360 x 500 grid with 3..45 taps.


@functools.lru_cache(maxsize=64)
def _column_dft(n, taps, c, adjoint, cdt):
    """``exp(-2 pi i u (a - c) / n)`` as an (n, taps) matrix (u < n, a <
    taps), or for the adjoint its conjugate transpose over n, (taps, n);
    computed in float64, then cast to `cdt`."""
    u = np.arange(n, dtype=np.float64)[:, None]
    a = (np.arange(taps, dtype=np.float64) - c)[None, :]
    F = np.exp(-2j * np.pi * ((u * a) % n) / n)
    if adjoint:
        F = F.conj().T / n
    F = F.astype(cdt)
    F.setflags(write=False)
    return F


def _fits(kshape, shape, centre):
    """Whether a window with its `centre` inside fits the grid (the case the
    small-kernel transforms handle)."""
    return all(0 <= c <= k <= n for k, n, c in zip(kshape, shape[-2:], centre))


def _wrapped(n, size, c):
    """Where the `n` taps of a window whose tap `c` sits at the origin land on
    a circular axis of `size`: pairs of slices (window part, grid part)."""
    # taps c..n-1 go to 0..n-1-c, taps 0..c-1 to size-c..size-1
    return ((slice(c, n), slice(0, n - c)), (slice(0, c), slice(size - c, size)))


def _matmul_stack(F, R):
    """``F @ R`` over the leading axes of `R`, its slices split over the FFT
    threads: inside hqsdeblur's entry points BLAS runs on one thread
    (:func:`hqsdeblur.backend.blas_single_thread`), and the 16 filters of a
    network layer are 16 independent products."""
    from ..backend import _workers

    wk = _workers()
    if R.ndim < 3 or wk < 2:
        return np.matmul(F, R)
    flat = R.reshape((-1,) + R.shape[-2:])
    out = np.empty(flat.shape[:1] + (F.shape[0], R.shape[-1]), np.result_type(F, R))
    _over_slices(flat.shape[0], wk, lambda i, w: np.matmul(F, flat[i], out=out[i]))
    return out.reshape(R.shape[:-2] + out.shape[-2:])


def _psf2otf_small(k, shape, centre):
    from ..backend import _workers

    H, W = shape
    kh, kw = k.shape[-2:]
    rdt = np.result_type(k.dtype, np.float32)
    cdt = np.result_type(rdt, np.complex64)
    rows = np.zeros(k.shape[:-1] + (W,), rdt)
    for src, dst in _wrapped(kw, W, centre[1]):
        rows[..., dst] = k[..., src]
    R = scipy.fft.rfft(rows, axis=-1, workers=_workers())  # (..., kh, F2)
    return _matmul_stack(_column_dft(H, kh, centre[0], False, np.dtype(cdt)), R)


def _psf2otf_adjoint_small(K_bar, kshape, shape, centre):
    from ..backend import _workers

    H, W = shape
    kh, kw = kshape
    cdt = np.result_type(K_bar.dtype, np.complex64)
    rows = _matmul_stack(_column_dft(H, kh, centre[0], True, np.dtype(cdt)), K_bar)  # (..., kh, F2)
    r = scipy.fft.irfft(rows, n=W, axis=-1, workers=_workers(), overwrite_x=True)
    out = np.empty(r.shape[:-1] + (kw,), r.dtype)
    for src, dst in _wrapped(kw, W, centre[1]):
        out[..., src] = r[..., dst]
    return out


def rfft2_stack(a):
    """``rfft2`` over the last two axes of a stack of real arrays.

    Host arrays: the rows of the whole stack, then the columns one 2-D
    array at a time, in place (a batched ``scipy.fft.rfft2`` walks the whole
    stack per axis with a temporary). Same transforms as ``rfft2``; other
    backends use their batched transform.
    """
    be = backend_for(a)
    if be.xp is not np or a.ndim <= 2:
        return be.rfft2(a)
    from ..backend import _workers

    wk = _workers()
    if a.dtype.char in "fd" and _fftw.enabled():  # whole 2-D transforms, one per slice and thread
        flat = a.reshape((-1,) + a.shape[-2:])
        R = _fftw.empty_aligned(flat.shape[:-1] + (a.shape[-1] // 2 + 1,), np.result_type(a.dtype, np.complex64))
        _over_slices(flat.shape[0], wk, lambda i, w: _rfft2_into(R[i], flat[i], w))
        return R.reshape(a.shape[:-1] + R.shape[-1:])
    R = scipy.fft.rfft(a, axis=-1, workers=wk)
    flat = R.reshape((-1,) + R.shape[-2:])
    _over_slices(flat.shape[0], wk, lambda i, w: _fft_columns_inplace(flat[i], w))
    return R


def _over_slices(n, workers, fn):
    """``fn(i, fft_workers)`` for i in range(n): with several workers the
    slices are split over threads, each running one-worker FFTs (pocketfft
    releases the GIL; one 2-D slice gains little from its own threads)."""
    inside = threading.current_thread().name.startswith(_POOL_PREFIX)
    if workers <= 1 or n <= 1 or inside:
        # inside a pool thread: serially, never waiting on the pool itself
        w = 1 if inside else workers
        for i in range(n):
            fn(i, w)
        return
    nt = _n_groups(n, workers)

    def group(g):
        _serial_kernels_here()  # the threads already use the cores
        for i in range(g, n, nt):
            fn(i, 1)

    list(_pool(nt).map(group, range(nt)))


def _n_groups(n, workers):
    # _over_slices runs slices i, i + nt, i + 2 nt, ... on one thread
    return max(1, min(workers, n))


def _slice_buffers(n, workers, shape, dtype):
    """One scratch array per thread of ``_over_slices(n, workers, fn)``:
    slice ``i`` may use ``bufs[i % len(bufs)]`` (only its thread does).
    Aligned for FFTW, which would otherwise copy them once more."""
    return [_fftw.empty_aligned(shape, dtype) for _ in range(_n_groups(n, workers))]


_POOLS = {}
_POOL_PREFIX = "hqsdeblur-fft"


def _pool(n):
    if n not in _POOLS:
        from concurrent.futures import ThreadPoolExecutor

        _POOLS[n] = ThreadPoolExecutor(n, thread_name_prefix=_POOL_PREFIX)
    return _POOLS[n]


def irfft2_stack(A, s):
    """``irfft2(A, s)`` over the last two axes of a stack of half spectra
    (`A` is not modified).

    Host arrays: one 2-D spectrum at a time, copied into a buffer that stays
    in cache, the column transform in place, then the rows: ~1.6x faster
    than a batched ``scipy.fft.irfft2`` of (16, 360, 251) complex64 here
    (its multi-axis inverse walks the whole stack with a complex temporary).
    The 1/N factor is applied per axis: the result differs from ``irfft2``
    at round-off level.
    """
    be = backend_for(A)
    s = tuple(s)
    if be.xp is not np or A.shape[-2] != s[0]:
        return be.irfft2(A, s=s)
    from ..backend import _workers

    wk = _workers()
    flat = A.reshape((-1,) + A.shape[-2:])
    out = _fftw.empty_aligned(flat.shape[:1] + s, np.result_type(A.real.dtype, np.float32))
    bufs = _slice_buffers(flat.shape[0], wk, flat.shape[1:], np.result_type(A.dtype, np.complex64))

    def one(i, w):
        _irfft2_via(bufs[i % len(bufs)], flat[i], s[1], w, out=out[i])

    _over_slices(flat.shape[0], wk, one)
    return out.reshape(A.shape[:-2] + s)


# one 2-D array at a time (host arrays; the building blocks of the stacks)


def _fft_columns_inplace(R, workers):
    """Forward FFT along axis 0 of a C-contiguous complex 2-D array, in place."""
    o = scipy.fft.fft(R, axis=0, workers=workers, overwrite_x=True)
    if not np.may_share_memory(o, R):  # pocketfft chose not to work in place
        R[...] = o
    return R


def _rfft2_into(out, x, workers):
    """``out[...] = rfft2(x)`` for a 2-D `x` and a C-contiguous `out`
    (FFTW for a one-thread transform where it is enabled)."""
    if workers == 1 and x.dtype.char in "fd" and _fftw.enabled():
        return _fftw.rfft2(x, out)
    out[...] = scipy.fft.rfft(x, axis=-1, workers=workers)
    return _fft_columns_inplace(out, workers)


def _irfft2_via(buf, X, width, workers, out=None):
    """``irfft2(X, s=(X.shape[0], width))`` of a 2-D half spectrum through the
    complex buffer `buf` (same shape; overwritten, `X` is not); into `out`
    when given."""
    buf[...] = X
    return irfft2_destroy(buf, (X.shape[0], width), workers, out=out)


def irfft2_destroy(X, s, workers, out=None):
    """``scipy.fft.irfft2(X, s=s)`` of a C-contiguous 2-D half spectrum that
    may be destroyed; into `out` when given.

    One-thread transforms use FFTW where it is enabled. Otherwise the column
    transform runs in place, then the rows: ~35 % faster than ``irfft2`` on a
    360 x 251 half spectrum here (pocketfft's multi-axis inverse makes a
    complex temporary). The 1/N factor is applied per axis: the result
    differs from ``irfft2`` at round-off level.
    """
    if workers == 1 and X.dtype.char in "FD" and _fftw.enabled():
        return _fftw.irfft2(X, s, out)
    Xc = scipy.fft.ifft(X, axis=0, workers=workers, overwrite_x=True)  # in place (contiguous complex)
    r = scipy.fft.irfft(Xc, n=s[1], axis=1, workers=workers, overwrite_x=True)
    if out is None:
        return r
    out[...] = r
    return out


def otf2psf(K, kshape, shape, *, centre=None):
    """Kernel of size `kshape` from a transfer function (inverse of psf2otf
    where the kernel fits its window)."""
    return psf2otf_adjoint(K, kshape, shape, centre=centre)


def half_weights(shape, xp=np, dtype=np.float64):
    """Multiplicity of each half-spectrum column in the full spectrum.

    Column 0 (and column W/2 for even W) appears once, the others twice.
    """
    W = shape[-1]
    m = xp.full(W // 2 + 1, 2.0, dtype=dtype)
    m[0] = 1.0
    if W % 2 == 0:
        m[-1] = 1.0
    return m


def spectral_inner(A, B, shape, *, axis=None):
    """``(1/N) Re sum_full conj(A) B`` for half spectra of real arrays.

    Equals the spatial inner product ``<a, b>`` when ``A = F(a)``,
    ``B = F(b)``. `axis` selects the axes summed over (default all).
    """
    xp = backend_for(A).xp
    m = half_weights(shape, xp, dtype=A.real.dtype)
    prod = (A.conj() * B).real * m
    N = shape[-2] * shape[-1]
    if axis is None:
        return prod.sum() / N
    return prod.sum(axis=axis) / N


def rfft2_adjoint(G, shape):
    """Adjoint of ``rfft2`` seen as a real-linear map R^N -> C^(Hf x Wf/2+1)
    with the inner product ``Re sum conj(a) b`` over the half spectrum.

    Only needed when a half spectrum is treated as plain complex numbers; the
    steps use the spectral-cotangent convention instead (see module doc).
    """
    be = backend_for(G)
    m = half_weights(shape, be.xp, dtype=G.real.dtype)
    N = shape[-2] * shape[-1]
    return N * be.irfft2(G / m, s=tuple(shape))
