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

import numpy as np
import scipy.fft

from ..backend import backend_for

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
    "spectral_inner",
    "half_weights",
]


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
        which is smaller and as fast.

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
    big = roll(pad_post(k, shape), (-centre[0], -centre[1]))
    return be.rfft2(big)


def psf2otf_adjoint(K_bar, kshape, shape, *, centre=None):
    """Kernel cotangent from the spectral cotangent of :func:`psf2otf`."""
    if centre is None:
        centre = (kshape[-2] // 2, kshape[-1] // 2)
    be = backend_for(K_bar)
    big = be.irfft2(K_bar, s=tuple(shape))
    return pad_post_adjoint(roll(big, centre), kshape[-2:])


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
