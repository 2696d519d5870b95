"""Shrinkage: soft thresholding ``z = S_b(g)`` (TV / l1) and hard thresholding
(the L0 variant), with the VJP of the soft one.

Shapes: ``x`` is ``(C, H, W)``, the threshold ``b`` is ``(C,)`` (one per
channel, >= 0).
"""

from __future__ import annotations

from ..backend import backend_for

__all__ = ["soft_shrink", "soft_shrink_vjp", "hard_shrink", "hard_shrink_vjp"]


def soft_shrink_ref(x, b):
    xp = backend_for(x).xp
    b = b.reshape((-1,) + (1,) * (x.ndim - 1))
    return xp.sign(x) * xp.maximum(xp.abs(x) - b, 0)


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
