"""Non-blind deconvolution with a sparse gradient prior, by half-quadratic
splitting in the Fourier domain (Krishnan & Fergus, "Fast image
deconvolution using hyper-Laplacian priors", NIPS 2009).

Energy, per image channel::

    1/2 ||k * x - y||^2 + weight * sum_c |d_c * x|^alpha

with the horizontal and vertical first differences ``d_c``. Splitting
``w_c = d_c * x`` with a penalty ``beta/2 ||d_c * x - w_c||^2`` (in units of
the prior weight) gives two easy steps, alternated while ``beta`` grows
geometrically:

* ``x``: one FFT solve, the closed form of
  :func:`hqsdeblur.steps.reconstruct.reconstruct`;
* ``w``: the scalar problem ``min_w |w|^alpha + beta/2 (w - v)^2`` per pixel:
  soft thresholding for ``alpha = 1`` (total variation), Newton's method on
  the stationarity condition plus a comparison with ``w = 0`` for
  ``0 < alpha < 1`` (:func:`shrink_lp`).
"""

from __future__ import annotations

import threading

import numpy as np
import scipy.fft

from .backend import _workers, backend_for, blas_single_thread, get_backend, get_array_module, to_numpy
from .boundary import crop, edgetaper, pad_for, pad_smooth_wrap
from .errors import InputError
from .steps import fourier
from .steps.shrink import soft_shrink

__all__ = ["deconvolve", "shrink_lp", "derivative_otfs", "grad", "grad_adjoint"]

BOUNDARIES = ("wrap-smooth", "edgetaper", "periodic")
PRIORS = ("hyper-laplacian", "tv")


def shrink_lp(v, beta, alpha, *, newton_steps=6):
    """Solve ``min_w |w|^alpha + beta/2 (w - v)^2`` elementwise.

    Parameters
    ----------
    v : array
        Input (any shape, NumPy or CuPy).
    beta : float
        Penalty weight (> 0).
    alpha : float
        Exponent in (0, 1]; ``alpha = 1`` is soft thresholding by ``1/beta``.
    newton_steps : int, optional
        Newton iterations on ``alpha u^(alpha-1) + beta (u - |v|) = 0``.

    Returns
    -------
    w : array like `v`

    Notes
    -----
    For ``alpha < 1`` the stationarity function is convex in ``u = |w| > 0``,
    so Newton started at ``u = |v|`` (to the right of the larger root whenever
    a non-zero minimiser exists) decreases monotonically onto it. The result
    is then compared with ``w = 0``, which is the answer below the threshold.

    Examples
    --------
    >>> import numpy as np
    >>> shrink_lp(np.array([-2.0, 0.5, 3.0]), 1.0, 1.0)
    array([-1.,  0.,  2.])
    >>> float(shrink_lp(np.array([0.01]), 10.0, 2 / 3)[0])
    0.0
    """
    xp = backend_for(v).xp
    if alpha == 1:
        return soft_shrink(v[None], xp.asarray([1.0 / beta], dtype=v.dtype))[0]
    # A non-zero minimiser exists and beats w = 0 only above the threshold
    # |v| > v* (u* = (2 (1 - alpha) / beta)^(1 / (2 - alpha)),
    # v* = u* + alpha / beta u*^(alpha - 1)); solve on those entries only
    # (sparse gradients: usually a small fraction).
    ustar = (2 * (1 - alpha) / beta) ** (1 / (2 - alpha))
    vstar = ustar + alpha / beta * ustar ** (alpha - 1)
    flat = v.reshape(-1)
    sel = xp.flatnonzero(abs(flat) > vstar * (1 - 1e-6))
    vs = flat[sel]
    a = abs(vs)
    u = a
    for _ in range(newton_steps):
        ua = u ** (alpha - 2)  # u^(alpha-2); u^(alpha-1) = ua * u
        f = alpha * ua * u + beta * (u - a)
        fp = alpha * (alpha - 1) * ua + beta
        u = xp.maximum(u - f / fp, ustar)  # the root lies above u*
    u = xp.minimum(u, a)
    keep = u**alpha + 0.5 * beta * (u - a) ** 2 < 0.5 * beta * a * a
    out = xp.zeros_like(flat)
    out[sel] = xp.where(keep, xp.sign(vs) * u, 0)
    return out.reshape(v.shape)


def derivative_otfs(shape, xp=np, dtype=np.float64):
    """Half spectra (2, F1, F2) of the forward differences ``x[i+1] - x[i]``
    along columns (horizontal) and rows (vertical), circular."""
    be = get_backend("cupy") if xp is not np else get_backend("numpy")
    d = xp.zeros((2,) + tuple(shape), dtype=dtype)
    d[0, 0, 0] = -1
    d[0, 0, -1] = 1  # (h * x)[j] = x[j + 1] - x[j]: taps at 0 and -1
    d[1, 0, 0] = -1
    d[1, -1, 0] = 1
    return be.rfft2(d)


def grad(x, out=None):
    """Circular forward differences of an (H, W) image: (2, H, W),
    horizontal then vertical (the filters of :func:`derivative_otfs`).

    Written with slices (the same values as ``roll(x, -1) - x``, without the
    rolled copies); `out`, a (2, H, W) array, receives the result if given.
    """
    xp = get_array_module(x)
    if out is None:
        out = xp.empty((2,) + x.shape, dtype=x.dtype)
    xp.subtract(x[:, 1:], x[:, :-1], out=out[0, :, :-1])
    xp.subtract(x[:, :1], x[:, -1:], out=out[0, :, -1:])
    xp.subtract(x[1:], x[:-1], out=out[1, :-1])
    xp.subtract(x[:1], x[-1:], out=out[1, -1:])
    return out


def grad_adjoint(z, out=None, *, overwrite_z=False):
    """Adjoint of :func:`grad` (minus the divergence): (2, H, W) -> (H, W).

    Same values as ``(roll(z[0], 1, 1) - z[0]) + (roll(z[1], 1, 0) - z[1])``.
    `out` (H, W) receives the result if given; with `overwrite_z`, ``z[0]``
    serves as scratch space (saves an allocation in tight loops).
    """
    xp = get_array_module(z)
    z0, z1 = z[0], z[1]
    if out is None:
        out = xp.empty(z0.shape, dtype=z.dtype)
    xp.subtract(z0[:, :-1], z0[:, 1:], out=out[:, 1:])
    xp.subtract(z0[:, -1:], z0[:, :1], out=out[:, :1])
    tmp = z0 if overwrite_z else xp.empty_like(z0)
    xp.subtract(z1[:-1], z1[1:], out=tmp[1:])
    xp.subtract(z1[-1:], z1[:1], out=tmp[:1])
    out += tmp
    return out


# FFT threads of the calling thread, where a caller runs several
# deconvolutions side by side (hqsdeblur.tv's candidates: one each, instead
# of every thread asking for all the cores)
_local = threading.local()


def _ffts(be):
    """``(rfft2(a), irfft2(A, s))`` of a backend, with the NumPy worker count
    looked up once (the hot loops make thousands of calls) and capped by
    ``_local.fft_workers`` when set."""
    if be.xp is not np:
        return be.rfft2, lambda A, s: be.irfft2(A, s=s)
    w = getattr(_local, "fft_workers", None) or _workers()
    return (lambda a: scipy.fft.rfft2(a, workers=w)), (lambda A, s: scipy.fft.irfft2(A, s=s, workers=w))


def _prepare(image, channel_axis):
    """Validate: returns (host float image (H,W) or (H,W,3), restore fn)."""
    from .validate import as_image

    xp = get_array_module(image)
    was_device = xp is not np
    host = to_numpy(image) if was_device else image
    dtype = np.asarray(host).dtype
    img = as_image(host, channel_axis=channel_axis)
    out_dtype = dtype if dtype.kind == "f" and dtype in (np.float32, np.float64) else img.dtype

    def restore(res):
        res = np.asarray(res, dtype=out_dtype)
        if res.ndim == 3 and channel_axis is not None:
            res = np.moveaxis(res, -1, channel_axis)
        res = np.ascontiguousarray(res)
        return xp.asarray(res) if was_device else res

    return img, restore, was_device


def _resolve_backend(backend, was_device):
    if backend is not None:
        return get_backend(backend)
    if was_device:
        return get_backend("cupy")
    be = get_backend()
    return be


def _deconvolve_gray(y, k, be, *, alpha, weight, betas, boundary):
    """HQS on one gray channel. `y` host float (H, W); `k` host float64."""
    xp = be.xp
    H, W = y.shape
    dtype = y.dtype
    if boundary == "wrap-smooth":
        py, px = pad_for(k.shape)
        grid = fourier.fft_shape((H + 2 * py, W + 2 * px))
        yp = pad_smooth_wrap(y, (py, px), shape=grid)
    elif boundary == "edgetaper":
        py = px = 0
        grid = (H, W)
        yp = edgetaper(y, k)
    else:
        py = px = 0
        grid = (H, W)
        yp = y
    rfft2, irfft2 = _ffts(be)
    yd = xp.asarray(yp, dtype=dtype)
    Y0 = rfft2(yd)
    K = fourier.psf2otf(xp.asarray(k, dtype=dtype), grid)
    D = derivative_otfs(grid, xp, dtype)
    # x-step of reconstruct() for the two-difference bank, with the fixed
    # terms computed once and D^T w formed in the image domain (one forward
    # FFT per step instead of two).
    KY = K.conj() * Y0
    K2 = K.real**2 + K.imag**2
    D2 = (D.real**2 + D.imag**2).sum(axis=0)
    X = Y0
    g = None
    for beta in betas:
        x = irfft2(X, grid)
        g = grad(x, out=g)
        w = shrink_lp(g, beta, alpha)
        eta = beta * weight
        X = (KY + eta * rfft2(grad_adjoint(w, out=x))) / (K2 + eta * D2)
    x = irfft2(X, grid)
    x = crop(x, (py, px), (H, W))
    return xp.clip(x, 0, 1)


def _beta_schedule(iterations, beta_min=1.0, beta_max=2.0**10):
    n = max(int(iterations), 1)
    if n == 1:
        return [beta_max]
    r = (beta_max / beta_min) ** (1.0 / (n - 1))
    return [beta_min * r**i for i in range(n)]


@blas_single_thread
def deconvolve(
    image,
    kernel,
    *,
    prior="hyper-laplacian",
    weight=None,
    alpha=2 / 3,
    iterations=None,
    channel_axis=None,
    boundary="wrap-smooth",
    backend=None,
):
    """Non-blind deconvolution with a sparse gradient prior (HQS).

    Parameters
    ----------
    image : (H, W) or (H, W, 3) array_like
        Blurred image in [0, 1] (integers are scaled by their dtype maximum).
    kernel : (kh, kw) array_like
        Blur kernel, non-negative, in convolution orientation; normalised to
        sum 1. Its centre pixel ``(kh//2, kw//2)`` is the origin, so the result
        stays aligned with the input for a centred kernel.
    prior : {'hyper-laplacian', 'tv'}
        ``|grad x|^alpha`` (default ``alpha = 2/3``) or total variation
        (``alpha = 1``).
    weight : float, optional
        Prior weight relative to the data term ``1/2 ||k*x - y||^2``. Default
        3e-4 for the hyper-Laplacian, 1e-3 for TV; larger is smoother.
    alpha : float
        Exponent of the hyper-Laplacian prior, in (0, 1].
    iterations : int, optional
        Number of HQS steps (``beta`` grows geometrically from 1 to 1024).
        Default 12.
    channel_axis : int, optional
        Axis of the colour channels (None: gray, or RGB in the last axis).
        Colour images are processed channel by channel.
    boundary : {'wrap-smooth', 'edgetaper', 'periodic'}
        Boundary handling: smooth periodic padding (default), an edge taper,
        or none (the image is taken as periodic).
    backend : str, optional
        Backend name (see :func:`hqsdeblur.get_backend`); CuPy input runs on
        'cupy'.

    Returns
    -------
    out : ndarray
        Same shape and layout as `image`, float (the input's float dtype,
        else float64), clipped to [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.signal import fftconvolve
    >>> x = np.zeros((64, 64)); x[20:44, 20:44] = 1
    >>> k = np.ones((1, 7)) / 7
    >>> y = np.clip(fftconvolve(x, k, mode="same"), 0, 1)
    >>> err = lambda a: np.abs(a - x)[16:-16, 16:-16].mean()
    >>> bool(err(deconvolve(y, k)) < 0.5 * err(y))
    True
    """
    from .validate import as_kernel

    if prior not in PRIORS:
        raise InputError(f"prior must be one of {PRIORS}, not {prior!r}.")
    if boundary not in BOUNDARIES:
        raise InputError(f"boundary must be one of {BOUNDARIES}, not {boundary!r}.")
    if prior == "tv":
        alpha = 1.0
    if not 0 < float(alpha) <= 1:
        raise InputError(f"alpha must be in (0, 1], got {alpha!r}.")
    if weight is None:
        weight = 1e-3 if alpha == 1 else 3e-4
    if not float(weight) > 0:
        raise InputError(f"weight must be positive, got {weight!r}.")
    if iterations is None:
        iterations = 12
    img, restore, was_device = _prepare(image, channel_axis)
    k = as_kernel(to_numpy(kernel) if get_array_module(kernel) is not np else kernel)
    if k.shape[0] > img.shape[0] or k.shape[1] > img.shape[1]:
        raise InputError(f"kernel {k.shape} is larger than the image {img.shape[:2]}.")
    be = _resolve_backend(backend, was_device)
    betas = _beta_schedule(iterations)
    opts = dict(alpha=float(alpha), weight=float(weight), betas=betas, boundary=boundary)
    if img.ndim == 2:
        out = to_numpy(_deconvolve_gray(img, k, be, **opts))
    else:
        out = np.stack([to_numpy(_deconvolve_gray(np.ascontiguousarray(img[..., c]), k, be, **opts)) for c in range(img.shape[-1])], axis=-1)
    return restore(out)
