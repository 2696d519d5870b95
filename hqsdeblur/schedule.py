"""The classical mode's TV continuation written as unrolled-network parameters.

:func:`hqs_schedule` sets an identity-cascade network
(:class:`hqsdeblur.unrolled.UnrolledConfig` with ``cascade='identity'``) to
the iteration of ``tv.estimate_kernel(latent='gradient', prior='tv')`` at one
pyramid level: for each outer iteration ``i`` (weight ``lam_i``, decreasing)
a run of layers with a rising splitting weight ``beta`` (``2 lam_i``,
``beta_ratio`` times more each layer, below ``beta_max``), each layer one HQS
step of the gradient features (``zeta = 1 / beta``, threshold
``lam_i / beta``), the last one followed by the ridge kernel least squares
and the classical kernel cleaning. Two channels: the horizontal and vertical
finite differences.

It is a network that needs no training to work and the start of training:
every threshold, step weight and kernel weight is a parameter, and the
filters ``w0`` are too. Measured coarse to fine with the non-blind final
step (Levin's 32 images, float32): the default schedule (10 outer
iterations, ``beta_ratio`` 2: 167 layers per level) scores 28.82 dB, error
ratio <= 3 on 88 %; 87 layers (``beta_ratio`` 4) 27.90 dB / 75 %; 30 layers
(5 iterations, ``beta_ratio`` 8) 27.09 dB / 66 %, and the short schedules
lose straight-line kernels on clean images that the long one finds.
"""

from __future__ import annotations

import numpy as np

from .unrolled import UnrolledConfig, UnrolledModel, init_params

__all__ = ["hqs_schedule"]


def hqs_schedule(*, kernel_size=45, iterations=10, lam=None, lam_decay=1 / 1.1, lam_min=1e-4, beta_ratio=2.0,
                 beta_max=1e3, rho=0.5, kernel_rule="clean", kernel_prior="ridge", kernel_bias=2.0,
                 latent="features", prior=None):
    """An unrolled network set to the classical TV-HQS schedule.

    Parameters
    ----------
    kernel_size : int
        Kernel window (odd).
    iterations : int
        Outer iterations (kernel steps) per run of the network.
    lam, lam_decay, lam_min : float
        Prior weight of the first outer iteration (default 1e-2 for the
        feature latent, ``tv.lam_for(kernel_size)`` for the image latent),
        its factor per iteration and its floor (the classical mode's
        continuation).
    latent : {'features', 'image'}
        ``tv.estimate_kernel``'s ``latent='gradient'`` (each feature channel
        updated on its own) or ``latent='image'`` (one latent image per
        layer, restarted from the observation at each outer iteration, as
        ``tv``'s default estimator).
    prior : {'tv', 'l0'}, optional
        Soft or L0 (hard, joint) shrinkage; default 'tv' for the feature
        latent, 'l0' for the image latent. With 'l0' the thresholds are on
        the squared gradient magnitude.
    beta_ratio, beta_max : float
        Growth of the splitting weight within an outer iteration and its
        ceiling; together with `lam` they fix the layers per iteration.
    rho : float
        Data weight of the kernel least squares (ridge weight ``1 / rho``).
    kernel_rule, kernel_prior : str
        :class:`~hqsdeblur.unrolled.UnrolledConfig` options; with 'softmax'
        the threshold is `kernel_bias` (x 0.01 of the soft maximum).

    Returns
    -------
    UnrolledModel
        Gray, two channels, ``meta['init'] == 'hqs-schedule'`` and the
        schedule's arguments in ``meta['schedule']``.

    Examples
    --------
    >>> m = hqs_schedule(kernel_size=15)
    >>> m.config.cascade, m.config.channels, m.config.layers, len(m.config.kernel_layers)
    ('identity', 2, 167, 10)
    """
    if latent not in ("features", "image"):
        raise ValueError(f"latent must be 'features' or 'image', not {latent!r}")
    if prior is None:
        prior = "tv" if latent == "features" else "l0"
    if lam is None:
        from .tv import lam_for

        lam = 1e-2 if latent == "features" else lam_for(kernel_size)
    zeta, bias, kernel_layers = [], [], []
    lm = lam
    for _ in range(iterations):
        b = 2.0 * lm
        betas = []
        while b < beta_max:
            betas.append(b)
            b *= beta_ratio
        for beta in betas:
            zeta.append(1.0 / beta)
            bias.append(lm / beta)
        kernel_layers.append(len(zeta) - 1)
        lm = max(lm * lam_decay, lam_min)
    L = len(zeta)
    image = latent == "image"
    cfg = UnrolledConfig(channels=2, layers=L, kernel_size=kernel_size, cascade="identity",
                         kernel_layers=tuple(kernel_layers), kernel_rule=kernel_rule, kernel_prior=kernel_prior,
                         latent=latent, shrink="l0" if prior == "l0" else "soft", restart=image)
    p = init_params(cfg, init="tv")  # w0: the two finite differences
    C = cfg.channels
    p["zeta"] = np.array(zeta)[:, None] / cfg.prox_scale * np.ones((1, C))
    if image:
        # layer t's input is shrunk with its own lam / beta (bias[t]); the
        # final features as the last layer's
        p["bias"] = np.array(bias + [bias[-1], bias[-1]])[:, None] * np.ones((1, C))
    else:
        # initial features thresholded as the first layer's, final ones as the last
        p["bias"] = np.array([bias[0]] + bias + [bias[-1]])[:, None] * np.ones((1, C))
    p["kernel_prox"] = np.zeros(L)
    p["kernel_prox"][kernel_layers] = rho
    p["kernel_bias"] = np.zeros(L)
    p["kernel_bias"][kernel_layers] = kernel_bias if kernel_rule == "softmax" else 0.0
    args = dict(kernel_size=kernel_size, iterations=iterations, lam=lam, lam_decay=lam_decay, lam_min=lam_min,
                beta_ratio=beta_ratio, beta_max=beta_max, rho=rho, kernel_rule=kernel_rule,
                kernel_prior=kernel_prior, kernel_bias=kernel_bias, latent=latent, prior=prior)
    meta = {"init": "hqs-schedule", "schedule": args, "final_image": "nonblind"}
    if image:
        # tv's pyramid starts at a 5 px window: with the L0 image latent the
        # deeper pyramid finds Lai's 51/75 px kernels that a 15 px start loses
        meta["coarsest"] = 5
        meta["lam_rule"] = "tv"  # thresholds follow tv.lam_for(window) (deblur._window_prior)
    return UnrolledModel(cfg, p, meta)
