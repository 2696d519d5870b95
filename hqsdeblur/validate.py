"""Input validation shared by every entry point.

All public functions of hqsdeblur pass user data through these helpers, so the
rules (and the error messages) are the same everywhere:

* images are real arrays of shape ``(H, W)`` or ``(H, W, 3)`` with finite values
  in ``[0, 1]``; see :func:`as_image` for the accepted variants (integer dtypes,
  RGBA, other channel positions);
* kernel sizes are positive odd integers no larger than the image;
* kernels are 2-D, finite, non-negative and normalised to sum 1.

Errors are :class:`~hqsdeblur.errors.InputError` (a ``ValueError``).
"""

import operator
import warnings

import numpy as np

from .errors import HqsdeblurError, InputError

# Luminance weights of skimage's rgb2gray (ITU-R 709), also the published
# DUBLID preprocessing: colour input is reduced to this gray for the kernel.
LUMA = np.array([0.2125, 0.7154, 0.0721])
LUMA.flags.writeable = False

__all__ = ["as_image", "check_kernel_size", "as_kernel", "check_finite_output"]

# Float images may overshoot [0, 1] by rounding noise (e.g. 1 + 1 ulp after a
# float32 rescale); such values are clipped silently instead of refused.
_RANGE_TOL = 1e-6


def _asarray(value, name):
    """``np.asarray`` that turns ragged / odd inputs into an InputError."""
    try:
        with warnings.catch_warnings():
            # numpy warns before refusing ragged nested sequences
            warnings.simplefilter("ignore")
            arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{name} cannot be converted to a numeric array ({exc}).") from None
    return arr


def _to_float(arr, name):
    """Convert a real numeric array to float, scaling integers to [0, 1].

    bool -> {0, 1}; unsigned ints -> divided by the dtype maximum; signed ints
    -> divided by the dtype maximum, refused if any value is negative;
    float32 / float64 kept, other floats -> float64. Always returns a new array.
    """
    kind = arr.dtype.kind
    if kind == "b":
        return arr.astype(np.float64)
    if kind in "ui":
        if kind == "i" and arr.size and arr.min() < 0:
            raise InputError(
                f"{name} has dtype {arr.dtype} with negative values (min {int(arr.min())}); "
                "integer images must be non-negative."
            )
        return arr.astype(np.float64) / float(np.iinfo(arr.dtype).max)
    if kind == "f":
        if arr.dtype.itemsize in (4, 8):  # float32 / float64, any byte order
            return arr.astype(np.dtype(f"f{arr.dtype.itemsize}"), copy=True)
        return arr.astype(np.float64)
    if kind == "c":
        raise InputError(f"{name} has complex dtype {arr.dtype}; images must be real.")
    raise InputError(
        f"{name} has dtype {arr.dtype}, which is not a numeric image type "
        "(use bool, integer or float)."
    )


def _check_finite(arr, name):
    bad = ~np.isfinite(arr)
    if bad.any():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(bad.sum()) - n_nan
        raise InputError(
            f"{name} contains {n_nan} NaN and {n_inf} infinite values out of {arr.size}; "
            "all values must be finite."
        )


def as_image(image, *, channel_axis=None, clip=False, name="image"):
    """Validate an image and return it as a float array in [0, 1].

    Parameters
    ----------
    image : array_like
        2-D gray image, or 3-D image with a channel axis. Accepted dtypes:
        bool (-> 0/1), unsigned integers (divided by the dtype maximum, so
        uint8 / 255 and uint16 / 65535), signed integers (divided by the dtype
        maximum, negative values refused), and floats, which must already lie
        in [0, 1]. Note that an ``int64`` array holding 0..255 therefore maps to
        tiny values; convert such data to ``uint8`` first.
    channel_axis : int, optional
        Axis holding the channels of a 3-D image. If None, a 3-D image is only
        accepted when its last axis has size 3 (RGB) or 4 (RGBA); any other
        3-D layout (including ``(H, W, 1)``) needs an explicit `channel_axis`.
        Must be None for 2-D images.
    clip : bool, optional
        If True, float values outside [0, 1] are clipped instead of refused.
        Values within 1e-6 of the range are always clipped silently.
    name : str, optional
        Name used in error messages (an argument name or a file name).

    Returns
    -------
    out : ndarray
        New C-contiguous array of shape ``(H, W)`` or ``(H, W, 3)``. float32
        input stays float32, everything else becomes float64. One channel is
        squeezed to 2-D; an alpha channel (4 channels) is dropped with a
        ``UserWarning``.

    Raises
    ------
    InputError
        Wrong number of dimensions or channels, empty array, complex / object /
        string dtype, negative integers, NaN or inf, float values outside
        [0, 1] (unless `clip`).

    Examples
    --------
    >>> import numpy as np
    >>> as_image(np.array([[0, 255]], dtype=np.uint8))
    array([[0., 1.]])
    >>> as_image(np.zeros((3, 4, 5)), channel_axis=0).shape
    (4, 5, 3)
    """
    arr = _asarray(image, name)
    if arr.dtype.kind not in "buifc":
        raise InputError(
            f"{name} has dtype {arr.dtype}, which is not a numeric image type "
            "(use bool, integer or float)."
        )
    if arr.ndim == 2:
        if channel_axis is not None:
            raise InputError(
                f"{name} is 2-D (gray) but channel_axis={channel_axis!r} was given; "
                "pass channel_axis=None for gray images."
            )
    elif arr.ndim == 3:
        if channel_axis is None:
            if arr.shape[-1] not in (3, 4):
                raise InputError(
                    f"{name} has shape {arr.shape}, which is ambiguous; pass channel_axis= "
                    "to say which axis holds the channels (the last axis is assumed only "
                    "when it has 3 or 4 entries)."
                )
            channel_axis = -1
        if isinstance(channel_axis, (bool, np.bool_)):
            raise InputError(f"channel_axis must be an int, not {channel_axis!r}.")
        try:
            ax = operator.index(channel_axis)
        except TypeError:
            raise InputError(f"channel_axis must be an int, not {channel_axis!r}.") from None
        if not -3 <= ax < 3:
            raise InputError(f"channel_axis={ax} is out of range for the 3-D {name}.")
        arr = np.moveaxis(arr, ax, -1)
    else:
        raise InputError(
            f"{name} has {arr.ndim} dimensions (shape {arr.shape}); expected (H, W) or "
            "(H, W, C) with C in {1, 3, 4}."
        )
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape}).")
    if arr.ndim == 3:
        nc = arr.shape[-1]
        if nc == 1:
            arr = arr[..., 0]
        elif nc == 4:
            warnings.warn(
                f"{name} has 4 channels (RGBA); the alpha channel is dropped.",
                UserWarning,
                stacklevel=2,
            )
            arr = arr[..., :3]
        elif nc != 3:
            raise InputError(
                f"{name} has {nc} channels (shape {arr.shape}); expected 1 (gray), "
                "3 (RGB) or 4 (RGBA)."
            )
    out = _to_float(arr, name)
    if arr.dtype.kind == "f":
        _check_finite(out, name)
        lo, hi = float(out.min()), float(out.max())
        if lo < 0.0 or hi > 1.0:
            if not clip and (lo < -_RANGE_TOL or hi > 1.0 + _RANGE_TOL):
                raise InputError(
                    f"{name} has values in [{lo:.6g}, {hi:.6g}], outside [0, 1]; rescale "
                    "it or pass clip=True."
                )
            np.clip(out, 0.0, 1.0, out=out)
    return np.ascontiguousarray(out)


def check_kernel_size(kernel_size, image_shape, *, name="kernel_size"):
    """Check a blur-kernel window size against an image.

    Parameters
    ----------
    kernel_size : int
        Side of the square kernel window; must be a positive odd integer no
        larger than ``min(H, W)``.
    image_shape : tuple of int
        Shape of the image, ``(H, W)`` or ``(H, W, C)``.
    name : str, optional
        Name used in error messages.

    Returns
    -------
    kernel_size : int

    Raises
    ------
    InputError
        Non-integer, non-positive, even, or larger than the image.

    Examples
    --------
    >>> check_kernel_size(31, (255, 255))
    31
    """
    if isinstance(kernel_size, (bool, np.bool_)):
        raise InputError(f"{name} must be a positive odd integer, not {kernel_size!r}.")
    try:
        k = operator.index(kernel_size)
    except TypeError:
        raise InputError(
            f"{name} must be a positive odd integer, not {kernel_size!r} "
            f"({type(kernel_size).__name__})."
        ) from None
    if k <= 0:
        raise InputError(f"{name} must be a positive odd integer, got {k}.")
    if k % 2 == 0:
        raise InputError(
            f"{name} must be odd so the kernel has a centre pixel, got {k} "
            f"(use {k - 1} or {k + 1})."
        )
    h, w = int(image_shape[0]), int(image_shape[1])
    if k > min(h, w):
        largest = min(h, w) if min(h, w) % 2 else min(h, w) - 1
        hint = f"use {name} <= {largest}" if largest > 0 else "use a larger image"
        raise InputError(
            f"{name}={k} is too large: image {h}x{w} is smaller than the {k}x{k} "
            f"kernel window; {hint}."
        )
    return k


def as_kernel(kernel, *, name="kernel"):
    """Validate a blur kernel and return it normalised to sum 1.

    Parameters
    ----------
    kernel : array_like
        2-D real array (odd sizes are not required), finite and non-negative.
        Negatives of magnitude below ``1e-12 * max`` (rounding noise) are
        clipped to 0.
    name : str, optional
        Name used in error messages.

    Returns
    -------
    k : ndarray of float64
        New C-contiguous array with ``k.sum() == 1``.

    Raises
    ------
    InputError
        Not 2-D, empty, non-numeric, non-finite, negative or zero sum.

    Examples
    --------
    >>> as_kernel([[1, 1], [2, 0]])
    array([[0.25, 0.25],
           [0.5 , 0.  ]])
    """
    arr = _asarray(kernel, name)
    if arr.dtype.kind not in "buif":
        raise InputError(f"{name} has dtype {arr.dtype}; a kernel must be a real numeric array.")
    if arr.ndim != 2:
        raise InputError(f"{name} must be 2-D, got shape {arr.shape}.")
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape}).")
    k = np.array(arr, dtype=np.float64, order="C")
    _check_finite(k, name)
    kmax = float(k.max())
    kmin = float(k.min())
    if kmin < 0 and (kmax <= 0 or kmin < -1e-12 * kmax):
        raise InputError(
            f"{name} has negative values (min {kmin:.3g}, max {kmax:.3g}); a blur kernel "
            "must be non-negative."
        )
    np.maximum(k, 0.0, out=k)
    total = float(k.sum())
    if not total > 0:
        raise InputError(f"{name} sums to {total:.3g}; a blur kernel needs a positive sum.")
    k /= total
    return k


def check_finite_output(x, what):
    """Guard for the end of an algorithm: refuse results with NaN or inf.

    Parameters
    ----------
    x : array_like
        The result.
    what : str
        What it is, for the message (e.g. ``"deblurred image"``).

    Returns
    -------
    x : the input, unchanged.

    Raises
    ------
    HqsdeblurError
        If any value is NaN or infinite (the computation diverged).

    Examples
    --------
    >>> import numpy as np
    >>> check_finite_output(np.ones(3), "estimate")
    array([1., 1., 1.])
    """
    arr = np.asarray(x)
    if arr.dtype.kind in "fc":
        bad = ~np.isfinite(arr)
        if bad.any():
            n = int(bad.sum())
            raise HqsdeblurError(
                f"The {what} contains {n} non-finite values out of {arr.size} (the "
                "computation diverged; try a smaller step, stronger regularisation or "
                "a smaller kernel size)."
            )
    return x
