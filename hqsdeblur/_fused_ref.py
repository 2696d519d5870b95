"""NumPy references of the fused kernels of the unrolled network's fast path.

The inference fast path (:meth:`hqsdeblur.unrolled.UnrolledModel._forward_fast`)
runs, per layer and feature channel, a Fourier-domain feature update, an
inverse FFT, a soft shrink, a forward FFT and the kernel least-squares sums.
The three elementwise steps are fused into single-pass kernels, compiled in
:mod:`hqsdeblur._numba_kernels` (Numba) and :mod:`hqsdeblur._ext._fused`
(Cython + OpenMP); this module is their readable definition and does the
argument coercion shared by all three.

Conventions
-----------
* Arrays are ``(C, F1, F2)`` (one row per channel) or a single channel
  ``(F1, F2)``; per-channel parameters (``zeta``, ``b``) are scalars or have
  shape ``(C,)``. Spectra are complex (``complex64`` or ``complex128``), the
  other arrays real of the matching precision; the complex (or, for the
  shrink, the real) input sets the precision.
* Outputs passed as ``out=`` must be C-contiguous, writeable and of the
  output's shape and dtype; ``out`` may be an input (in place) where stated.

Example
-------
>>> import numpy as np
>>> from hqsdeblur import _fused_ref as fr
>>> fr.fused_soft_shrink(np.array([-2.0, 0.5, 3.0]), 1.0)
array([-1.,  0.,  2.])
"""

import numpy as np

from ._kernels_ref import InputError, _complex_of, _real_dtype

__all__ = ["fused_feature_update", "fused_soft_shrink", "fused_kernel_ls_sums"]


# ---------------------------------------------------------------------------
# coercion shared by the NumPy, Numba and Cython front ends
# ---------------------------------------------------------------------------

def _arr(a, dtype, name, shape=None):
    """C-contiguous ``dtype`` array (copied only if needed), optionally of `shape`."""
    a = np.ascontiguousarray(a, dtype=dtype)
    if shape is not None and a.shape != tuple(shape):
        raise InputError(f"{name} has shape {a.shape}, expected {tuple(shape)}")
    return a


def _params(v, C, rdt, name):
    """Per-channel parameter as a (C,) array (a scalar is broadcast)."""
    v = np.asarray(v, dtype=rdt)
    if v.ndim == 0:
        return np.full(C, v, dtype=rdt)
    v = np.ascontiguousarray(v.reshape(-1))
    if v.shape != (C,):
        raise InputError(f"{name} must be a scalar or have shape ({C},), got {v.shape}")
    return v


def _writable(out, shape, dtype, name):
    """Check a caller-provided output array (never copied: it is written)."""
    if (not isinstance(out, np.ndarray) or out.shape != tuple(shape) or out.dtype != dtype
            or not out.flags.c_contiguous or not out.flags.writeable):
        raise InputError(f"{name} must be a writeable C-contiguous ndarray of shape "
                         f"{tuple(shape)} and dtype {np.dtype(dtype)}")
    return out


def _stack3(a, name):
    """(C, F1, F2) view of a 2-D (single channel) or 3-D array."""
    if a.ndim == 2:
        return a[None]
    if a.ndim != 3:
        raise InputError(f"{name} must be (F1, F2) or (C, F1, F2), got shape {a.shape}")
    return a


def real_view(a):
    """``(C, n)`` real view of a C-contiguous ``(C, ...)`` array (complex
    values as interleaved re/im pairs)."""
    a = a.reshape(a.shape[0], int(np.prod(a.shape[1:])))
    return a.view(_real_dtype(a)) if a.dtype.kind == "c" else a


def parallel_pays(n):
    """Whether a loop over `n` values is worth a parallel region."""
    return n >= 1 << 16


def prep_feature_update(E, P, Z, K2, zeta, out):
    """Coerce the arguments of :func:`fused_feature_update`: returns
    ``(E3, P, Z3, K2, zeta, out, out3, inplace)`` with the 3-D views ``*3``;
    ``inplace`` says that `out` is `Z` (any other overlap is refused)."""
    rdt = _real_dtype(Z)
    cdt = _complex_of(rdt)
    Z = _arr(Z, cdt, "Z")
    Z3 = _stack3(Z, "Z")
    E3 = _stack3(_arr(E, cdt, "E", Z.shape), "E")
    P = _arr(P, cdt, "P", Z3.shape[1:])
    K2 = _arr(K2, rdt, "K2", Z3.shape[1:])
    zeta = _params(zeta, Z3.shape[0], rdt, "zeta")
    inplace = False
    if out is None:
        out = np.empty_like(Z)
    else:
        out = _writable(out, Z.shape, cdt, "out")
        if np.may_share_memory(out, Z):
            inplace = out.__array_interface__["data"][0] == Z.__array_interface__["data"][0]
            if not inplace:
                raise InputError("out must be Z itself or not overlap it")
        for a, name in ((E3, "E"), (P, "P"), (K2, "K2")):
            if np.may_share_memory(out, a):
                raise InputError(f"out must not overlap {name}")
    return E3, P, Z3, K2, zeta, out, _stack3(out, "out"), inplace


def prep_soft_shrink(g, b, out, b2, out2):
    """Coerce the arguments of :func:`fused_soft_shrink`: returns
    ``(g3, b, out, out3, b2, out2, out2_3)`` (``b2``/``out2*`` None when
    ``b2`` is None)."""
    if np.iscomplexobj(g):
        raise InputError("fused_soft_shrink expects a real array g")
    rdt = _real_dtype(g)
    g = _arr(g, rdt, "g")
    if g.ndim == 0:
        raise InputError("g must have at least one dimension")
    # (C, ...) with any number of trailing axes, or a single channel of <= 2
    single = g.ndim <= 2
    g3 = g.reshape((1, -1)) if single else g.reshape(g.shape[0], -1)
    C = g3.shape[0]
    b = _params(b, C, rdt, "b")
    out = np.empty_like(g) if out is None else _writable(out, g.shape, rdt, "out")
    if b2 is None:
        if out2 is not None:
            raise InputError("out2 given without b2")
        return g3, b, out, out.reshape(g3.shape), None, None, None
    b2 = _params(b2, C, rdt, "b2")
    out2 = np.empty_like(g) if out2 is None else _writable(out2, g.shape, rdt, "out2")
    return g3, b, out, out.reshape(g3.shape), b2, out2, out2.reshape(g3.shape)


def prep_kernel_ls_sums(Z, E, num, sqsum):
    """Coerce the arguments of :func:`fused_kernel_ls_sums`: returns
    ``(Z3, E3, num, sqsum)``."""
    rdt = _real_dtype(Z)
    cdt = _complex_of(rdt)
    Z = _arr(Z, cdt, "Z")
    Z3 = _stack3(Z, "Z")
    E3 = _stack3(_arr(E, cdt, "E", Z.shape), "E")
    num = _writable(num, Z3.shape[1:], cdt, "num")
    sqsum = _writable(sqsum, Z3.shape[1:], rdt, "sqsum")
    return Z3, E3, num, sqsum


# ---------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------

def fused_feature_update(E, P, Z, K2, zeta, out=None, *, parallel=True):
    """Feature update of one layer from the filter spectra:
    ``G_c = (zeta_c E_c P + Z_c) / (zeta_c K2 + 1)``.

    With ``P = conj(K) Yg`` and ``K2 = |K|^2`` this is
    :func:`hqsdeblur._kernels_ref.feature_update` for the features
    ``Y_c = E_c Yg`` of the observation spectrum ``Yg``, without forming them.

    Parameters
    ----------
    E : (C, F1, F2) or (F1, F2) complex
        Filter transfer functions.
    P : (F1, F2) complex
        ``conj(K) Yg``.
    Z : like E
        Spectra of the current auxiliary features (sets the precision).
    K2 : (F1, F2) real
        ``|K|^2``.
    zeta : float or (C,)
        Per-channel weights.
    out : ndarray like Z, optional
        Written in place; may be ``Z`` itself (no other overlap).
    parallel : bool
        Let the compiled variants use threads (for large arrays); the
        reference ignores it.

    Returns
    -------
    G : ndarray like Z

    Example
    -------
    >>> import numpy as np
    >>> one = np.ones((1, 2), np.complex128)
    >>> fused_feature_update(one, 2 * one, one, np.ones((1, 2)), 1.0)
    array([[1.5+0.j, 1.5+0.j]])
    """
    E3, P, Z3, K2, zeta, out, out3, _ = prep_feature_update(E, P, Z, K2, zeta, out)
    z = zeta[:, None, None]
    out3[...] = (z * E3 * P + Z3) / (z * K2 + 1)
    return out


def fused_soft_shrink(g, b, out=None, *, b2=None, out2=None, parallel=True):
    """Soft shrink ``g - clip(g, -b, b)`` (= ``sign(g) max(|g| - b, 0)``),
    optionally with a second threshold ``b2`` in the same pass.

    Parameters
    ----------
    g : (C, ...) real, or a single channel of at most 2 dimensions
    b : float or (C,)
        Thresholds (>= 0).
    out : ndarray like g, optional
    b2 : float or (C,), optional
        Second thresholds (the network's final bias).
    out2 : ndarray like g, optional
        Output of the second shrink.
    parallel : bool
        As in :func:`fused_feature_update`.

    Returns
    -------
    out, or ``(out, out2)`` when `b2` is given.

    Example
    -------
    >>> import numpy as np
    >>> fused_soft_shrink(np.array([-2.0, 0.5, 3.0]), 1.0, b2=0.25)
    (array([-1.,  0.,  2.]), array([-1.75,  0.25,  2.75]))
    """
    g3, b, out, out3, b2, out2, out2_3 = prep_soft_shrink(g, b, out, b2, out2)
    bb = b[:, None]
    out3[...] = g3 - np.clip(g3, -bb, bb)
    if b2 is None:
        return out
    bb = b2[:, None]
    out2_3[...] = g3 - np.clip(g3, -bb, bb)
    return out, out2


def fused_kernel_ls_sums(Z, E, num, sqsum, *, parallel=True):
    """Accumulate the kernel least-squares sums in place:
    ``num += sum_c conj(Z_c) E_c`` and ``sqsum += sum_c |Z_c|^2``.

    (The kernel update of the network is
    ``(rho num Yg + K) / (rho sqsum + 1)``, with ``Y_c = E_c Yg``.)

    Parameters
    ----------
    Z, E : (C, F1, F2) or (F1, F2) complex
    num : (F1, F2) complex, updated in place
    sqsum : (F1, F2) real, updated in place
    parallel : bool
        As in :func:`fused_feature_update`.

    Returns
    -------
    num, sqsum

    Example
    -------
    >>> import numpy as np
    >>> num, sq = np.zeros((1, 1), complex), np.zeros((1, 1))
    >>> fused_kernel_ls_sums(np.array([[1j]]), np.array([[2.0 + 0j]]), num, sq)
    (array([[0.-2.j]]), array([[1.]]))
    """
    Z3, E3, num, sqsum = prep_kernel_ls_sums(Z, E, num, sqsum)
    num += (np.conj(Z3) * E3).sum(axis=0)
    sqsum += (Z3.real**2 + Z3.imag**2).sum(axis=0)
    return num, sqsum
