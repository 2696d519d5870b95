"""The unrolled network's fast forward on a stack of same-size gray images.

Same iteration, same numbers as :meth:`UnrolledModel.forward` in fast mode
(smooth border, composed filters in the Fourier domain, re-centred kernel),
but every step works on the whole ``(B, C, ...)`` stack at once and uses only
the array API shared by NumPy and CuPy. On a GPU this turns the per-channel,
per-image kernel launches of the single-image path into a few large ones per
layer (launch latency, not arithmetic, bounds a 290x450 image there). On a
CPU the single-image path, with its in-cache channel loop and fused compiled
kernels, stays the faster one; :func:`forward_batch` is still exact there
and is what the tests compare against.
"""

from __future__ import annotations

import numpy as np

from .backend import backend_for, to_numpy
from .steps import kernel

__all__ = ["forward_batch"]


def forward_batch(model, ys, *, dtype=None, k0=None, max_batch=16, border="smooth"):
    """Deblur a stack of gray images with one pass per layer.

    Parameters
    ----------
    model : UnrolledModel
        A gray model (``config.image_channels == 1``).
    ys : (B, H, W) array
        Observations in [0, 1], NumPy or CuPy (the result stays on that
        device).
    dtype : numpy dtype, optional
        float32 (default for float32 input) or float64.
    k0 : (B, K, K) or (K, K) array, optional
        Initial kernels (default the delta).
    border : {'smooth', 'wrap'}
        How the images are extended to the FFT grid
        (:data:`hqsdeblur.unrolled.BORDERS`).
    max_batch : int
        Images per pass; larger stacks are processed in chunks (memory grows
        as ``max_batch * channels`` spectra of the FFT grid).

    Returns
    -------
    x : (B, H, W) array
        Deblurred images (not clipped).
    k : (B, K, K) array
        Kernels, non-negative, summing to 1, centre of mass at the centre.

    Examples
    --------
    >>> import numpy as np
    >>> from hqsdeblur.deblur import load_default_model
    >>> from hqsdeblur.unrolled_batch import forward_batch
    >>> ys = np.random.default_rng(0).random((2, 64, 80), dtype=np.float32)
    >>> x, k = forward_batch(load_default_model(), ys)
    >>> x.shape, k.shape
    ((2, 64, 80), (2, 45, 45))
    """
    be = backend_for(ys)
    xp = be.xp
    if dtype is None:
        dtype = ys.dtype if ys.dtype in (np.float32, np.float64) else np.float64
    ys = xp.asarray(ys, dtype=dtype)
    if ys.ndim != 3:
        raise ValueError(f"forward_batch expects a (B, H, W) stack, got shape {tuple(ys.shape)}")
    if model.config.image_channels != 1:
        raise ValueError("forward_batch supports gray models only")
    if model.config.latent != "features":
        # the stacked iteration is the feature-latent one; the image latent
        # runs through UnrolledModel.forward (its general path, any backend)
        raise ValueError("forward_batch supports latent='features' models only")
    if border not in ("smooth", "wrap"):
        raise ValueError(f"forward_batch supports the 'smooth' and 'wrap' borders, not {border!r}")
    Ksz = model.config.kernel_size
    if k0 is not None:
        k0 = xp.asarray(k0, dtype=dtype)
        if k0.ndim == 2:
            k0 = xp.broadcast_to(k0, (ys.shape[0],) + k0.shape)
        if k0.shape != (ys.shape[0], Ksz, Ksz):
            raise ValueError(f"k0 must be ({ys.shape[0]}, {Ksz}, {Ksz}), not {tuple(k0.shape)}")
    xs, ks = [], []
    n = max(1, int(max_batch))
    for i in range(0, ys.shape[0], n):
        x, k = _forward_stack(model, ys[i:i + n], dtype, be, None if k0 is None else k0[i:i + n], border)
        xs.append(x)
        ks.append(k)
    if len(xs) == 1:
        return xs[0], ks[0]
    return xp.concatenate(xs), xp.concatenate(ks)


def _device_spectra(model, S, dtype, xp):
    """The model's filter spectra (see ``UnrolledModel._spectra``) stacked and
    moved to `xp`'s device once per grid."""
    key = ("spectra_batch", tuple(S), np.dtype(dtype).str, xp.__name__)
    hit = model._cache.get(key)
    if hit is not None:
        return hit
    for k_ in [k_ for k_ in model._cache if isinstance(k_, tuple) and k_ and k_[0] == "spectra_batch"]:
        del model._cache[k_]
    from .unrolled import _small_otf

    sp = model._spectra(S, dtype)
    cdt = sp["W"].dtype
    if sp["E"] is not None:
        E = [xp.asarray(e) for e in sp["E"]]
    else:
        E = [xp.asarray(_small_otf(e[:, 0], S, (e.shape[-1] // 2,) * 2, sign=+1, dtype=cdt)) for e in sp["eff"]]
    out = dict(E=E, Einit=xp.asarray(sp["Einit"]), Wc=xp.asarray(sp["Wc"]), den0=xp.asarray(sp["den0"]))
    model._cache[key] = out
    return out


def _shrink(g, b, xp):
    # soft shrinkage g - clip(g, -b, b), thresholds broadcast per channel
    return g - xp.minimum(xp.maximum(g, -b), b)


def _forward_stack(model, y, dtype, be, k0, border):
    from .unrolled import _phase, border_grid, extend

    xp = be.xp
    cfg = model.config
    p = model._p(np, dtype)
    L = cfg.layers
    Hk = cfg.kernel_size
    h, pad = Hk // 2, Hk - 1
    B, Hv, Wv = y.shape
    S = border_grid((Hv, Wv), pad, border)
    sp = _device_spectra(model, S, dtype, xp)
    cdt = sp["Wc"].dtype

    def per_channel(v):  # (C,) parameters -> (1, C, 1, 1) on the device
        return xp.asarray(np.asarray(v, dtype=dtype))[None, :, None, None]

    Yg = be.rfft2(extend(y, S, pad, border))  # (B, F1, F2)
    Z = be.rfft2(_shrink(be.irfft2(sp["Einit"][None] * Yg[:, None], s=S), per_channel(p["bias"][0]), xp))
    if k0 is None:
        k = xp.zeros((B, Hk, Hk), dtype=dtype)
        k[:, h, h] = 1
    else:
        k = k0
    Bsum = None
    for t in range(L):
        El = sp["E"][cfg.feature_index(t)][None]  # (1, C, F1, F2)
        K = be.rfft2(k, s=S)  # kernel at the top-left corner, as the fast path
        K2 = K.real * K.real + K.imag * K.imag
        zeta = per_channel(cfg.prox_scale * p["zeta"][t])
        P = (xp.conj(K) * Yg)[:, None]
        # feature update G = (zeta conj(K) Y + Z) / (zeta |K|^2 + 1), Y = E Yg
        G = (zeta * El * P + Z) / (zeta * K2[:, None] + 1)
        g = be.irfft2(G, s=S)
        Z = be.rfft2(_shrink(g, per_channel(p["bias"][t + 1]), xp))
        if t == L - 1:
            # final features: their reconstruction term does not depend on
            # the final kernel (only on the re-centring phase)
            Gf = be.rfft2(_shrink(g, per_channel(p["bias"][L + 1]), xp))
            Bsum = (sp["Wc"][None] * Gf).sum(axis=1)
        del G, g
        if not cfg.kernel_step(t):
            continue
        # kernel least squares Kt = (rho sum conj(Z) Y + P) / (rho sum |Z|^2 + 1),
        # P = K (prox) or 0 (ridge)
        num = (xp.conj(Z) * El).sum(axis=1)
        sq = (Z.real * Z.real + Z.imag * Z.imag).sum(axis=1)
        rho = float(p["kernel_prox"][t])
        num = rho * num * Yg
        if cfg.kernel_prior == "prox":
            num += K
        kt = be.irfft2(num / (rho * sq + 1), s=S)
        if cfg.kernel_rule == "clean":
            # connected components: one small kernel at a time
            k = xp.stack([kernel.clean_normalize(kt[b], (Hk, Hk), threshold=cfg.clean_threshold,
                                                 min_component=cfg.clean_min_component)[0] for b in range(B)])
        else:
            k, _ = kernel.soft_threshold_normalize(kt, cfg.kernel_bias_scale * p["kernel_bias"][t], (Hk, Hk),
                                                   temperature=cfg.temperature, eps=cfg.eps)
    # re-centre every kernel (one host transfer for all shifts)
    shifts = _com_shifts(k, xp)
    k = _shift_kernels(k, shifts)
    ramp = _phase(S, -shifts, cdt, xp)
    K = be.rfft2(k, s=S)
    num = Bsum * ramp + xp.conj(K) * Yg
    den = K.real * K.real + K.imag * K.imag + sp["den0"][None]
    x = be.irfft2(num / den, s=S)[:, h:h + Hv, h:h + Wv]
    return x, k


def _com_shifts(k, xp):
    """(B, 2) integer shifts moving each kernel's centre of mass to the
    window centre (``kernel.center_of_mass_shift`` per image), on the host."""
    Hk = k.shape[-1]
    i = xp.arange(Hk, dtype=k.dtype)
    s = k.sum(axis=(-2, -1))
    cy = (k.sum(axis=2) * i).sum(axis=1) / s
    cx = (k.sum(axis=1) * i).sum(axis=1) / s
    c = np.asarray(to_numpy(xp.stack([cy, cx, s], axis=1)), dtype=np.float64)
    out = np.zeros((k.shape[0], 2), dtype=np.int64)
    ok = c[:, 2] > 0
    out[ok] = np.rint(Hk // 2 - c[ok, :2]).astype(np.int64)
    # Python's round() (used by the single-image path) rounds halves to even,
    # as np.rint does
    return out


def _shift_kernels(k, shifts):
    out = k.copy()
    for b, (dy, dx) in enumerate(shifts):
        if dy or dx:
            out[b] = kernel.shift_kernel(k[b], (int(dy), int(dx)))
    return out
