"""Emulation of UnrolledModel.forward (smooth border, gray) for an *identity*
cascade (w_l = I for l >= 1): every layer's features are the w0 features, so
the effective filters need not be composed (L can be hundreds). Same steps and
order as the general path of hqsdeblur/unrolled.py. Optional swaps:
  shrink='joint'   : isotropic soft threshold over channels instead of per channel
  kclean=dict(...) : classical tv._clean_kernel instead of the soft-max rule
"""
import numpy as np
from common import *
from hqsdeblur import unrolled as U
from hqsdeblur.steps import border as border_ext, features, filters, fourier, kernel, shrink
from hqsdeblur.backend import get_backend
from hqsdeblur import tv

_orig_forward = U.UnrolledModel.forward


def emu_forward(self, y, *, k0=None, return_state=False, **kw):
    opt = self.meta.get("emu")
    if opt is None:
        return _orig_forward(self, y, k0=k0, return_state=return_state, **kw)
    be = get_backend("numpy")
    cfg = self.config
    dtype = np.float64
    y = np.asarray(y, dtype=dtype)
    p = {k: np.asarray(v, dtype) for k, v in self.params.items()}
    Hv, Wv = y.shape
    Hk = cfg.kernel_size
    h, pad = Hk // 2, Hk - 1
    if opt.get("tvgrid"):
        # tv.estimate_kernel's grid: band ks + ks//2 + 2 on each side
        from hqsdeblur.boundary import pad_smooth_wrap
        tp = Hk + Hk // 2 + 2
        S = fourier.fft_shape((Hv + 2 * tp, Wv + 2 * tp))
        ygrid = pad_smooth_wrap(y, tp, shape=S)
    elif opt.get("band"):
        # the unrolled border (periodic_extend) with a wider total band
        bw = int(opt["band"] * Hk)
        S = U._smooth_grid((Hv, Wv), bw)
        ygrid = border_ext.periodic_extend(y, S, (pad, pad))
    else:
        S = U._smooth_grid((Hv, Wv), pad)
        ygrid = border_ext.periodic_extend(y, S, (pad, pad))
    Yg = be.rfft2(ygrid)
    A0 = p["w0"] - p["w0"].mean(axis=(-2, -1), keepdims=True)
    e = filters.flip(A0)  # eff[0]
    E = fourier.psf2otf(filters.flip(e), S, centre=(1, 1))
    Y = (E * Yg[None]).sum(axis=1)
    L = cfg.layers
    k = U._initial_kernel(k0, Hk, np, dtype)
    u0 = fourier.roll(be.irfft2(Y, s=S), (-h, -h))

    def shr(g, b):
        if opt.get("shrink") == "joint":
            mag = np.sqrt((g * g).sum(axis=0))
            return g * (np.maximum(mag - b[0], 0) / np.maximum(mag, 1e-12))
        return shrink.soft_shrink(g, b)

    Z = be.rfft2(shr(u0, p["bias"][0]))
    if opt.get("restart"):
        Z = np.zeros_like(Z)
    kc = opt.get("kclean")
    for t in range(L):
        K = fourier.psf2otf(k, S, centre=(0, 0))
        zeta = cfg.prox_scale * p["zeta"][t]
        G = features.feature_update(Y, Z, K, zeta)
        g = be.irfft2(G, s=S)
        Z = be.rfft2(shr(g, p["bias"][t + 1]))
        rho = p["kernel_prox"][t]
        if rho == 0:
            continue  # Kt = K: the kernel step is the identity
        if opt.get("ridge"):
            Kt = kernel.kernel_ls(Z, Y, None, rho)
        else:
            Kt = kernel.kernel_ls(Z, Y, K, rho)
        kt = be.irfft2(Kt, s=S)
        if opt.get("restart"):
            Z = np.zeros_like(Z)  # classical: the latent HQS restarts after every kernel step
        if kc is not None:
            win = kt[:Hk, :Hk]
            k = tv._clean_kernel(win, **kc)
            if not opt.get("recenter_each", True):
                pass
        else:
            k, _ = kernel.soft_threshold_normalize(kt, cfg.kernel_bias_scale * p["kernel_bias"][t], (Hk, Hk),
                                                   temperature=cfg.temperature, eps=cfg.eps)
    shift = kernel.center_of_mass_shift(k)
    k = kernel.shift_kernel(k, shift)
    return None, k  # image not needed: the non-blind step makes the output


U.UnrolledModel.forward = emu_forward


def schedule(*, C=2, iterations=10, lam=1e-2, lam_decay=1 / 1.1, lam_min=1e-4, beta_ratio=2.0, beta_max=1e3,
             rho=0.5, kbias=0.0, ks=45, b0=None, inner=None, prox_scale=10.0):
    """Per-layer parameters mimicking tv.estimate_kernel(latent='gradient', prior='tv')
    at one level: per outer iteration, one layer per beta (kernel step off: rho=0),
    the last with the kernel step (rho)."""
    zeta, bias, kp = [], [], []
    lm = lam
    for _ in range(iterations):
        betas = []
        b = 2 * lm
        while b < beta_max:
            betas.append(b)
            b *= beta_ratio
        if inner is not None:
            betas = betas[:inner]
        for j, be_ in enumerate(betas):
            zeta.append(1.0 / be_ / prox_scale)
            bias.append(lm / be_)
            kp.append(rho if j == len(betas) - 1 else 0.0)
        lm = max(lm * lam_decay, lam_min)
    L = len(zeta)
    cfg = U.UnrolledConfig(channels=C, layers=L, kernel_size=ks)
    params = U.init_params(cfg, init="tv")
    params["zeta"] = np.array(zeta)[:, None] * np.ones((1, C))
    bias = [b0 if b0 is not None else bias[0]] + bias + [bias[-1]]
    params["bias"] = np.array(bias)[:, None] * np.ones((1, C))
    params["kernel_prox"] = np.array(kp)
    params["kernel_bias"] = np.where(np.array(kp) > 0, float(kbias), 0.0)  # rho=0 layers: identity kernel step
    for l in range(1, L):
        eye = np.zeros((C, C, 3, 3)); eye[np.arange(C), np.arange(C), 1, 1] = 1
        params[f"w{l}"] = eye
    return cfg, params
