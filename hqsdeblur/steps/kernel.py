"""Kernel update: Fourier-domain least squares, then the kernel constraint.

Least squares (per frequency, summed over the C feature channels)::

    Kt = (rho * sum_c conj(Z_c) Y_c + P) / (rho * sum_c |Z_c|^2 + 1)

minimises ``rho/2 sum_c ||z_c * k - y_c||^2 + 1/2 ||k - p||^2``: with ``P``
the previous kernel's spectrum it is the published proximal update; with
``P = 0`` and ``rho = 1/gamma`` it is ridge regression
``sum conj(Z) Y / (sum |Z|^2 + gamma)``.

Constraints ``k >= 0, sum k = 1`` on the kernel window, two variants:

* :func:`project_simplex` - the exact Euclidean projection (sort based);
* :func:`soft_threshold_normalize` - the published network's rule: subtract a
  learned fraction of a log-sum-exp soft maximum, ReLU, normalise;
* :func:`clean_normalize` - the classical mode's rule (clip, cut below a
  fraction of the maximum, drop small connected components, normalise,
  re-centre) as a network step: its Jacobian is a mask.
"""

from __future__ import annotations

import numpy as np

from ..backend import backend_for
from .fourier import embed, embed_adjoint, half_weights

__all__ = [
    "kernel_ls",
    "kernel_ls_vjp",
    "project_simplex",
    "project_simplex_vjp",
    "soft_threshold_normalize",
    "soft_threshold_normalize_vjp",
    "clean_normalize",
    "clean_normalize_vjp",
    "center_of_mass_shift",
    "shift_kernel",
    "shift_kernel_adjoint",
]


def kernel_ls_ref(Z, Y, P, rho):
    num = rho * (Z.conj() * Y).sum(axis=0)
    if P is not None:
        num = num + P
    den = rho * (Z.real**2 + Z.imag**2).sum(axis=0) + 1
    return num / den


def kernel_ls_vjp_ref(Z, Y, P, rho, Kt, Ktbar, full_shape):
    xp = backend_for(Z).xp
    den = rho * (Z.real**2 + Z.imag**2).sum(axis=0) + 1
    kd = Ktbar / den
    Ybar = rho * Z * kd
    Pbar = kd
    Zbar = rho * (kd.conj() * (Y - Kt * Z) - kd * Kt.conj() * Z)
    dK = ((Z.conj() * Y).sum(axis=0) - Kt * (Z.real**2 + Z.imag**2).sum(axis=0)) / den
    m = half_weights(full_shape, xp, dtype=Z.real.dtype)
    rho_bar = ((Ktbar.conj() * dK).real * m).sum() / (full_shape[0] * full_shape[1])
    return Zbar, Ybar, Pbar, rho_bar


def kernel_ls(Z, Y, P, rho):
    """Kernel least squares in the Fourier domain (see module docstring).

    Parameters
    ----------
    Z, Y : (C, F1, F2) complex
        Spectra of the sparse features and of the filtered observation.
    P : (F1, F2) complex or None
        Spectrum of the proximal target (previous kernel), or None for 0.
    rho : float
        Data weight.
    """
    return backend_for(Z).kernels["kernel_ls"](Z, Y, P, rho)


def kernel_ls_vjp(Z, Y, P, rho, Kt, Ktbar, full_shape):
    """VJP of :func:`kernel_ls`: ``(Zbar, Ybar, Pbar, rho_bar)``."""
    return backend_for(Z).kernels["kernel_ls_vjp"](Z, Y, P, rho, Kt, Ktbar, tuple(full_shape))


# --- exact projection onto the simplex -------------------------------------


def project_simplex(v, *, mask=None):
    """Euclidean projection of `v` onto ``{k >= 0, sum k = 1}``.

    Sort-based, O(n log n) (Held, Wolfe & Crowder 1974; Duchi et al. 2008).
    `mask` (bool, same shape) restricts the support: entries outside it are 0.

    Examples
    --------
    >>> project_simplex(np.array([[0.5, 0.8], [-0.2, 0.1]]))
    array([[0.35, 0.65],
           [0.  , 0.  ]])
    """
    xp = backend_for(v).xp
    flat = v.reshape(-1)
    if mask is not None:
        flat = xp.where(mask.reshape(-1), flat, -xp.inf)
    u = xp.sort(flat)[::-1]
    finite = xp.isfinite(u)
    u = xp.where(finite, u, 0)
    css = xp.cumsum(u) - 1
    idx = xp.arange(1, u.size + 1, dtype=v.dtype)
    cond = (u - css / idx > 0) & finite
    r = int(xp.nonzero(cond)[0][-1]) + 1
    tau = css[r - 1] / r
    return xp.maximum(flat - tau, 0).reshape(v.shape)


def project_simplex_vjp(k, kbar):
    """VJP of :func:`project_simplex` at the output `k`.

    On the support S = {k > 0} the Jacobian is ``I - 1 1^T / |S|``; zero
    elsewhere (valid away from the kinks where an entry is exactly at 0).
    """
    xp = backend_for(k).xp
    S = k > 0
    n = S.sum()
    mean = (kbar * S).sum() / xp.maximum(n, 1)
    return xp.where(S, kbar - mean, 0)


# --- the published soft-maximum threshold rule ------------------------------


def soft_threshold_normalize(kt, kernel_bias, window, *, temperature=100.0, eps=1e-8, delta_dtype=None):
    """The published kernel constraint (reference spec section 5.3, steps 8-10).

    ``m = log(sum exp(T kt)) / T`` over the whole grid; ``k' = relu(kt[window]
    - kernel_bias * m)``; ``k = (k' + eps delta) / (sum k' + eps)``.

    Parameters
    ----------
    kt : (..., Hf, Wf) real
        Least-squares kernel(s) on the full FFT grid (kernel at the top-left).
    kernel_bias : float
        Threshold fraction (already multiplied by its scale factor).
    window : (int, int)
        Kernel window (Hk, Wk), cropped from the top-left.

    Returns
    -------
    k : (..., Hk, Wk) array
    m : float, or (...) array for a stack (the soft maximum)
    """
    xp = backend_for(kt).xp
    Hk, Wk = window
    axes = (-2, -1)  # leading axes, if any, are a stack of kernels
    mx = kt.max(axis=axes, keepdims=True)
    m = mx + xp.log(xp.exp(temperature * (kt - mx)).sum(axis=axes, keepdims=True)) / temperature
    r = kt[..., :Hk, :Wk] - kernel_bias * m
    kp = xp.maximum(r, 0)
    delta = xp.zeros((Hk, Wk), dtype=delta_dtype or kt.dtype)
    delta[Hk // 2, Wk // 2] = eps
    k = (kp + delta.astype(kt.dtype)) / (kp.sum(axis=axes, keepdims=True) + eps)
    return k, m[..., 0, 0][()]  # [()]: a scalar again for one kernel


def soft_threshold_normalize_vjp(kt, kernel_bias, window, k, m, kbar, *, temperature=100.0, eps=1e-8):
    """VJP of :func:`soft_threshold_normalize`: ``(kt_bar, kernel_bias_bar)``."""
    xp = backend_for(kt).xp
    Hk, Wk = window
    r = kt[:Hk, :Wk] - kernel_bias * m
    kp = xp.maximum(r, 0)
    s = kp.sum() + eps
    kp_bar = (kbar - (kbar * k).sum()) / s
    r_bar = xp.where(r > 0, kp_bar, 0)
    rsum = r_bar.sum()
    m_bar = -kernel_bias * rsum
    b_bar = -m * rsum
    p = xp.exp(temperature * (kt - m))  # softmax weights = dm/dkt
    kt_bar = m_bar * p
    kt_bar[:Hk, :Wk] += r_bar
    return kt_bar, b_bar


# --- the classical mode's cleaning rule ---------------------------------------


def clean_normalize(kt, window, *, threshold=0.05, min_component=0.02):
    """The classical kernel constraint (``tv``'s cleaning) as a network step.

    ``v = max(kt[window], 0)``; entries below ``threshold * max(v)`` and
    8-connected components holding less than ``min_component`` of the mass
    are set to 0; the rest is normalised to sum 1 and its centre of mass
    moved to the window centre. A kernel with no positive entry becomes the
    delta. The kept set and the shift are piecewise constant in `kt`, so the
    Jacobian is the normalisation's, restricted to the kept entries
    (:func:`clean_normalize_vjp`): unlike the soft-maximum rule there is no
    learned threshold, and the cut cannot drift to a value that empties or
    floods the kernel.

    Parameters
    ----------
    kt : (Hf, Wf) real
        Least-squares kernel on the full FFT grid (kernel at the top-left).
    window : (int, int)
        Kernel window (Hk, Wk), cropped from the top-left.
    threshold, min_component : float
        Relative cut and smallest kept component mass (``tv``'s defaults).

    Returns
    -------
    k : (Hk, Wk) array
        Non-negative, sums to 1, centre of mass at the centre.
    info : tuple
        What :func:`clean_normalize_vjp` needs.

    Examples
    --------
    >>> kt = np.zeros((16, 16)); kt[1, 1:4] = [1.0, 2.0, 1.0]; kt[4, 4] = 0.04; kt[0, 0] = -1
    >>> k, _ = clean_normalize(kt, (5, 5))
    >>> k[2, 1:4]  # the isolated 1 % speck and the negative entry are gone
    array([0.25, 0.5 , 0.25])
    """
    xp = backend_for(kt).xp
    Hk, Wk = window
    v = xp.maximum(kt[:Hk, :Wk], 0)
    mx = float(v.max())
    if not mx > 0:
        k = xp.zeros((Hk, Wk), dtype=kt.dtype)
        k[Hk // 2, Wk // 2] = 1
        return k, None
    keep = (v >= threshold * mx) & (v > 0)
    if min_component > 0:
        keep = _large_components(v, keep, min_component, xp)
    kp = xp.where(keep, v, 0)
    s = kp.sum()
    k0 = kp / s
    shift = center_of_mass_shift(k0)
    return shift_kernel(k0, shift), (keep, s, k0, shift)


def _large_components(v, keep, min_component, xp):
    """`keep` without the 8-connected components of less than `min_component`
    of the kept mass (labelled on the host: the window is small)."""
    from scipy import ndimage

    from ..backend import to_numpy

    kh = np.asarray(to_numpy(keep))
    lab, n = ndimage.label(kh, structure=np.ones((3, 3)))
    if n <= 1:
        return keep
    vh = np.asarray(to_numpy(v), dtype=np.float64)
    mass = ndimage.sum(vh, lab, index=np.arange(1, n + 1))
    small = np.flatnonzero(mass < min_component * mass.sum()) + 1
    return xp.asarray(kh & ~np.isin(lab, small))


def clean_normalize_vjp(kt, window, info, kbar):
    """VJP of :func:`clean_normalize` at `kt`: the cotangent of `kt` (full
    grid), non-zero only on the kept entries."""
    xp = backend_for(kt).xp
    Hk, Wk = window
    out = xp.zeros_like(kt)
    if info is None:  # the delta fallback does not depend on kt
        return out
    keep, s, k0, shift = info
    if shift != (0, 0):
        kbar = shift_kernel_adjoint(kbar, shift, k0)
    out[:Hk, :Wk] = xp.where(keep, (kbar - (kbar * k0).sum()) / s, 0)
    return out


# --- centring ------------------------------------------------------------------


def center_of_mass_shift(k):
    """Integer shift (dy, dx) that moves the centre of mass of `k` to the
    window centre (kh//2, kw//2)."""
    xp = backend_for(k).xp
    kh, kw = k.shape
    s = k.sum()
    if not float(s) > 0:
        return (0, 0)
    iy = xp.arange(kh, dtype=k.dtype)
    ix = xp.arange(kw, dtype=k.dtype)
    cy = float((k.sum(axis=1) * iy).sum() / s)
    cx = float((k.sum(axis=0) * ix).sum() / s)
    return (int(round(kh // 2 - cy)), int(round(kw // 2 - cx)))


def shift_kernel(k, shift):
    """Shift `k` by integer (dy, dx) inside its window, zero fill (mass that
    leaves the window is dropped and the kernel renormalised)."""
    xp = backend_for(k).xp
    dy, dx = shift
    kh, kw = k.shape
    out = xp.zeros_like(k)
    ys, yd = (slice(0, kh - dy), slice(dy, kh)) if dy >= 0 else (slice(-dy, kh), slice(0, kh + dy))
    xs, xd = (slice(0, kw - dx), slice(dx, kw)) if dx >= 0 else (slice(-dx, kw), slice(0, kw + dx))
    out[yd, xd] = k[ys, xs]
    s = out.sum()
    return out / s if float(s) > 0 else k


def shift_kernel_adjoint(kbar, shift, k):
    """VJP of :func:`shift_kernel` at the input `k`."""
    xp = backend_for(k).xp
    dy, dx = shift
    kh, kw = k.shape
    ys, yd = (slice(0, kh - dy), slice(dy, kh)) if dy >= 0 else (slice(-dy, kh), slice(0, kh + dy))
    xs, xd = (slice(0, kw - dx), slice(dx, kw)) if dx >= 0 else (slice(-dx, kw), slice(0, kw + dx))
    moved = xp.zeros_like(k)
    moved[yd, xd] = k[ys, xs]
    s = moved.sum()
    if not float(s) > 0:
        return kbar
    out = moved / s
    sbar = (kbar - (kbar * out).sum()) / s
    res = xp.zeros_like(k)
    res[ys, xs] = sbar[yd, xd]
    return res
