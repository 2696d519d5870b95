"""Feature update: ``g = argmin_g 1/2 ||f*y - k*g||^2 + 1/(2 zeta) ||g - z||^2``.

Closed form per frequency, per channel c:
``G_c = (zeta_c conj(K) Y_c + Z_c) / (zeta_c |K|^2 + 1)``.
All arguments are half spectra on one FFT grid: ``Y, Z`` (C, F1, F2),
``K`` (F1, F2), ``zeta`` (C,). Cotangents follow the spectral convention of
:mod:`hqsdeblur.steps.fourier`.
"""

from __future__ import annotations

from ..backend import backend_for
from .fourier import half_weights

__all__ = ["feature_update", "feature_update_vjp"]


def feature_update_ref(Y, Z, K, zeta):
    z = zeta.reshape(-1, 1, 1)
    return (z * K.conj() * Y + Z) / (z * (K.real**2 + K.imag**2) + 1)


def feature_update_vjp_ref(Y, Z, K, zeta, G, Gbar, full_shape):
    xp = backend_for(Y).xp
    z = zeta.reshape(-1, 1, 1)
    D = z * (K.real**2 + K.imag**2) + 1
    Zbar = Gbar / D
    Ybar = (z * K) * Zbar
    t = Gbar.conj() * ((Y - G * K) / D)  # shared by the K and zeta cotangents
    Kbar = (z * (t - Zbar * G.conj() * K)).sum(axis=0)
    m = half_weights(full_shape, xp, dtype=Y.real.dtype)
    N = full_shape[0] * full_shape[1]
    zbar = ((K.conj() * t).real * m).reshape(Y.shape[0], -1).sum(axis=1) / N
    return Ybar, Zbar, Kbar, zbar


def feature_update(Y, Z, K, zeta):
    """Fourier-domain feature update (see module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> Y = np.ones((2, 4, 3), complex); Z = np.zeros_like(Y); K = np.ones((4, 3), complex)
    >>> feature_update(Y, Z, K, np.array([1.0, 3.0]))[:, 0, 0].real
    array([0.5 , 0.75])
    """
    return backend_for(Y).kernels["feature_update"](Y, Z, K, zeta)


def feature_update_vjp(Y, Z, K, zeta, G, Gbar, full_shape):
    """VJP of :func:`feature_update`.

    Returns ``(Ybar, Zbar, Kbar, zeta_bar)``; ``Kbar`` is summed over
    channels, ``zeta_bar`` has shape (C,). `G` is the forward output and
    `full_shape` the FFT grid ``(Hf, Wf)``.
    """
    return backend_for(Y).kernels["feature_update_vjp"](Y, Z, K, zeta, G, Gbar, tuple(full_shape))
