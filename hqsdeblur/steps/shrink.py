"""Shrinkage: soft thresholding ``z = S_b(g)`` (TV / l1) and hard thresholding
(the L0 variant), with the VJP of the soft one.

Shapes: ``x`` is ``(C, H, W)``, the threshold ``b`` is ``(C,)`` (one per
channel, >= 0).
"""

from __future__ import annotations

import numpy as np

from .. import _fftw
from ..backend import backend_for
from . import fourier

__all__ = [
    "soft_shrink",
    "soft_shrink_vjp",
    "l0_joint",
    "soft_shrink_spectrum",
    "soft_shrink_spectrum_vjp",
    "hard_shrink",
    "hard_shrink_vjp",
]


def soft_shrink_ref(x, b):
    # x - clip(x, -b, b) equals sign(x) * max(|x| - b, 0) (the same rounding;
    # +0 for -0 inside the dead zone) with two passes instead of four
    xp = backend_for(x).xp
    b = b.reshape((-1,) + (1,) * (x.ndim - 1))
    return x - xp.clip(x, -b, b)


def soft_shrink_vjp_ref(x, b, gbar):
    xp = backend_for(x).xp
    bb = b.reshape((-1,) + (1,) * (x.ndim - 1))
    active = xp.abs(x) > bb
    xbar = xp.where(active, gbar, 0)
    bbar = -(xbar * xp.sign(x)).reshape(x.shape[0], -1).sum(axis=1)
    return xbar, bbar


def soft_shrink(x, b):
    """Soft threshold per channel: ``sign(x) * max(|x| - b, 0)``.

    Examples
    --------
    >>> import numpy as np
    >>> soft_shrink(np.array([[[-2.0, 0.5, 3.0]]]), np.array([1.0]))
    array([[[-1.,  0.,  2.]]])
    """
    return backend_for(x).kernels["soft_shrink"](x, b)


def soft_shrink_vjp(x, b, gbar):
    """VJP of :func:`soft_shrink`: ``(xbar, bbar)``; ``bbar`` has shape (C,)."""
    return backend_for(x).kernels["soft_shrink_vjp"](x, b, gbar)


def soft_shrink_spectrum(G, b, shape):
    """The shrinkage between two Fourier-domain steps: ``g = irfft2(G)``,
    ``Z = rfft2(soft_shrink(g, b))`` on the grid `shape`; returns ``(g, Z)``.

    Host arrays go one channel at a time, so that ``g``'s shrunk copy never
    leaves the cache (~3 passes over the stack fewer than the three steps
    one after the other); the values are those of
    :func:`hqsdeblur.steps.fourier.irfft2_stack`, :func:`soft_shrink` and
    :func:`hqsdeblur.steps.fourier.rfft2_stack`.
    """
    be = backend_for(G)
    shape = tuple(shape)
    if be.xp is not np or G.ndim != 3:
        g = fourier.irfft2_stack(G, shape)
        return g, fourier.rfft2_stack(soft_shrink(g, b))
    from ..backend import _workers

    wk = _workers()
    C = G.shape[0]
    g = _fftw.empty_aligned((C,) + shape, np.result_type(G.real.dtype, np.float32))
    Z = _fftw.empty_aligned(G.shape, np.result_type(G.dtype, np.complex64))
    bufs = fourier._slice_buffers(C, wk, G.shape[1:], Z.dtype)

    def one(c, w):  # channels on threads (fourier._over_slices)
        fourier._irfft2_via(bufs[c % len(bufs)], G[c], shape[1], w, out=g[c])
        z = soft_shrink(g[c : c + 1], b[c : c + 1])
        fourier._rfft2_into(Z[c], z[0], w)

    fourier._over_slices(C, wk, one)
    return g, Z


def soft_shrink_spectrum_vjp(g, b, Zbar, shape, gbar=None):
    """VJP of :func:`soft_shrink_spectrum`: from the (spectral) cotangent of
    ``Z`` and optionally a cotangent `gbar` of ``g`` itself, the spectral
    cotangent of ``G`` and that of ``b``: ``(Gbar, bbar)``."""
    be = backend_for(g)
    shape = tuple(shape)
    if be.xp is not np or g.ndim != 3:
        gb, bbar = soft_shrink_vjp(g, b, fourier.irfft2_stack(Zbar, shape))
        if gbar is not None:
            gb = gb + gbar
        return fourier.rfft2_stack(gb), bbar
    from ..backend import _workers

    wk = _workers()
    C = g.shape[0]
    Gbar = _fftw.empty_aligned(Zbar.shape, np.result_type(Zbar.dtype, np.complex64))
    bufs = fourier._slice_buffers(C, wk, Zbar.shape[1:], Gbar.dtype)
    bbar = [None] * C

    def one(c, w):  # channels on threads (fourier._over_slices)
        zb = fourier._irfft2_via(bufs[c % len(bufs)], Zbar[c], shape[1], w)
        gb, bbar[c] = soft_shrink_vjp(g[c : c + 1], b[c : c + 1], zb[None])
        if gbar is not None:
            gb += gbar[c]
        fourier._rfft2_into(Gbar[c], gb[0], w)

    fourier._over_slices(C, wk, one)
    return Gbar, np.concatenate(bbar) if bbar else np.zeros(0, dtype=g.dtype)


def l0_joint(g, b):
    """The L0 proximal step joint over the channels (``tv``'s
    ``prior='l0'``): keep a pixel's features where ``sum_c g_c^2`` exceeds
    the mean of the thresholds `b` (``lambda / beta``), else 0.

    Returns ``(z, mask)``: the mask (H, W) is also the Jacobian (the kept set
    is piecewise constant in `g` and `b`).

    Examples
    --------
    >>> z, m = l0_joint(np.array([[[0.1, 1.0]], [[0.1, 0.0]]]), np.array([0.5, 0.5]))
    >>> z[:, 0].tolist(), m.tolist()
    ([[0.0, 1.0], [0.0, 0.0]], [[0.0, 1.0]])
    """
    mask = ((g * g).sum(axis=0) > b.mean()).astype(g.dtype)
    return g * mask, mask


def hard_shrink(x, t):
    """Keep ``x`` where ``x**2 > t`` (per channel threshold ``t``), else 0.

    The L0 prior's proximal step (Xu et al. 2013); ``t = lambda / beta``.
    """
    xp = backend_for(x).xp
    t = t.reshape((-1,) + (1,) * (x.ndim - 1))
    return xp.where(x * x > t, x, 0)


def hard_shrink_vjp(x, t, gbar):
    """VJP of :func:`hard_shrink` with respect to ``x`` (piecewise identity;
    the threshold has no derivative away from the jump)."""
    xp = backend_for(x).xp
    t = t.reshape((-1,) + (1,) * (x.ndim - 1))
    return xp.where(x * x > t, gbar, 0)
