"""Evaluation metrics for blind deblurring.

Follows the evaluation protocol of the DUBLID reference dev sets
(``dublid_reference_dev_sets.json``, key ``metric_definitions``):

* images are compared on the interior of the ground truth (``border`` px
  removed on every side) at the integer shift, within ``+-max_shift``,
  that minimises the sum of squared differences (SSD);
* kernels are compared on a 45x45 window at the best integer shift within
  ``+-10`` px, zero fill;
* the error ratio of Levin et al. (2009) uses a fixed Wiener-type
  non-blind step (gradient prior, ``w = 2e-3``, edge padding).

Shift conventions: ``(dy, dx)`` is the displacement of the compared array
relative to the reference (+ = down/right).

All functions are pure NumPy/SciPy; scikit-image is imported lazily for SSIM.
"""

import math

import numpy as np
from scipy import signal

from .errors import InputError


__all__ = [
    "psnr",
    "aligned_compare",
    "isnr",
    "pad_kernel",
    "kernel_rmse",
    "psf2otf",
    "nonblind_wiener",
    "nonblind_compare",
    "error_ratio",
]


def _as_gray(a, name):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise InputError(f"{name} must be a 2-D gray image, got shape {a.shape}")
    return a


def psnr(a, b, *, data_range=1.0):
    """Peak signal-to-noise ratio ``10 log10(data_range**2 / MSE)`` in dB.

    Parameters
    ----------
    a, b : array_like
        Arrays of equal shape.
    data_range : float, optional
        Peak value (1 for images in [0, 1]).

    Returns
    -------
    float
        PSNR in dB; ``inf`` for identical arrays.

    Example
    -------
    >>> psnr(np.zeros((4, 4)), np.full((4, 4), 0.1))  # doctest: +ELLIPSIS
    20.0...
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"shape mismatch: {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    return _psnr_from_mse(mse, data_range)


def _psnr_from_mse(mse, data_range=1.0):
    if mse <= 0.0:
        return math.inf
    return 10.0 * math.log10(data_range ** 2 / mse)


def _box_sums(a, h, w):
    """Sums of ``a`` over every h x w window (valid positions)."""
    c = np.zeros((a.shape[0] + 1, a.shape[1] + 1))
    c[1:, 1:] = a.cumsum(0).cumsum(1)
    return c[h:, w:] - c[:-h, w:] - c[h:, :-w] + c[:-h, :-w]


def _ssd_map(x, g_int, b, s):
    """SSD between ``g_int`` and every shifted window of ``x``.

    Returns an array ``S`` of shape (2s+1, 2s+1) with
    ``S[dy+s, dx+s] = sum((x[b+dy:b+dy+h, b+dx:b+dx+w] - g_int)**2)``,
    computed as sum(g^2) + box sum of x^2 - 2 * cross-correlation (FFT).
    """
    h, w = g_int.shape
    a = x[b - s:b + s + h, b - s:b + s + w]
    corr = signal.fftconvolve(a, g_int[::-1, ::-1], mode="valid")
    return float(np.sum(g_int ** 2)) + _box_sums(a * a, h, w) - 2.0 * corr


def aligned_compare(result, gt, *, max_shift=15, border=15, compute_ssim=True):
    """Compare an image to the ground truth at its best integer shift.

    The compared region is the interior ``gt[border:H-border, border:W-border]``;
    the result window ``x[border+dy:H-border+dy, border+dx:W-border+dx]`` is
    taken for every ``dy, dx`` in ``[-max_shift, max_shift]`` and the shift
    with the smallest SSD (largest PSNR) wins.  The SSD of all shifts is
    computed with one FFT cross-correlation; the candidates closest to the
    minimum are then re-evaluated exactly.

    Parameters
    ----------
    result : (H, W) array_like
        Image to evaluate; clipped to [0, 1] (float64).
    gt : (H, W) array_like
        Gray ground truth in [0, 1].
    max_shift : int, optional
        Largest displacement searched in each axis.
    border : int, optional
        Border removed from the ground truth; must be ``>= max_shift``.
    compute_ssim : bool, optional
        Whether to compute SSIM (scikit-image) at the chosen shift.

    Returns
    -------
    dict
        ``psnr`` (dB), ``ssim`` (None if not computed), ``shift`` = (dy, dx),
        the displacement of the result relative to the GT (+ = down/right),
        ``ssd``, ``mse`` and ``at_edge`` (True if the best shift lies on the
        search limit).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> gt = rng.random((64, 64))
    >>> res = np.roll(gt, (2, -3), axis=(0, 1))
    >>> aligned_compare(res, gt, max_shift=5, border=5)["shift"]
    (2, -3)
    """
    g = _as_gray(gt, "gt")
    x = np.clip(_as_gray(result, "result"), 0.0, 1.0)
    if x.shape != g.shape:
        raise InputError(f"result shape {x.shape} != gt shape {g.shape}")
    s, b = int(max_shift), int(border)
    if s < 0 or b < s:
        raise InputError("need 0 <= max_shift <= border")
    H, W = g.shape
    if H - 2 * b < 1 or W - 2 * b < 1:
        raise InputError(f"image {g.shape} too small for border {b}")
    g_int = g[b:H - b, b:W - b]
    h, w = g_int.shape

    ssd = _ssd_map(x, g_int, b, s)
    # FFT round-off is ~1e-12 relative; re-check every shift near the minimum
    # exactly so the choice (first in row-major order on ties) is exact.
    tol = 1e-7 * (float(np.sum(g_int ** 2)) + 1.0)
    cand = np.flatnonzero(ssd.ravel() <= ssd.min() + tol)
    best = None
    for idx in cand:
        iy, ix = divmod(int(idx), 2 * s + 1)
        dy, dx = iy - s, ix - s
        win = x[b + dy:b + dy + h, b + dx:b + dx + w]
        e = float(np.sum((win - g_int) ** 2))
        if best is None or e < best[0]:
            best = (e, dy, dx)
    e, dy, dx = best
    mse = e / (h * w)
    out = {
        "psnr": _psnr_from_mse(mse),
        "ssim": None,
        "shift": (dy, dx),
        "ssd": e,
        "mse": mse,
        "at_edge": bool(s > 0 and (abs(dy) == s or abs(dx) == s)),
    }
    if compute_ssim:
        from skimage.metrics import structural_similarity

        win = x[b + dy:b + dy + h, b + dx:b + dx + w]
        out["ssim"] = float(structural_similarity(g_int, win, data_range=1.0))
    return out


def isnr(result, blurred, gt, *, max_shift=15, border=15):
    """Improvement in SNR: aligned PSNR(result) - aligned PSNR(blurred), dB.

    Each image gets its own best shift (see :func:`aligned_compare`).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> gt = rng.random((48, 48))
    >>> isnr(gt, gt * 0.9, gt, max_shift=2, border=2)
    inf
    """
    kw = dict(max_shift=max_shift, border=border, compute_ssim=False)
    return (aligned_compare(result, gt, **kw)["psnr"]
            - aligned_compare(blurred, gt, **kw)["psnr"])


def pad_kernel(k, size, *, normalize=True):
    """Zero-pad a kernel to ``size x size`` with ``(size - ks)//2`` before.

    This is the protocol's placement: an odd kernel's centre pixel lands on
    ``(size//2, size//2)``.

    Parameters
    ----------
    k : (kh, kw) array_like
        Kernel; ``kh, kw <= size``.
    size : int
        Output window size.
    normalize : bool, optional
        Divide by the kernel sum first.

    Returns
    -------
    (size, size) ndarray, float64

    Example
    -------
    >>> k = pad_kernel(np.ones((3, 3)), 7)
    >>> k.shape, float(k[0, 0]), bool(k[3, 3] > 0)
    ((7, 7), 0.0, True)
    """
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 2:
        raise InputError(f"kernel must be 2-D, got shape {k.shape}")
    kh, kw = k.shape
    if kh > size or kw > size:
        raise InputError(f"kernel {k.shape} larger than window {size}")
    if normalize:
        ssum = k.sum()
        if ssum == 0:
            raise InputError("kernel sums to zero")
        k = k / ssum
    out = np.zeros((size, size))
    t, l = (size - kh) // 2, (size - kw) // 2
    out[t:t + kh, l:l + kw] = k
    return out


def _shifted_ssd(e, t, s):
    """SSD(dy, dx) = sum((e[i+dy, j+dx] - t[i, j])**2), zero fill outside e."""
    n = e.shape[0]
    ep = np.zeros((n + 2 * s, n + 2 * s))
    ep[s:s + n, s:s + n] = e
    # sum e_shift^2 + sum t^2 - 2 corr, all exact box sums (no FFT needed: small)
    corr = signal.correlate(ep, t, mode="valid", method="direct")
    e2 = _box_sums(ep * ep, n, n)
    return e2 + float(np.sum(t * t)) - 2.0 * corr


def kernel_rmse(k_est, k_true, *, window=45, max_shift=10):
    """Kernel RMSE at the best integer shift (zero fill, no wrap-around).

    ``k_true`` is normalised to sum 1 and zero-padded to ``window`` with
    ``(window - ks)//2`` before; ``k_est`` is placed the same way but NOT
    renormalised (the protocol compares the kernel as output).  The error is
    ``sqrt(sum((shift(k_est) - k_true_w)**2) / window**2)`` minimised over
    ``dy, dx`` in ``[-max_shift, max_shift]``.

    If ``k_est`` is larger than ``window`` (the protocol never has this case),
    both kernels are compared on a window of ``k_est``'s size instead, and the
    normaliser becomes that size squared.

    Parameters
    ----------
    k_est, k_true : 2-D array_like
        Estimated and true kernels.
    window : int, optional
        Comparison window size (45 in the protocol).
    max_shift : int, optional
        Largest displacement searched in each axis (0: no shift).

    Returns
    -------
    tuple or None
        ``(rmse, (dy, dx))`` with (dy, dx) the displacement of ``k_est``
        relative to the padded true kernel (+ = down/right); ``None`` if the
        true kernel is larger than ``window`` (skipped by the protocol).

    Example
    -------
    >>> kt = np.zeros((5, 5)); kt[2, 1:4] = 1
    >>> ke = np.zeros((9, 9)); ke[5, 3:6] = 1 / 3
    >>> r, d = kernel_rmse(ke, kt, window=11, max_shift=3)
    >>> round(r, 12), d
    (0.0, (1, 0))
    """
    k_true = np.asarray(k_true, dtype=np.float64)
    k_est = np.asarray(k_est, dtype=np.float64)
    if k_true.ndim != 2 or k_est.ndim != 2:
        raise InputError("kernels must be 2-D")
    if max(k_true.shape) > window:
        return None
    win = max(int(window), *k_est.shape)
    t = pad_kernel(k_true, win, normalize=True)
    e = pad_kernel(k_est, win, normalize=False)
    s = int(max_shift)
    ssd = np.maximum(_shifted_ssd(e, t, s), 0.0)
    iy, ix = np.unravel_index(int(np.argmin(ssd)), ssd.shape)
    dy, dx = int(iy) - s, int(ix) - s
    # exact value at the winner
    shifted = np.zeros((win, win))
    ys, yd = (slice(dy, win), slice(0, win - dy)) if dy >= 0 else (slice(0, win + dy), slice(-dy, win))
    xs, xd = (slice(dx, win), slice(0, win - dx)) if dx >= 0 else (slice(0, win + dx), slice(-dx, win))
    shifted[yd, xd] = e[ys, xs]
    rmse = math.sqrt(float(np.sum((shifted - t) ** 2)) / win ** 2)
    return rmse, (dy, dx)


def psf2otf(k, shape):
    """Optical transfer function of a kernel on a grid of ``shape``.

    The kernel is zero-padded to ``shape`` and circularly shifted so that its
    centre ``(kh//2, kw//2)`` sits at the origin; the FFT is then taken
    (true-convolution orientation, as MATLAB ``psf2otf``).

    Example
    -------
    >>> np.allclose(psf2otf(np.array([[0, 1.0, 0]]), (4, 4)), 1)
    True
    """
    k = np.asarray(k, dtype=np.float64)
    kh, kw = k.shape
    if kh > shape[0] or kw > shape[1]:
        raise InputError(f"kernel {k.shape} larger than grid {shape}")
    p = np.zeros(shape)
    p[:kh, :kw] = k
    p = np.roll(p, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return np.fft.fft2(p)


def nonblind_wiener(blurred, kernel, *, w=2e-3, pad=45):
    """Fixed non-blind step of the protocol (Wiener filter, gradient prior).

    ``x = real(F^-1[conj(K) Y / (|K|^2 + w (|Dx|^2 + |Dy|^2))])`` with
    ``Dx = [1, -1]``, ``Dy = Dx^T``, ``Y`` the FFT of the blurred image padded
    by ``pad`` px (``mode='edge'``), cropped back and clipped to [0, 1].
    ``pad=0`` gives the circular-boundary variant.

    Parameters
    ----------
    blurred : (H, W) array_like
        Gray blurred image.
    kernel : 2-D array_like
        Blur kernel (used as given; the protocol's kernels sum to 1).
    w : float, optional
        Gradient-prior weight.
    pad : int, optional
        Edge padding on every side.

    Returns
    -------
    (H, W) ndarray, float64 in [0, 1]

    Example
    -------
    >>> y = np.random.default_rng(0).random((32, 32))
    >>> x = nonblind_wiener(y, np.ones((1, 1)), w=0.0, pad=4)
    >>> np.allclose(x, y)
    True
    """
    y = _as_gray(blurred, "blurred")
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2:
        raise InputError(f"kernel must be 2-D, got shape {k.shape}")
    p = int(pad)
    yp = np.pad(y, p, mode="edge") if p > 0 else y
    shape = yp.shape
    K = psf2otf(k, shape)
    Dx = psf2otf(np.array([[1.0, -1.0]]), shape)
    Dy = psf2otf(np.array([[1.0], [-1.0]]), shape)
    den = np.abs(K) ** 2 + w * (np.abs(Dx) ** 2 + np.abs(Dy) ** 2)
    x = np.real(np.fft.ifft2(np.conj(K) * np.fft.fft2(yp) / den))
    H, W = y.shape
    return np.clip(x[p:p + H, p:p + W], 0.0, 1.0)


def nonblind_compare(blurred, k_est, k_true, gt, *, w=2e-3, pad=None,
                     circular=False, max_shift=15, border=15,
                     compute_ssim=True, true_result=None):
    """Non-blind results with the estimated and the true kernel, compared.

    Both kernels go through :func:`nonblind_wiener` with the same padding
    ``p``; each result gets its own best shift (:func:`aligned_compare`).

    Parameters
    ----------
    blurred, gt : (H, W) array_like
        Gray blurred image and ground truth.
    k_est, k_true : 2-D array_like
        Estimated and true kernels (``k_true`` is normalised to sum 1).
    w : float, optional
        Gradient-prior weight of the non-blind step.
    pad : int, optional
        Edge padding. Default ``max(45, true kernel size)`` as in the
        protocol, further raised to the estimated kernel's size if that is
        larger (never the case for a 45x45 network kernel).
    circular : bool, optional
        Use ``pad = 0`` (circular boundary model, the ``circ_*`` variant).
    true_result : dict, optional
        A previous ``aligned_compare`` result of the true-kernel non-blind
        image with the same settings, to skip recomputing it.

    Returns
    -------
    dict
        ``error_ratio`` (SSD_est / SSD_true), ``ssd_est``, ``ssd_true``,
        ``psnr_nb_est``, ``psnr_nb_true``, ``ssim_nb_est``, ``ssim_nb_true``,
        ``nb_est_shift``, ``nb_true_shift``, ``nb_pad`` and ``true_cmp``
        (the raw comparison for reuse via ``true_result``).

    Example
    -------
    >>> rng = np.random.default_rng(1)
    >>> gt = rng.random((80, 80)); k = np.ones((3, 3)) / 9
    >>> from scipy.ndimage import convolve
    >>> y = convolve(gt, k, mode="nearest")
    >>> nonblind_compare(y, k, k, gt, pad=3, compute_ssim=False)["error_ratio"]
    1.0
    """
    k_true = np.asarray(k_true, dtype=np.float64)
    k_true = k_true / k_true.sum()
    k_est = np.asarray(k_est, dtype=np.float64)
    if circular:
        p = 0
    elif pad is None:
        p = max(45, *k_true.shape, *k_est.shape)
    else:
        p = int(pad)
    kw = dict(max_shift=max_shift, border=border, compute_ssim=compute_ssim)
    est = aligned_compare(nonblind_wiener(blurred, k_est, w=w, pad=p), gt, **kw)
    if true_result is None:
        true_result = aligned_compare(nonblind_wiener(blurred, k_true, w=w, pad=p), gt, **kw)
    tru = true_result
    ratio = est["ssd"] / tru["ssd"] if tru["ssd"] > 0 else math.inf
    return {
        "error_ratio": ratio,
        "ssd_est": est["ssd"],
        "ssd_true": tru["ssd"],
        "psnr_nb_est": est["psnr"],
        "psnr_nb_true": tru["psnr"],
        "ssim_nb_est": est["ssim"],
        "ssim_nb_true": tru["ssim"],
        "nb_est_shift": est["shift"],
        "nb_true_shift": tru["shift"],
        "nb_pad": p,
        "true_cmp": tru,
    }


def error_ratio(blurred, k_est, k_true, gt, *, w=2e-3, pad=None, circular=False):
    """Levin et al. error ratio ``SSD_est / SSD_true`` with the protocol's
    Wiener non-blind step (see :func:`nonblind_compare`).

    Example
    -------
    >>> rng = np.random.default_rng(1)
    >>> gt = rng.random((80, 80)); k = np.ones((3, 3)) / 9
    >>> error_ratio(gt, k, k, gt, pad=3)
    1.0
    """
    return nonblind_compare(blurred, k_est, k_true, gt, w=w, pad=pad,
                            circular=circular, compute_ssim=False)["error_ratio"]
