"""Image reconstruction from features:
``x = argmin_x 1/2 ||y - k*x||^2 + sum_c eta_c/2 ||w_c*x - g_c||^2``.

Closed form per frequency. Gray (one image channel)::

    X = (conj(K) Y0 + sum_c eta_c conj(W_c) G_c) / (|K|^2 + sum_c eta_c |W_c|^2)

Colour with n image channels sharing the C features (filters ``W_c`` are
rows of n transfer functions): the n x n Hermitian system
``(|K|^2 I + sum_c eta_c W_c^H W_c) X = conj(K) Y0 + sum_c eta_c W_c^H G_c``
per frequency.

Shapes (half spectra): gray ``Y0, K`` (F1, F2), ``W, G`` (C, F1, F2);
colour ``Y0`` (n, F1, F2), ``W`` (C, n, F1, F2). ``eta`` is (C,).
"""

from __future__ import annotations

from ..backend import backend_for
from .fourier import spectral_inner

__all__ = ["reconstruct", "reconstruct_vjp"]


def reconstruct_gray_ref(Y0, K, W, G, eta):
    e = eta.reshape(-1, 1, 1)
    num = K.conj() * Y0 + (e * W.conj() * G).sum(axis=0)
    den = K.real**2 + K.imag**2 + (e * (W.real**2 + W.imag**2)).sum(axis=0)
    return num / den


def _system(K, W, eta, xp):
    # M[f, i, j] = |K|^2 delta_ij + sum_c eta_c conj(W_ci) W_cj
    n = W.shape[1]
    M = xp.einsum("c,cif,cjf->fij", eta.astype(W.dtype), W.conj().reshape(W.shape[0], n, -1), W.reshape(W.shape[0], n, -1))
    k2 = (K.real**2 + K.imag**2).reshape(-1)
    idx = xp.arange(n)
    M[:, idx, idx] += k2[:, None]
    return M


def _solve(M, R, xp):
    # R: (n, F) -> (n, F)
    return xp.linalg.solve(M, R.T[..., None])[..., 0].T


def reconstruct(Y0, K, W, G, eta):
    """Solve for the image spectrum ``X`` (see module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> K = np.ones((4, 3), complex); Y0 = 2 * K
    >>> W = np.zeros((1, 4, 3), complex); G = np.zeros_like(W)
    >>> reconstruct(Y0, K, W, G, np.array([1.0]))[0, 0].real
    2.0
    """
    be = backend_for(Y0)
    if W.ndim == 3:
        return be.kernels["reconstruct_gray"](Y0, K, W, G, eta)
    xp = be.xp
    shape = Y0.shape
    n = shape[0]
    Wf = W.reshape(W.shape[0], n, -1)
    R = K.conj().reshape(1, -1) * Y0.reshape(n, -1) + xp.einsum("c,cif,cf->if", eta.astype(W.dtype), Wf.conj(), G.reshape(G.shape[0], -1))
    return _solve(_system(K, W, eta, xp), R, xp).reshape(shape)


def reconstruct_vjp(Y0, K, W, G, eta, X, Xbar, full_shape):
    """VJP of :func:`reconstruct`: ``(Y0bar, Kbar, Wbar, Gbar, eta_bar)``.

    `X` is the forward output; `full_shape` the FFT grid (Hf, Wf).
    """
    xp = backend_for(Y0).xp
    if W.ndim == 3:
        return _reconstruct_gray_vjp(Y0, K, W, G, eta, X, Xbar, full_shape)
    C, n = W.shape[:2]
    shape = Y0.shape
    Wf = W.reshape(C, n, -1)
    M = _system(K, W, eta, xp)
    lam = _solve(M, Xbar.reshape(n, -1), xp)  # M is Hermitian: M^-H = M^-1
    Xf = X.reshape(n, -1)
    Kf = K.reshape(-1)
    Gf = G.reshape(C, -1)
    WX = xp.einsum("cif,if->cf", Wf, Xf)
    WL = xp.einsum("cif,if->cf", Wf, lam)
    e = eta.reshape(-1, 1)
    Y0bar = (Kf * lam).reshape(shape)
    Gbar = (e * WL).reshape(G.shape)
    Kbar = ((lam.conj() * Y0.reshape(n, -1)).sum(axis=0) - 2 * Kf * (lam * Xf.conj()).real.sum(axis=0)).reshape(K.shape)
    resid = Gf - WX
    Wbar = e[:, :, None] * (lam.conj()[None] * resid[:, None] - Xf.conj()[None] * WL[:, None])
    Wbar = Wbar.reshape(W.shape)
    eta_bar = spectral_inner(WL.reshape(G.shape), resid.reshape(G.shape), full_shape, axis=(1, 2))
    return Y0bar, Kbar, Wbar, Gbar, eta_bar


def _reconstruct_gray_vjp(Y0, K, W, G, eta, X, Xbar, full_shape):
    # the n = 1 case of reconstruct_vjp with plain products instead of the
    # einsums over image channels (same formulas)
    e = eta.reshape(-1, 1, 1)
    den = K.real**2 + K.imag**2 + (e * (W.real**2 + W.imag**2)).sum(axis=0)
    lam = Xbar / den
    WL = W * lam
    resid = G - W * X
    Y0bar = K * lam
    Gbar = e * WL
    Kbar = lam.conj() * Y0 - 2 * K * (lam * X.conj()).real
    Wbar = e * (lam.conj() * resid - X.conj() * WL)
    eta_bar = spectral_inner(WL, resid, full_shape, axis=(1, 2))
    return Y0bar, Kbar, Wbar, Gbar, eta_bar
