"""The unrolled network run coarse to fine.

One pass of the network sees its kernel grow from the delta in ``L`` layers;
large blurs need more than that. As the classical mode does
(:func:`hqsdeblur.tv.estimate_kernel`), the image is taken down a pyramid
(factor ``1/sqrt(2)``) until the kernel window is at most `coarsest` pixels; the
network runs at the coarsest level from the delta and at every finer level
from the upsampled, re-centred estimate of the level below (``k0`` of
:meth:`hqsdeblur.unrolled.UnrolledModel.forward`). The kernel window is a
configuration, not a learned shape, so each level uses its own window with
the same parameters. A model fine-tuned with coarse starts
(``hqsdeblur train --coarse-start``) has learned to refine such estimates.
"""

from __future__ import annotations

import math

import numpy as np

from .backend import get_backend, to_numpy
from .steps.kernel import center_of_mass_shift, shift_kernel
from .tv import pyramid_sizes, resize_kernel

__all__ = ["unrolled_coarse_to_fine", "levels"]


def levels(kernel_size, *, coarsest=15, scale_factor=1 / math.sqrt(2)):
    """``(window, scale)`` of each pyramid level, coarse to fine.

    Examples
    --------
    >>> [(w, round(s, 3)) for w, s in levels(45)]
    [(11, 0.25), (17, 0.354), (23, 0.5), (33, 0.707), (45, 1.0)]
    """
    return pyramid_sizes(kernel_size, scale_factor=scale_factor, coarsest=coarsest)


def unrolled_coarse_to_fine(model, y, *, kernel_size=None, coarsest=15, scale_factor=1 / math.sqrt(2),
                            dtype=np.float32, return_state=False, border="wrap"):
    """Deblur a gray image with the network, coarse to fine.

    Parameters
    ----------
    model : UnrolledModel
    y : (H, W) ndarray
        Blurred gray image in [0, 1] (host array).
    kernel_size : int, optional
        Odd kernel window at full resolution (default the model's).
    coarsest : int
        Kernel window at the coarsest level; ``coarsest >= kernel_size``
        gives a single pass (the plain network).
    scale_factor : float
        Image scale between neighbouring levels.
    dtype : numpy dtype
    border : {'wrap', 'smooth'}
        How each level's image is extended to its FFT grid
        (:data:`hqsdeblur.unrolled.BORDERS`): 'wrap', the classical mode's
        border, scores 25.23 dB on Levin's 32 images with the shipped model
        and the non-blind final step, against 24.74 dB for 'smooth'.
    return_state : bool
        Also return the final pass's state (see ``UnrolledModel.forward``).

    Returns
    -------
    x : (H, W) ndarray
        The network's reconstruction at full resolution (not clipped).
    k : (kernel_size, kernel_size) ndarray
        The kernel (non-negative, sum 1, centred).
    state : dict, only with `return_state`

    Examples
    --------
    >>> from hqsdeblur.unrolled import UnrolledConfig, UnrolledModel, init_params
    >>> cfg = UnrolledConfig(channels=3, layers=2, kernel_size=9)
    >>> m = UnrolledModel(cfg, init_params(cfg, seed=0))
    >>> y = np.random.default_rng(0).random((48, 40))
    >>> x, k = unrolled_coarse_to_fine(m, y, coarsest=5)
    >>> x.shape, k.shape, round(float(k.sum()), 5)
    ((48, 40), (9, 9), 1.0)
    """
    from .deblur import _resize

    xp = get_backend().xp
    cfg = model.config
    ks = cfg.kernel_size if kernel_size is None else int(kernel_size)
    k = None
    out = None
    lv = levels(ks, coarsest=coarsest, scale_factor=scale_factor)
    for i, (w, s) in enumerate(lv):
        m = model.with_window(w)
        ys = np.asarray(y, dtype=np.float64) if s == 1 else _resize(np.asarray(y, dtype=np.float64), s)
        k0 = None
        if k is not None:
            k0 = resize_kernel(k, w)
            k0 = shift_kernel(k0, center_of_mass_shift(k0)).astype(dtype)
        last = i == len(lv) - 1
        # on the active backend's device (CuPy when it is 'cupy')
        out = m.forward(xp.asarray(ys, dtype=dtype), k0=k0, return_state=return_state and last, border=border)
        k = np.asarray(to_numpy(out[1]), dtype=np.float64)
    x = to_numpy(out[0])
    if return_state:
        return x, k, out[2]
    return x, k
