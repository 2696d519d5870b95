"""Training-pair synthesis for the unrolled (DUBLID) network.

Sharp patches come from natural images, kernels from three sources (straight
motion lines, random camera-shake trajectories and a pool of measured
kernels), and blur is applied as a true 'valid' convolution so no wrap-around
enters the training data.  Every random draw flows from a
:class:`numpy.random.Generator`; batch ``s`` of a :class:`BatchStream` is a pure
function of ``(seed, s)``, which makes training resumable and independent of
thread timing.

Conventions
-----------
* Images are float in [0, 1], gray ``(H, W)``.
* Kernels are odd-sized, non-negative, sum to 1, and centred: their centre of
  mass lies at the window centre ``(K // 2, K // 2)`` within half a pixel.
* Blur uses convolution orientation: ``blurred = convolve2d(sharp, k)``.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import signal

from hqsdeblur.errors import InputError

__all__ = [
    "DEFAULT_KERNEL_POOL",
    "DEFAULT_TRAIN_IMAGES",
    "linear_kernel",
    "linear_kernel_bank",
    "shake_kernel",
    "center_kernel",
    "LEVIN_KEYS",
    "load_kernel_pool",
    "augment_kernel",
    "list_images",
    "load_gray",
    "random_patch",
    "blur_valid",
    "degrade",
    "sample_rng",
    "PairSampler",
    "Batch",
    "make_batch",
    "BatchStream",
    "split_images",
]

_REPO_ROOT = Path(__file__).resolve().parent.parent
#: Shared read-only data (``../shared`` relative to the repository root).
DEFAULT_KERNEL_POOL = _REPO_ROOT.parent / "shared" / "data" / "kernels_real" / "kernels_real.npz"
DEFAULT_TRAIN_IMAGES = _REPO_ROOT.parent / "shared" / "data" / "train_images"

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
from .validate import LUMA as _GRAY_WEIGHTS  # noqa: E402


# --------------------------------------------------------------------------
# kernel helpers
# --------------------------------------------------------------------------

def _normalize(k):
    k = np.clip(np.asarray(k, dtype=np.float64), 0.0, None)
    s = k.sum()
    if not np.isfinite(s) or s <= 0:
        raise InputError("kernel has no positive mass")
    return k / s


def _center_of_mass(k):
    k = np.asarray(k, dtype=np.float64)
    s = k.sum()
    rows = np.arange(k.shape[0]) @ k.sum(axis=1) / s
    cols = np.arange(k.shape[1]) @ k.sum(axis=0) / s
    return rows, cols


def _trim(k, rel_tol=0.0):
    """Crop rows/columns whose values are all <= rel_tol * max."""
    mask = k > rel_tol * k.max()
    r = np.flatnonzero(mask.any(axis=1))
    c = np.flatnonzero(mask.any(axis=0))
    return k[r[0]:r[-1] + 1, c[0]:c[-1] + 1]


def center_kernel(k, size):
    """Place a kernel in a ``size x size`` window, centre of mass at the centre.

    The kernel is shifted by whole pixels, so the centre of mass ends within
    half a pixel of ``(size // 2, size // 2)``.  Mass that would fall outside
    the window is an error (trim the kernel or pick a larger window).

    Parameters
    ----------
    k : (M, N) array_like
        Non-negative kernel (any size, need not be normalised).
    size : int
        Odd window size.

    Returns
    -------
    (size, size) ndarray
        Float64 kernel summing to 1.

    Example
    -------
    >>> center_kernel(np.ones((1, 3)), 5)[2]
    array([0.        , 0.33333333, 0.33333333, 0.33333333, 0.        ])
    """
    size = int(size)
    if size < 1 or size % 2 == 0:
        raise InputError(f"window size must be a positive odd integer, got {size}")
    k = _trim(_normalize(k))
    cr, cc = _center_of_mass(k)
    c = size // 2
    r0 = c - int(np.round(cr))
    c0 = c - int(np.round(cc))
    if r0 < 0 or c0 < 0 or r0 + k.shape[0] > size or c0 + k.shape[1] > size:
        raise InputError(f"kernel support {k.shape} does not fit a centred {size}x{size} window")
    out = np.zeros((size, size))
    out[r0:r0 + k.shape[0], c0:c0 + k.shape[1]] = k
    return out


def _fits(k, size):
    try:
        center_kernel(k, size)
    except InputError:
        return False
    return True


def _splat_bilinear(rows, cols, weights, shape):
    """Accumulate point masses with bilinear weights (preserves the mean)."""
    r0 = np.floor(rows).astype(np.intp)
    c0 = np.floor(cols).astype(np.intp)
    fr = rows - r0
    fc = cols - c0
    out = np.zeros(shape[0] * shape[1])
    for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                      (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        rr, cc = r0 + dr, c0 + dc
        ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        out += np.bincount(rr[ok] * shape[1] + cc[ok], weights=(w * weights)[ok],
                           minlength=out.size)
    return out.reshape(shape)


# --------------------------------------------------------------------------
# linear motion kernels
# --------------------------------------------------------------------------

def linear_kernel(length, angle_deg, *, size=None, supersample=8):
    """Anti-aliased straight-line motion-blur kernel.

    The segment of the given length, centred at the window centre, is
    sampled densely onto a grid ``supersample`` times finer than the output,
    then box-downsampled, so partial pixel coverage at the ends and along
    oblique lines is represented.

    Parameters
    ----------
    length : float
        Segment length in pixels (>= 0; 0 gives a delta).
    angle_deg : float
        Direction in degrees, counter-clockwise from the +column axis with rows
        pointing down (image convention): 0 is horizontal, 90 vertical.
    size : int, optional
        Odd window size; default the smallest odd integer >= ``length + 2``.
    supersample : int, optional
        Sub-pixel factor of the drawing grid.

    Returns
    -------
    (size, size) ndarray
        Non-negative float64 kernel summing to 1, centre of mass at the centre.

    Example
    -------
    >>> k = linear_kernel(9, 30)
    >>> k.shape, round(float(k.sum()), 12)
    ((11, 11), 1.0)
    """
    length = float(length)
    if not np.isfinite(length) or length < 0:
        raise InputError(f"length must be finite and >= 0, got {length}")
    supersample = int(supersample)
    if supersample < 1:
        raise InputError("supersample must be >= 1")
    if size is None:
        size = int(np.ceil(length + 2))
        size += 1 - size % 2
    size = int(size)
    if size < 1 or size % 2 == 0:
        raise InputError(f"size must be a positive odd integer, got {size}")
    if length > size - 1:
        raise InputError(f"length {length} does not fit a {size}x{size} window")
    c = size // 2
    theta = np.deg2rad(angle_deg)
    # Sample points at mid-points of equal sub-intervals (spacing 1/(4 s) px)
    # so the discrete mass distribution is symmetric about the centre.
    n = max(1, int(np.ceil(length * supersample * 4)))
    t = (np.arange(n) + 0.5) / n - 0.5
    rows = c - length * t * np.sin(theta)
    cols = c + length * t * np.cos(theta)
    # Fine pixel index: output pixel i covers [i - 0.5, i + 0.5).
    fr = np.clip(np.floor((rows + 0.5) * supersample), 0, size * supersample - 1).astype(np.intp)
    fc = np.clip(np.floor((cols + 0.5) * supersample), 0, size * supersample - 1).astype(np.intp)
    fine = np.bincount(fr * size * supersample + fc, minlength=(size * supersample) ** 2)
    fine = fine.reshape(size * supersample, size * supersample).astype(np.float64)
    k = fine.reshape(size, supersample, size, supersample).sum(axis=(1, 3))
    k = _normalize(k)
    # Floor effects can leave the mass a hair off-centre; keep it exact-ish by
    # symmetrising with the 180-degree rotation (a centred line is symmetric).
    return 0.5 * (k + k[::-1, ::-1])


def linear_kernel_bank(n=256, *, lengths=None, angles=None, size=45, supersample=8):
    """A grid of linear motion kernels (lengths x angles).

    DUBLID trains on 256 linear kernels; the default here is 16 lengths
    evenly spaced in [5, 35] times 16 angles evenly spaced in [0, 180).

    Parameters
    ----------
    n : int, optional
        Total number of kernels when ``lengths``/``angles`` are not given; must
        be a perfect square in that case.
    lengths, angles : sequence of float, optional
        Explicit grid axes (angles in degrees); ``n`` is then ignored.
    size : int, optional
        Odd window size of every kernel.
    supersample : int, optional
        See :func:`linear_kernel`.

    Returns
    -------
    (N, size, size) ndarray
        Kernels ordered length-major.

    Example
    -------
    >>> linear_kernel_bank(4, size=41).shape
    (4, 41, 41)
    """
    if lengths is None or angles is None:
        m = int(round(np.sqrt(n)))
        if m * m != n:
            raise InputError(f"n={n} is not a perfect square; pass lengths and angles")
        if lengths is None:
            lengths = np.linspace(5.0, 35.0, m)
        if angles is None:
            angles = np.arange(m) * (180.0 / m)
    bank = [linear_kernel(L, a, size=size, supersample=supersample)
            for L in lengths for a in angles]
    return np.stack(bank)


# --------------------------------------------------------------------------
# camera-shake kernels
# --------------------------------------------------------------------------

def shake_kernel(rng, *, size=45, min_extent=5.0, max_extent=None, n_steps=256,
                 inertia=(0.01, 0.1), spring=(0.0, 0.002), jerk_rate=(0.0, 0.01),
                 jerk_scale=10.0, drift=(0.0, 1.0)):
    """Random camera-shake kernel from a simulated camera trajectory.

    In the spirit of Boracchi & Foi (2012), the image-plane trajectory
    ``x_t`` (complex) follows a damped random walk with inertia,
    ``v_t = (1 - d) v_{t-1} - c x_{t-1} + w_t`` with ``x_t = x_{t-1} + v_t``,
    driven by Gaussian noise plus a constant drift and sparse impulsive
    jerks (abrupt velocity changes).  The walk is scaled to a random extent,
    rasterised with bilinear sub-pixel accumulation (equal exposure per time
    step, so slow parts are brighter), and centred by its centre of mass.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    size : int, optional
        Odd window size.
    min_extent, max_extent : float, optional
        Range of the trajectory's bounding-box side, drawn uniformly; the
        default maximum is ``size - 2``.  The trajectory is shrunk further if
        needed so the centred kernel fits the window.
    n_steps : int, optional
        Number of time steps of the walk (densified to <= 0.25 px spacing
        before rasterising).
    inertia, spring, jerk_rate, drift : (float, float), optional
        Ranges for the damping ``d``, the centring spring ``c``, the per-step
        jerk probability and the drift (relative to the noise std).  Small
        ``d`` and ``c`` give smooth paths with few turns, like measured shake
        (Levin et al. 2009); larger values give tangled paths.
    jerk_scale : float, optional
        Jerk magnitude relative to the noise std.

    Returns
    -------
    (size, size) ndarray
        Non-negative float64 kernel summing to 1.

    Example
    -------
    >>> k = shake_kernel(np.random.default_rng(0), size=31)
    >>> k.shape, round(float(k.sum()), 12)
    ((31, 31), 1.0)
    """
    size = int(size)
    if size < 3 or size % 2 == 0:
        raise InputError(f"size must be an odd integer >= 3, got {size}")
    if max_extent is None:
        max_extent = size - 2
    max_extent = min(float(max_extent), size - 2.0)
    min_extent = min(float(min_extent), max_extent)
    n_steps = int(n_steps)
    if n_steps < 3:
        raise InputError("n_steps must be >= 3")

    d = rng.uniform(*inertia)
    c = rng.uniform(*spring)
    p = rng.uniform(*jerk_rate)
    w = rng.standard_normal(n_steps) + 1j * rng.standard_normal(n_steps)
    w += rng.uniform(*drift) * np.exp(2j * np.pi * rng.uniform())
    jerks = rng.random(n_steps) < p
    w[jerks] += jerk_scale * np.exp(2j * np.pi * rng.uniform(size=jerks.sum()))
    # The recursion is a stable AR(2) filter on x (poles |z|^2 = 1 - d).
    x = signal.lfilter([1.0], [1.0, -(2.0 - d - c), 1.0 - d], w)

    # Densify so consecutive samples are <= 0.25 px apart after scaling.
    extent = rng.uniform(min_extent, max_extent)
    span = max(np.ptp(x.real), np.ptp(x.imag), 1e-12)
    x = x * (extent / span)
    step = np.abs(np.diff(x)).max()
    up = max(1, int(np.ceil(step / 0.25)))
    if up > 1:
        t = np.arange((n_steps - 1) * up + 1) / up
        x = np.interp(t, np.arange(n_steps), x.real) + 1j * np.interp(t, np.arange(n_steps), x.imag)
    x = x - x.mean()
    # Keep every point within the window after centring on the mean, with a
    # 1 px margin for the bilinear footprint.
    half = size // 2 - 1
    reach = max(np.abs(x.real).max(), np.abs(x.imag).max(), 1e-12)
    if reach > half:
        x = x * (half / reach)
    centre = size // 2
    k = _splat_bilinear(centre + x.imag, centre + x.real, np.ones(x.size), (size, size))
    return _normalize(k)


# --------------------------------------------------------------------------
# measured kernel pool and augmentation
# --------------------------------------------------------------------------

#: Levin's 8 evaluation kernels, and KAIR's copies of Levin k8 / k7.
LEVIN_KEYS = ("levin09_", "kair_k12_08", "kair_k12_09")


def load_kernel_pool(path=None, *, exclude=LEVIN_KEYS, max_size=None, trim_tol=1e-3,
                     return_names=False):
    """Load measured/estimated kernels from an ``.npz`` pool.

    Parameters
    ----------
    path : str or Path, optional
        The ``.npz`` file; default ``../shared/data/kernels_real/kernels_real.npz``.
    exclude : sequence of str, optional
        Key prefixes to drop.  Levin's kernels are excluded by default because
        they are the evaluation kernels; so are ``kair_k12_08``/``09``, which
        are Levin k8/k7 rotated by 180 degrees (the README of the shared
        data says so).  Note ``kair_k12_00..07`` are synthetic Gaussians; add
        ``"kair_k12_0"`` to drop them too.
    max_size : int, optional
        Odd window size; kernels whose (trimmed) support does not fit a
        centred ``max_size x max_size`` window are dropped.
    trim_tol : float, optional
        Border rows/columns with all values <= ``trim_tol * max`` are cropped
        (removes empty margins and negligible Gaussian tails); the kernel is
        then renormalised.
    return_names : bool, optional
        Also return the list of keys kept.

    Returns
    -------
    list of ndarray (and list of str)
        Float64 kernels, each summing to 1, sorted by key.

    Example
    -------
    >>> pool = load_kernel_pool(max_size=45)  # doctest: +SKIP
    """
    path = Path(DEFAULT_KERNEL_POOL if path is None else path)
    if not path.is_file():
        raise InputError(f"kernel pool not found: {path}")
    if isinstance(exclude, str):
        exclude = (exclude,)
    kernels, names = [], []
    with np.load(path) as data:
        for key in sorted(data.files):
            if any(key.startswith(e) for e in exclude):
                continue
            k = np.asarray(data[key], dtype=np.float64)
            if k.ndim != 2 or not np.all(np.isfinite(k)) or k.max() <= 0:
                continue
            k = _normalize(_trim(_normalize(k), trim_tol))
            if max_size is not None and not _fits(k, max_size):
                continue
            kernels.append(k)
            names.append(key)
    return (kernels, names) if return_names else kernels


def _dihedral(a, code):
    """Apply one of the 8 flips/90-degree rotations (code in 0..7)."""
    a = np.rot90(a, code % 4)
    return a[:, ::-1] if code >= 4 else a


def augment_kernel(k, rng):
    """Random flip / 90-degree rotation of a kernel (one of 8, uniformly).

    Example
    -------
    >>> float(augment_kernel(np.eye(3) / 3, np.random.default_rng(0)).sum())
    1.0
    """
    return np.ascontiguousarray(_dihedral(np.asarray(k), int(rng.integers(8))))


# --------------------------------------------------------------------------
# images and patches
# --------------------------------------------------------------------------

def list_images(folder, *, recursive=True):
    """Image files (png/jpg/jpeg/tif/tiff, any case) under a folder, sorted.

    Example
    -------
    >>> list_images("../shared/data/train_images")[:1]  # doctest: +SKIP
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def load_gray(path):
    """Read an image as gray float64 in [0, 1].

    Colour is converted with the rgb2gray weights (0.2125, 0.7154, 0.0721);
    alpha is dropped; integer images are scaled by their type's maximum.

    Example
    -------
    >>> load_gray("kodim01.png")  # doctest: +SKIP
    """
    import imageio.v3 as iio

    try:
        a = np.asarray(iio.imread(path))
    except Exception as exc:  # imageio raises many types
        raise InputError(f"cannot read image {path}: {exc}") from exc
    if np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float64) / np.iinfo(a.dtype).max
    elif a.dtype == bool:
        a = a.astype(np.float64)
    else:
        a = a.astype(np.float64)
    if a.ndim == 3 and a.shape[-1] in (2, 4):  # drop alpha
        a = a[..., :-1]
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] == 3:
        a = a @ _GRAY_WEIGHTS
    if a.ndim != 2:
        raise InputError(f"unsupported image shape {a.shape} in {path}")
    return np.clip(a, 0.0, 1.0)


def _pair(size):
    if np.ndim(size) == 0:
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def random_patch(image, rng, size, *, min_std=0.05, tries=20):
    """Random crop with flat-patch rejection and dihedral augmentation.

    Parameters
    ----------
    image : (H, W) ndarray
        Gray image.
    rng : numpy.random.Generator
    size : int or (int, int)
        Output patch shape ``(h, w)``.
    min_std : float, optional
        Crops whose standard deviation is below this are rejected.
    tries : int, optional
        Number of crops tried; if none passes, the crop with the largest
        standard deviation is returned.

    Returns
    -------
    (h, w) ndarray
        The patch, randomly flipped and rotated by a multiple of 90 degrees.

    Example
    -------
    >>> img = np.random.default_rng(1).random((64, 64))
    >>> random_patch(img, np.random.default_rng(0), 16).shape
    (16, 16)
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"expected a gray (H, W) image, got shape {image.shape}")
    h, w = _pair(size)
    code = int(rng.integers(8))
    # A quarter turn swaps the axes, so crop the transposed shape.
    ch, cw = (w, h) if code % 2 else (h, w)
    H, W = image.shape
    if ch > H or cw > W:
        raise InputError(f"image {image.shape} smaller than patch {(ch, cw)}")
    best, best_std = None, -1.0
    for _ in range(max(1, int(tries))):
        r = int(rng.integers(H - ch + 1))
        c = int(rng.integers(W - cw + 1))
        crop = image[r:r + ch, c:c + cw]
        s = float(crop.std())
        if s > best_std:
            best, best_std = crop, s
        if s >= min_std:
            break
    return np.ascontiguousarray(_dihedral(best, code))


# --------------------------------------------------------------------------
# degradation
# --------------------------------------------------------------------------

def blur_valid(sharp_patch, kernel):
    """Blur by true 'valid' convolution and return the aligned sharp region.

    Parameters
    ----------
    sharp_patch : (H, W) ndarray
    kernel : (Kh, Kw) ndarray
        Kernel in convolution orientation, centre at ``(Kh // 2, Kw // 2)``.

    Returns
    -------
    blurred : (H - Kh + 1, W - Kw + 1) ndarray
    sharp_cropped : ndarray, same shape
        ``sharp_patch[a:a + h, b:b + w]`` with ``a = (Kh - 1) // 2``,
        ``b = (Kw - 1) // 2``, so ``blurred[i, j]`` is the kernel-weighted
        average centred on ``sharp_cropped[i, j]``.

    Example
    -------
    >>> y, x = blur_valid(np.ones((10, 10)), np.ones((3, 3)) / 9)
    >>> y.shape, np.allclose(y, x)
    ((8, 8), True)
    """
    x = np.asarray(sharp_patch, dtype=np.float64)
    k = np.asarray(kernel, dtype=np.float64)
    if x.ndim != 2 or k.ndim != 2:
        raise InputError("blur_valid expects 2-D image and kernel")
    kh, kw = k.shape
    if kh > x.shape[0] or kw > x.shape[1]:
        raise InputError(f"kernel {k.shape} larger than patch {x.shape}")
    y = signal.fftconvolve(x, k, mode="valid")
    a, b = (kh - 1) // 2, (kw - 1) // 2
    return y, x[a:a + y.shape[0], b:b + y.shape[1]].copy()


def degrade(blurred, rng, *, noise_sigma=0.01, quantize=True):
    """Add white Gaussian noise, optionally quantise to 8 bits, clip to [0, 1].

    Parameters
    ----------
    blurred : ndarray
    rng : numpy.random.Generator
    noise_sigma : float or (float, float), optional
        Noise standard deviation, or a range from which it is drawn
        uniformly (once per call, i.e. per image).
    quantize : bool, optional
        Round to multiples of 1/255 (as an 8-bit camera file would).

    Returns
    -------
    ndarray
        Float64, same shape, in [0, 1].

    Example
    -------
    >>> y = degrade(np.full((4, 4), 0.5), np.random.default_rng(0), noise_sigma=(0, 0.02))
    >>> bool(((y >= 0) & (y <= 1)).all())
    True
    """
    y = np.asarray(blurred, dtype=np.float64)
    if np.ndim(noise_sigma) == 0:
        sigma = float(noise_sigma)
    else:
        lo, hi = noise_sigma
        sigma = float(rng.uniform(lo, hi))
    if sigma < 0:
        raise InputError("noise_sigma must be >= 0")
    if sigma > 0:
        y = y + sigma * rng.standard_normal(y.shape)
    y = np.clip(y, 0.0, 1.0)
    if quantize:
        y = np.round(y * 255.0) / 255.0
    return y


# --------------------------------------------------------------------------
# pair sampling and batching
# --------------------------------------------------------------------------

def sample_rng(seed, step, index):
    """Generator for sample ``index`` of batch ``step`` (pure in its arguments).

    Example
    -------
    >>> sample_rng(0, 3, 1).random() == sample_rng(0, 3, 1).random()
    True
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(step), int(index)]))


class PairSampler:
    """Draws (blurred, sharp, kernel) training triplets.

    Parameters
    ----------
    images : sequence of path or ndarray
        Image files (loaded lazily as gray and cached) or gray arrays.
    patch_size : int or (int, int), optional
        Shape ``(h, w)`` of the returned blurred/sharp pair.  The sharp crop
        taken from the image is ``(h + K - 1, w + K - 1)``.
    kernel_size : int, optional
        Odd kernel window ``K``; every returned kernel is padded/centred to it.
    kernel_mode : {"linear", "shake", "mixed", "pool"}, optional
        Kernel source; "mixed" draws from linear, shake and the measured pool
        with probabilities ``mix``.
    mix : (float, float, float), optional
        Probabilities of (linear, shake, pool) in "mixed" mode; renormalised
        if the pool is empty.
    linear_bank : (N, K', K') ndarray, optional
        Linear kernels to draw from; default ``linear_kernel_bank(256)``
        (lengths capped to fit the window).
    pool : list of ndarray, optional
        Measured kernels; default :func:`load_kernel_pool` with
        ``max_size=kernel_size`` if the shared pool exists, else empty.
    shake_options : dict, optional
        Extra keyword arguments for :func:`shake_kernel`.
    noise_sigma, quantize :
        Passed to :func:`degrade`.
    min_std, tries :
        Passed to :func:`random_patch`.
    coarse_start : float, optional
        Probability that a training pair also carries an imperfect initial
        kernel (:func:`coarse_start_kernel` with factors in
        `coarse_factor`), as the coarse-to-fine inference feeds the network
        at every pyramid level but the coarsest; otherwise the start is the
        delta. With 0 (default) batches carry no initial kernels.
    dtype : numpy dtype, optional
        Output dtype (float32 by default, to halve batch memory).

    Example
    -------
    >>> img = np.random.default_rng(0).random((96, 96))
    >>> s = PairSampler([img], patch_size=32, kernel_size=15, kernel_mode="linear")
    >>> y, x, k = s.sample(np.random.default_rng(1))
    >>> y.shape, x.shape, k.shape
    ((32, 32), (32, 32), (15, 15))
    """

    def __init__(self, images, *, patch_size=128, kernel_size=45, kernel_mode="mixed",
                 mix=(0.3, 0.5, 0.2), linear_bank=None, pool=None, shake_options=None,
                 noise_sigma=(0.0, 0.02), quantize=True, min_std=0.05, tries=20,
                 coarse_start=0.0, coarse_factor=(0.45, 0.85), dtype=np.float32):
        self.images = list(images)
        if not self.images:
            raise InputError("PairSampler needs at least one image")
        self.patch_size = _pair(patch_size)
        self.kernel_size = int(kernel_size)
        if self.kernel_size < 3 or self.kernel_size % 2 == 0:
            raise InputError(f"kernel_size must be an odd integer >= 3, got {kernel_size}")
        if kernel_mode not in ("linear", "shake", "mixed", "pool"):
            raise InputError(f"unknown kernel_mode {kernel_mode!r}")
        self.kernel_mode = kernel_mode
        K = self.kernel_size

        self.linear_bank = None
        if kernel_mode in ("linear", "mixed"):
            if linear_bank is None:
                m = 16
                lengths = np.linspace(5.0, min(35.0, K - 1.0), m)
                angles = np.arange(m) * (180.0 / m)
                linear_bank = linear_kernel_bank(lengths=lengths, angles=angles, size=K)
            self.linear_bank = [center_kernel(k, K) for k in linear_bank]

        self.pool = []
        if kernel_mode in ("pool", "mixed"):
            if pool is None:
                pool = load_kernel_pool(max_size=K) if DEFAULT_KERNEL_POOL.is_file() else []
            self.pool = [center_kernel(k, K) for k in pool]
            if kernel_mode == "pool" and not self.pool:
                raise InputError("kernel_mode='pool' but the kernel pool is empty")

        mix = np.asarray(mix, dtype=np.float64)
        if mix.shape != (3,) or np.any(mix < 0):
            raise InputError("mix must be three non-negative probabilities")
        if not self.pool:
            mix[2] = 0.0
        if mix.sum() <= 0:
            raise InputError("mix has no positive probability")
        self.mix = mix / mix.sum()
        self.shake_options = dict(shake_options or {})
        self.noise_sigma = noise_sigma
        self.quantize = bool(quantize)
        self.min_std = float(min_std)
        self.tries = int(tries)
        if not 0.0 <= float(coarse_start) <= 1.0:
            raise InputError(f"coarse_start must be a probability, not {coarse_start}")
        self.coarse_start = float(coarse_start)
        self.coarse_factor = tuple(float(f) for f in coarse_factor)
        self.dtype = np.dtype(dtype)
        self._cache = {}
        self._lock = threading.Lock()

    def __len__(self):
        return len(self.images)

    def image(self, i):
        """Gray image ``i`` (loaded on first use, then cached)."""
        item = self.images[i]
        if isinstance(item, np.ndarray):
            return item
        with self._lock:
            img = self._cache.get(i)
        if img is None:
            img = load_gray(item)
            with self._lock:
                img = self._cache.setdefault(i, img)
        return img

    def kernel(self, rng):
        """Draw one centred ``K x K`` kernel according to ``kernel_mode``."""
        K = self.kernel_size
        mode = self.kernel_mode
        if mode == "mixed":
            mode = ("linear", "shake", "pool")[int(rng.choice(3, p=self.mix))]
        if mode == "linear":
            k = self.linear_bank[int(rng.integers(len(self.linear_bank)))]
            return augment_kernel(k, rng)  # flips add the mirrored angles
        if mode == "shake":
            return shake_kernel(rng, size=K, **self.shake_options)
        k = self.pool[int(rng.integers(len(self.pool)))]
        return augment_kernel(k, rng)

    def sample(self, rng):
        """Return ``(blurred (h, w), sharp (h, w), kernel (K, K))``."""
        K = self.kernel_size
        h, w = self.patch_size
        img = self.image(int(rng.integers(len(self.images))))
        patch = random_patch(img, rng, (h + K - 1, w + K - 1),
                             min_std=self.min_std, tries=self.tries)
        k = self.kernel(rng)
        blurred, sharp = blur_valid(patch, k)
        blurred = degrade(blurred, rng, noise_sigma=self.noise_sigma, quantize=self.quantize)
        return (blurred.astype(self.dtype), sharp.astype(self.dtype), k.astype(self.dtype))


    def initial_kernel(self, k, rng):
        """The network's initial kernel for a pair with true kernel `k`: the
        delta, or with probability ``coarse_start`` a coarse-scale version
        of `k` (:func:`coarse_start_kernel`)."""
        K = self.kernel_size
        if rng.random() < self.coarse_start:
            return coarse_start_kernel(k, rng.uniform(*self.coarse_factor)).astype(self.dtype)
        d = np.zeros((K, K), dtype=self.dtype)
        d[K // 2, K // 2] = 1
        return d


def coarse_start_kernel(k, factor):
    """`k` as a coarse-to-fine pyramid hands it to the next level: resized
    by `factor` (< 1: detail lost at the coarse scale), resized back to its
    window, non-negative, sum 1, centre of mass at the centre.

    Examples
    --------
    >>> k = np.zeros((15, 15)); k[7, 3:12] = 1 / 9
    >>> k0 = coarse_start_kernel(k, 0.6)
    >>> k0.shape, round(float(k0.sum()), 6), bool(k0[7].sum() > 0.5)
    ((15, 15), 1.0, True)
    """
    from .steps.kernel import center_of_mass_shift, shift_kernel
    from .tv import resize_kernel

    K = k.shape[0]
    small = max(3, int(round(K * float(factor))) | 1)
    out = resize_kernel(resize_kernel(np.asarray(k, dtype=np.float64), small), K)
    return shift_kernel(out, center_of_mass_shift(out))


class Batch(NamedTuple):
    """Stacked training batch."""

    blurred: np.ndarray  #: (B, h, w)
    sharp: np.ndarray    #: (B, h, w)
    kernel: np.ndarray   #: (B, K, K)
    k0: np.ndarray | None = None  #: (B, K, K) initial kernels, or None (deltas)


def make_batch(sampler, batch_size, seed, step):
    """Batch for ``step``: a pure function of ``(seed, step)`` (and the sampler).

    Example
    -------
    >>> img = np.random.default_rng(0).random((64, 64))
    >>> s = PairSampler([img], patch_size=16, kernel_size=9, kernel_mode="shake")
    >>> make_batch(s, 2, seed=0, step=5).kernel.shape
    (2, 9, 9)
    """
    items, k0 = [], []
    for i in range(int(batch_size)):
        rng = sample_rng(seed, step, i)
        items.append(sampler.sample(rng))
        if getattr(sampler, "coarse_start", 0.0) > 0:
            # drawn after the pair, so batches without coarse starts are unchanged
            k0.append(sampler.initial_kernel(items[-1][2], rng))
    return Batch(*(np.stack(a) for a in zip(*items)), k0=np.stack(k0) if k0 else None)


class BatchStream:
    """Deterministic, prefetching iterator of training batches.

    Yields :class:`Batch` for steps ``start_step, start_step + 1, ...`` (up to
    ``stop_step`` exclusive, if given).  Batches are built by
    :func:`make_batch` in background threads, ``prefetch`` steps ahead, and
    returned in step order, so the output never depends on thread timing and
    a run resumed with ``start_step=s`` continues exactly.

    Parameters
    ----------
    sampler : PairSampler
    batch_size : int
    seed : int
    start_step : int, optional
    prefetch : int, optional
        Number of batches in flight.
    threads : int, optional
        Worker threads.
    stop_step : int, optional

    Example
    -------
    >>> img = np.random.default_rng(0).random((64, 64))
    >>> s = PairSampler([img], patch_size=16, kernel_size=9, kernel_mode="linear")
    >>> with BatchStream(s, 4, seed=1, stop_step=2) as stream:
    ...     shapes = [b.blurred.shape for b in stream]
    >>> shapes
    [(4, 16, 16), (4, 16, 16)]
    """

    def __init__(self, sampler, batch_size, *, seed, start_step=0, prefetch=2, threads=2,
                 stop_step=None):
        self.sampler = sampler
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise InputError("batch_size must be >= 1")
        self.seed = int(seed)
        self.step = int(start_step)  # step of the next batch returned
        self.stop_step = None if stop_step is None else int(stop_step)
        self.prefetch = max(1, int(prefetch))
        self._pool = ThreadPoolExecutor(max_workers=max(1, int(threads)),
                                        thread_name_prefix="hqsdeblur-data")
        self._pending = deque()
        self._next_submit = self.step
        self._closed = False
        self._fill()

    def _fill(self):
        while len(self._pending) < self.prefetch and (
                self.stop_step is None or self._next_submit < self.stop_step):
            fut = self._pool.submit(make_batch, self.sampler, self.batch_size,
                                    self.seed, self._next_submit)
            self._pending.append(fut)
            self._next_submit += 1

    def __iter__(self):
        return self

    def __next__(self):
        if self._closed or not self._pending:
            raise StopIteration
        fut = self._pending.popleft()
        self._fill()
        batch = fut.result()
        self.step += 1
        return batch

    def close(self):
        """Cancel pending work and stop the worker threads."""
        if self._closed:
            return
        self._closed = True
        for fut in self._pending:
            fut.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# --------------------------------------------------------------------------
# train / hold-out split
# --------------------------------------------------------------------------

def split_images(paths, *, holdout=("kodak24",), include=None):
    """Split image paths into (train, held_out) by parent-folder group name.

    A path belongs to a group if any of its parent folder names equals the
    group name.

    Parameters
    ----------
    paths : sequence of path
    holdout : sequence of str, optional
        Groups kept out of training (returned second).
    include : sequence of str, optional
        If given, only these groups (plus the hold-out groups) are kept; other
        paths are dropped from both lists.

    Returns
    -------
    train, held_out : list of Path

    Example
    -------
    >>> tr, ho = split_images(["a/kodak24/1.png", "a/bsds500_train/2.jpg"])
    >>> [p.name for p in tr], [p.name for p in ho]
    (['2.jpg'], ['1.png'])
    """
    if isinstance(holdout, str):
        holdout = (holdout,)
    if isinstance(include, str):
        include = (include,)
    holdout = set(holdout)
    train, held = [], []
    for p in paths:
        p = Path(p)
        groups = {q.name for q in p.parents}
        if groups & holdout:
            held.append(p)
        elif include is None or groups & set(include):
            train.append(p)
    return train, held
