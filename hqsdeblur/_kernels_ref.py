"""Validating wrappers around the NumPy reference kernels.

The math lives once, next to its step (``*_ref`` functions in
:mod:`hqsdeblur.steps`); this module adds the argument checks and dtype
rules shared with the compiled variants, and is the reference that the
compiled variants
(:mod:`hqsdeblur._ext._elementwise`, Cython + OpenMP, and
:mod:`hqsdeblur._numba_kernels`) must reproduce.  All three modules expose
the same functions with identical signatures.

Conventions
-----------
* Feature stacks are ``(C, H, W)`` real arrays; spectra are ``(C, F1, F2)``
  complex arrays on the half-spectrum grid of ``numpy.fft.rfft2`` of an
  ``(H, W)`` image, i.e. ``F1 = H`` and ``F2 = W // 2 + 1``.
* Precision follows the complex (or, for the shrinkage, the real) input:
  ``complex64`` pairs with ``float32`` and ``complex128`` with ``float64``.
  Other inputs are converted; the per-channel parameters are cast to the
  matching real dtype.
* Reductions over pixels/frequencies are accumulated in float64 and cast
  back, so that single precision results do not depend on summation order.
* Gradients with respect to real scalars taken over a half spectrum use the
  weights ``m_v`` (1 for column ``v == 0`` and, for even ``W``, for
  ``v == W // 2``; 2 otherwise) and the factor ``1 / (H * W)``, i.e. they
  are the gradients of the full-spectrum quantity under the unitary
  Parseval convention used by the unrolled network.
"""

import numpy as np

from .steps import features as _features
from .steps import kernel as _kernel
from .steps import reconstruct as _reconstruct
from .steps import shrink as _shrink

try:  # the errors module is owned by the io/validation engineer
    from hqsdeblur.errors import InputError
except ImportError:  # pragma: no cover - fallback while the tree is assembled
    class InputError(ValueError):
        """Invalid input (fallback until :mod:`hqsdeblur.errors` exists)."""


__all__ = [
    "soft_shrink",
    "soft_shrink_vjp",
    "feature_update",
    "feature_update_vjp",
    "kernel_ls",
    "kernel_ls_vjp",
    "reconstruct_gray",
    "half_spectrum_weights",
]


# ---------------------------------------------------------------------------
# Input coercion shared by the NumPy, Numba and Cython front ends.
# ---------------------------------------------------------------------------

def _real_dtype(x):
    """float32 for single precision inputs, float64 otherwise."""
    dt = np.asarray(x).dtype
    return np.dtype(np.float32) if dt in (np.float32, np.complex64) else np.dtype(np.float64)


def _complex_of(real_dtype):
    return np.dtype(np.complex64) if real_dtype == np.float32 else np.dtype(np.complex128)


def _as(a, dtype, ndim, name):
    """C-contiguous array of ``dtype`` with ``ndim`` dimensions (copy only if needed)."""
    arr = np.ascontiguousarray(a, dtype=dtype)
    if arr.ndim != ndim:
        raise InputError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    return arr


def _check_same(shape, expected, name):
    if tuple(shape) != tuple(expected):
        raise InputError(f"{name} has shape {tuple(shape)}, expected {tuple(expected)}")


def _prep_shrink(x, b):
    rdt = _real_dtype(x)
    if np.iscomplexobj(x):
        raise InputError("soft_shrink expects a real array x")
    x = _as(x, rdt, 3, "x")
    b = _as(b, rdt, 1, "b")
    _check_same(b.shape, x.shape[:1], "b")
    return x, b


def _prep_feature(Y, Z, K, zeta):
    rdt = _real_dtype(Y)
    cdt = _complex_of(rdt)
    Y = _as(Y, cdt, 3, "Y")
    Z = _as(Z, cdt, 3, "Z")
    K = _as(K, cdt, 2, "K")
    zeta = _as(zeta, rdt, 1, "zeta")
    _check_same(Z.shape, Y.shape, "Z")
    _check_same(K.shape, Y.shape[1:], "K")
    _check_same(zeta.shape, Y.shape[:1], "zeta")
    return Y, Z, K, zeta


def _prep_kernel(Z, Y, P, rho):
    rdt = _real_dtype(Z)
    cdt = _complex_of(rdt)
    Z = _as(Z, cdt, 3, "Z")
    Y = _as(Y, cdt, 3, "Y")
    _check_same(Y.shape, Z.shape, "Y")
    if P is None:
        P = np.zeros(Z.shape[1:], dtype=cdt)
    else:
        P = _as(P, cdt, 2, "P")
        _check_same(P.shape, Z.shape[1:], "P")
    rho = float(rho)
    return Z, Y, P, rho


def _prep_recon(Y0, K, W, G, eta):
    rdt = _real_dtype(Y0)
    cdt = _complex_of(rdt)
    Y0 = _as(Y0, cdt, 2, "Y0")
    K = _as(K, cdt, 2, "K")
    W = _as(W, cdt, 3, "W")
    G = _as(G, cdt, 3, "G")
    eta = _as(eta, rdt, 1, "eta")
    _check_same(K.shape, Y0.shape, "K")
    _check_same(W.shape[1:], Y0.shape, "W")
    _check_same(G.shape, W.shape, "G")
    _check_same(eta.shape, W.shape[:1], "eta")
    return Y0, K, W, G, eta


def _check_full_shape(full_shape, F1, F2):
    try:
        H, W = (int(s) for s in full_shape)
    except (TypeError, ValueError):
        raise InputError(f"full_shape must be a pair (H, W), got {full_shape!r}") from None
    if H != F1 or W // 2 + 1 != F2:
        raise InputError(
            f"full_shape {(H, W)} does not match the half spectrum ({F1}, {F2}); "
            "expected F1 == H and F2 == W // 2 + 1"
        )
    return H, W


def half_spectrum_weights(W, *, dtype=np.float64):
    """Multiplicity of each half-spectrum column in the full spectrum.

    Parameters
    ----------
    W : int
        Width of the full (spatial) grid.
    dtype : dtype, optional
        Output dtype.

    Returns
    -------
    m : ndarray, shape (W // 2 + 1,)
        1 for column 0 and, when ``W`` is even, for column ``W // 2``;
        2 for every other column.

    Example
    -------
    >>> half_spectrum_weights(4)
    array([1., 2., 1.])
    """
    m = np.full(W // 2 + 1, 2.0, dtype=dtype)
    m[0] = 1
    if W % 2 == 0:
        m[W // 2] = 1
    return m


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------

def soft_shrink(x, b, out=None):
    """Per-channel soft thresholding ``sign(x) * max(|x| - b, 0)``.

    Parameters
    ----------
    x : ndarray, shape (C, H, W), real
        Feature stack.
    b : ndarray, shape (C,), real, >= 0
        Per-channel thresholds.
    out : ndarray, optional
        C-contiguous array of the shape and dtype of ``x`` to write into.

    Returns
    -------
    out : ndarray, shape (C, H, W)

    Example
    -------
    >>> soft_shrink(np.array([[[-2.0, 0.5, 3.0]]]), np.array([1.0]))
    array([[[-1.,  0.,  2.]]])
    """
    x, b = _prep_shrink(x, b)
    out = _check_out(out, x)
    out[...] = _shrink.soft_shrink_ref(x, b)
    return out


def _check_out(out, x):
    if out is None:
        return np.empty_like(x)
    if not isinstance(out, np.ndarray) or out.shape != x.shape or out.dtype != x.dtype:
        raise InputError(f"out must be an ndarray of shape {x.shape} and dtype {x.dtype}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise InputError("out must be C-contiguous and writeable")
    return out


def soft_shrink_vjp(x, b, gbar):
    """Vector-Jacobian product of :func:`soft_shrink`.

    Parameters
    ----------
    x : ndarray, shape (C, H, W)
    b : ndarray, shape (C,)
    gbar : ndarray, shape (C, H, W)
        Cotangent of the output.

    Returns
    -------
    xbar : ndarray, shape (C, H, W)
        ``gbar * [|x| > b]``.
    bbar : ndarray, shape (C,)
        ``-sum_pixels gbar * sign(x) * [|x| > b]``.

    Example
    -------
    >>> xb, bb = soft_shrink_vjp(np.array([[[-2.0, 0.5]]]), np.array([1.0]),
    ...                          np.ones((1, 1, 2)))
    >>> bb
    array([1.])
    """
    x, b = _prep_shrink(x, b)
    gbar = _as(gbar, x.dtype, 3, "gbar")
    _check_same(gbar.shape, x.shape, "gbar")
    xbar, bbar = _shrink.soft_shrink_vjp_ref(x, b, gbar)
    return xbar.astype(x.dtype), bbar.astype(x.dtype)


def feature_update(Y, Z, K, zeta):
    """Feature-domain least squares ``G = (zeta conj(K) Y + Z) / (zeta |K|^2 + 1)``.

    Parameters
    ----------
    Y, Z : ndarray, shape (C, F1, F2), complex
        Spectra of the filtered observation and of the shrunk features.
    K : ndarray, shape (F1, F2), complex
        Kernel spectrum.
    zeta : ndarray, shape (C,), real
        Per-channel penalty weights.

    Returns
    -------
    G : ndarray, shape (C, F1, F2), complex

    Example
    -------
    >>> G = feature_update(np.ones((1, 1, 1), complex), np.zeros((1, 1, 1), complex),
    ...                    np.ones((1, 1), complex), np.array([1.0]))
    >>> G.real
    array([[[0.5]]])
    """
    Y, Z, K, zeta = _prep_feature(Y, Z, K, zeta)
    return _features.feature_update_ref(Y, Z, K, zeta)


def feature_update_vjp(Y, Z, K, zeta, G, Gbar, full_shape):
    """Vector-Jacobian product of :func:`feature_update`.

    Complex cotangents follow the convention ``xbar = dL/dRe(x) + i dL/dIm(x)``.

    Parameters
    ----------
    Y, Z, K, zeta :
        Inputs of :func:`feature_update`.
    G : ndarray, shape (C, F1, F2)
        Output of :func:`feature_update`.
    Gbar : ndarray, shape (C, F1, F2)
        Cotangent of ``G``.
    full_shape : tuple of int
        ``(H, W)`` of the full spatial grid (``F1 == H``, ``F2 == W // 2 + 1``).

    Returns
    -------
    Ybar, Zbar : ndarray, shape (C, F1, F2)
    Kbar : ndarray, shape (F1, F2)
        Summed over channels.
    zeta_bar : ndarray, shape (C,)
        Half-spectrum weighted, normalised by ``H * W``.

    Example
    -------
    >>> args = (np.ones((1, 2, 2), complex), np.zeros((1, 2, 2), complex),
    ...         np.ones((2, 2), complex), np.array([1.0]))
    >>> G = feature_update(*args)
    >>> Yb, Zb, Kb, zb = feature_update_vjp(*args, G, np.ones_like(G), (2, 2))
    >>> Zb.real[0, 0, 0]
    0.5
    """
    Y, Z, K, zeta = _prep_feature(Y, Z, K, zeta)
    G = _as(G, Y.dtype, 3, "G")
    Gbar = _as(Gbar, Y.dtype, 3, "Gbar")
    _check_same(G.shape, Y.shape, "G")
    _check_same(Gbar.shape, Y.shape, "Gbar")
    _check_full_shape(full_shape, *Y.shape[1:])
    Ybar, Zbar, Kbar, zeta_bar = _features.feature_update_vjp_ref(Y, Z, K, zeta, G, Gbar, tuple(full_shape))
    return Ybar, Zbar, Kbar.astype(Y.dtype), zeta_bar.astype(zeta.dtype)


def kernel_ls(Z, Y, P, rho):
    """Kernel least squares ``Kt = (rho sum_c conj(Z_c) Y_c + P) / (rho sum_c |Z_c|^2 + 1)``.

    Parameters
    ----------
    Z, Y : ndarray, shape (C, F1, F2), complex
        Feature spectra of the estimate and of the observation.
    P : ndarray, shape (F1, F2), complex, or None
        Prior/proximal term (zero when None).
    rho : float
        Penalty weight.

    Returns
    -------
    Kt : ndarray, shape (F1, F2), complex

    Example
    -------
    >>> kernel_ls(np.ones((2, 1, 1), complex), np.ones((2, 1, 1), complex), None, 1.0).real
    array([[0.66666667]])
    """
    Z, Y, P, rho = _prep_kernel(Z, Y, P, rho)
    return _kernel.kernel_ls_ref(Z, Y, P, rho).astype(Z.dtype)


def kernel_ls_vjp(Z, Y, P, rho, Kt, Ktbar, full_shape):
    """Vector-Jacobian product of :func:`kernel_ls`.

    Parameters
    ----------
    Z, Y, P, rho :
        Inputs of :func:`kernel_ls` (``P`` may be None).
    Kt : ndarray, shape (F1, F2)
        Output of :func:`kernel_ls`.
    Ktbar : ndarray, shape (F1, F2)
        Cotangent of ``Kt``.
    full_shape : tuple of int
        ``(H, W)`` of the full spatial grid.

    Returns
    -------
    Zbar, Ybar : ndarray, shape (C, F1, F2)
    Pbar : ndarray, shape (F1, F2)
    rho_bar : float

    Example
    -------
    >>> Z = Y = np.ones((1, 2, 2), complex)
    >>> Kt = kernel_ls(Z, Y, None, 1.0)
    >>> Zb, Yb, Pb, rb = kernel_ls_vjp(Z, Y, None, 1.0, Kt, np.ones_like(Kt), (2, 2))
    >>> Pb.real[0, 0]
    0.5
    """
    Z, Y, P, rho = _prep_kernel(Z, Y, P, rho)
    Kt = _as(Kt, Z.dtype, 2, "Kt")
    Ktbar = _as(Ktbar, Z.dtype, 2, "Ktbar")
    _check_same(Kt.shape, Z.shape[1:], "Kt")
    _check_same(Ktbar.shape, Z.shape[1:], "Ktbar")
    _check_full_shape(full_shape, *Z.shape[1:])
    Zbar, Ybar, Pbar, rho_bar = _kernel.kernel_ls_vjp_ref(Z, Y, P, rho, Kt, Ktbar, tuple(full_shape))
    return Zbar, Ybar, Pbar.astype(Z.dtype), float(rho_bar)


def reconstruct_gray(Y0, K, W, G, eta):
    """Image update ``X = (conj(K) Y0 + sum_c eta_c conj(W_c) G_c) / (|K|^2 + sum_c eta_c |W_c|^2)``.

    Parameters
    ----------
    Y0 : ndarray, shape (F1, F2), complex
        Spectrum of the blurred image.
    K : ndarray, shape (F1, F2), complex
        Kernel spectrum.
    W : ndarray, shape (C, F1, F2), complex
        Filter spectra.
    G : ndarray, shape (C, F1, F2), complex
        Feature spectra.
    eta : ndarray, shape (C,), real
        Per-channel weights.

    Returns
    -------
    X : ndarray, shape (F1, F2), complex

    Example
    -------
    >>> one = np.ones((1, 1), complex)
    >>> reconstruct_gray(one, one, one[None], one[None], np.array([1.0])).real
    array([[1.]])
    """
    Y0, K, W, G, eta = _prep_recon(Y0, K, W, G, eta)
    return _reconstruct.reconstruct_gray_ref(Y0, K, W, G, eta).astype(Y0.dtype)
