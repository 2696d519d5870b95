"""Filter banks: spatial correlation with reflect padding, cascades of small
filters, and their composition into effective filters.

Shapes: images/features ``(Cin, H, W)``, weights ``(Cout, Cin, kh, kw)``.
The bank computes a cross-correlation, 'same' size:
``out[o, i, j] = sum_{c, a, b} w[o, c, a, b] * xpad[c, i + a, j + b]``
with ``xpad`` padded by ``kh // 2`` (resp. ``kw // 2``) in *reflect* mode
(the edge pixel is not repeated, as ``np.pad(mode='reflect')``).
"""

from __future__ import annotations

from ..backend import backend_for

__all__ = [
    "pad_reflect",
    "pad_reflect_adjoint",
    "correlate_bank",
    "correlate_bank_vjp",
    "cascade",
    "cascade_vjp",
    "compose_cascade",
    "flip",
]


def pad_reflect(x, p):
    """Reflect-pad the last two axes by `p` = (py, px)."""
    xp = backend_for(x).xp
    py, px = p
    width = [(0, 0)] * (x.ndim - 2) + [(py, py), (px, px)]
    return xp.pad(x, width, mode="reflect")


def pad_reflect_adjoint(y, p):
    """Adjoint of :func:`pad_reflect`: fold the mirrored margins back."""
    py, px = p
    y = y.copy()
    if px:
        # Columns: padded column px - 1 - t mirrors interior column px + 1 + t.
        for t in range(px):
            y[..., :, px + 1 + t] += y[..., :, px - 1 - t]
            y[..., :, -px - 2 - t] += y[..., :, -px + t]
        y = y[..., :, px:-px]
    if py:
        for t in range(py):
            y[..., py + 1 + t, :] += y[..., py - 1 - t, :]
            y[..., -py - 2 - t, :] += y[..., -py + t, :]
        y = y[..., py:-py, :]
    return y


def correlate_bank(x, w):
    """Apply a filter bank: (Cin, H, W) -> (Cout, H, W), reflect padded."""
    xp = backend_for(x, w).xp
    _, cin, kh, kw = w.shape
    H, W = x.shape[-2:]
    xpad = pad_reflect(x, (kh // 2, kw // 2))
    out = xp.zeros((w.shape[0], H, W), dtype=x.dtype)
    # One small matrix product per tap: (Cout, Cin) @ (Cin, H*W) uses BLAS.
    for a in range(kh):
        for b in range(kw):
            patch = xpad[:, a : a + H, b : b + W].reshape(cin, H * W)
            out += (w[:, :, a, b] @ patch).reshape(-1, H, W)
    return out


def correlate_bank_vjp(x, w, ybar, *, need_x=True):
    """VJP of :func:`correlate_bank`: returns ``(xbar, wbar)``."""
    xp = backend_for(x, w).xp
    cout, cin, kh, kw = w.shape
    H, W = x.shape[-2:]
    xpad = pad_reflect(x, (kh // 2, kw // 2))
    yb = ybar.reshape(cout, H * W)
    wbar = xp.empty_like(w)
    xpad_bar = xp.zeros_like(xpad) if need_x else None
    for a in range(kh):
        for b in range(kw):
            patch = xpad[:, a : a + H, b : b + W].reshape(cin, H * W)
            wbar[:, :, a, b] = yb @ patch.T
            if need_x:
                xpad_bar[:, a : a + H, b : b + W] += (w[:, :, a, b].T @ yb).reshape(cin, H, W)
    xbar = pad_reflect_adjoint(xpad_bar, (kh // 2, kw // 2)) if need_x else None
    return xbar, wbar


def cascade(x, weights):
    """Run a cascade of filter banks with no nonlinearity between them.

    Returns the list of every layer's output ``[F_0, ..., F_{L-1}]``.
    """
    outs = []
    for w in weights:
        x = correlate_bank(x, w)
        outs.append(x)
    return outs


def cascade_vjp(x, weights, outs, bars):
    """VJP of :func:`cascade`. `bars[l]` is the cotangent of ``outs[l]``
    (``None`` for none). Returns ``(xbar, [wbar_0, ...])``."""
    wbars = [None] * len(weights)
    acc = None
    for l in range(len(weights) - 1, -1, -1):
        if bars[l] is not None:
            acc = bars[l] if acc is None else acc + bars[l]
        if acc is None:
            wbars[l] = backend_for(x).xp.zeros_like(weights[l])
            continue
        inp = x if l == 0 else outs[l - 1]
        acc, wbars[l] = correlate_bank_vjp(inp, weights[l], acc)
    return acc, wbars


def flip(w):
    """Rotate filters by 180 degrees (correlation <-> convolution)."""
    return w[..., ::-1, ::-1]


def compose_cascade(weights):
    """Effective correlation filters of every layer of a cascade.

    Returns a list whose entry ``l`` has shape ``(Cout, Cin0, 1 + sum(k-1),
    ...)``: away from the image border, ``cascade(x, weights)[l]`` equals one
    correlation of ``x`` with entry ``l`` (zero padding instead of the
    cascaded reflect padding near the border).
    """
    xp = backend_for(weights[0]).xp
    eff = weights[0]
    out = [eff]
    for w in weights[1:]:
        cout, cmid, kh, kw = w.shape
        _, cin, eh, ew = eff.shape
        new = xp.zeros((cout, cin, eh + kh - 1, ew + kw - 1), dtype=eff.dtype)
        # corr(corr(x, e), w) = corr(x, e composed with w): taps add up.
        for a in range(kh):
            for b in range(kw):
                new[:, :, a : a + eh, b : b + ew] += xp.einsum("om,mcij->ocij", w[:, :, a, b], eff)
        eff = new
        out.append(eff)
    return out
