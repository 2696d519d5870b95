"""Smooth periodic extension of an image onto an FFT grid (linear, with its
adjoint).

FFT solves treat the image as periodic; real photos are not, and a hard jump
between opposite borders rings through the whole result (the dark frame of
zero padding is the same effect). The gap between the image's bottom (right)
edge and its top (left) edge on the grid is filled with a cosine blend of the
two mirrored borders, so the extended image is continuous and smooth across
the wrap (in the spirit of Liu & Jia, ICIP 2008).
"""

from __future__ import annotations

import numpy as np

from ..backend import backend_for

__all__ = ["periodic_extend", "periodic_extend_adjoint"]


def _axis_plan(n, N, off):
    """Gather plan for one axis: grid position -> two source indices, weights."""
    gap = N - n
    src1 = np.zeros(N, dtype=np.intp)
    src2 = np.zeros(N, dtype=np.intp)
    w1 = np.zeros(N)
    w2 = np.zeros(N)
    pos = (off + np.arange(n)) % N
    src1[pos] = np.arange(n)
    w1[pos] = 1.0
    if gap > 0:
        s = np.arange(gap)
        where = (off + n + s) % N
        w = 0.5 * (1 + np.cos(np.pi * (s + 1) / (gap + 1)))  # 1 -> 0 across the gap
        below = np.clip(n - 2 - s, 0, n - 1)  # mirror of the far edge
        above = np.clip(1 + (gap - 1 - s), 0, n - 1)  # mirror of the near edge
        if n == 1:
            below = above = np.zeros_like(s)
        src1[where], w1[where] = below, w
        src2[where], w2[where] = above, 1 - w
    return src1, src2, w1, w2


def _apply(a, plan, axis, xp):
    s1, s2, w1, w2 = (xp.asarray(v) for v in plan)
    shape = [1] * a.ndim
    shape[axis] = -1
    w1 = w1.reshape(shape).astype(a.dtype)
    w2 = w2.reshape(shape).astype(a.dtype)
    return xp.take(a, s1, axis=axis) * w1 + xp.take(a, s2, axis=axis) * w2


def _index_add(xp, out, idx, vals):
    if xp is np:
        np.add.at(out, idx, vals)
    else:  # CuPy
        import cupyx

        cupyx.scatter_add(out, idx, vals)


def _apply_adjoint(b, plan, axis, n, xp):
    s1, s2, w1, w2 = plan
    bm = xp.moveaxis(b, axis, 0)
    out = xp.zeros((n,) + bm.shape[1:], dtype=b.dtype)
    shp = (-1,) + (1,) * (bm.ndim - 1)
    for s, w in ((s1, w1), (s2, w2)):
        _index_add(xp, out, xp.asarray(s), bm * xp.asarray(w, dtype=b.dtype).reshape(shp))
    return xp.moveaxis(out, 0, axis)


def periodic_extend(y, shape, offset):
    """Extend `y` (..., H, W) to the grid `shape` with its content at
    `offset`, filling the rest with a smooth periodic blend.

    Examples
    --------
    >>> import numpy as np
    >>> e = periodic_extend(np.arange(12.0).reshape(3, 4), (6, 8), (1, 2))
    >>> e.shape, bool(np.all(e[1:4, 2:6] == np.arange(12.0).reshape(3, 4)))
    ((6, 8), True)
    """
    xp = backend_for(y).xp
    H, W = y.shape[-2:]
    out = _apply(y, _axis_plan(H, shape[0], offset[0]), y.ndim - 2, xp)
    return _apply(out, _axis_plan(W, shape[1], offset[1]), y.ndim - 1, xp)


def periodic_extend_adjoint(e, image_shape, shape, offset):
    """Adjoint of :func:`periodic_extend`."""
    xp = backend_for(e).xp
    H, W = image_shape[-2:]
    out = _apply_adjoint(e, _axis_plan(W, shape[1], offset[1]), e.ndim - 1, W, xp)
    return _apply_adjoint(out, _axis_plan(H, shape[0], offset[0]), e.ndim - 2, H, xp)
