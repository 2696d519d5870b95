"""Classical blind deconvolution: sparse-gradient HQS, coarse to fine.

The kernel is fitted to the derivatives ``y_c = d_c * y`` of the blurred
image (horizontal and vertical differences by default, any filter bank
allowed). Each outer iteration alternates

1. **sparse latent gradients** ``z_c``: half-quadratic splitting of
   ``||k * x - y||^2 + lam * R(grad x)`` over a latent image ``x``
   (``latent='image'``, default: the x-step is the closed form of
   :func:`hqsdeblur.steps.reconstruct.reconstruct`) or directly over the
   features ``g_c`` (``latent='gradient'``: the x-step is
   :func:`hqsdeblur.steps.features.feature_update`, ``zeta = 1/beta``), with a
   shrinkage step while ``beta`` grows geometrically. ``R`` is the L0 norm
   of the gradient magnitude (hard threshold ``|g|^2 > lam / beta``, Xu,
   Zheng & Jia 2013; default) or its L1 norm (isotropic soft threshold,
   total variation, Perrone & Favaro 2014). The result keeps only salient
   edges: it is the "unnatural" intermediate the kernel is fitted to, not the
   final image. The image-domain latent is much better on Levin's set (in an
   8-image check, error ratio <= 3 on 88 % of the images against 38 % for
   the feature-domain one, whose gradients need not be integrable);
2. **kernel**: ridge least squares ``min_k sum_c ||z_c * k - y_c||^2 +
   gamma ||k||^2`` (:func:`hqsdeblur.steps.kernel.kernel_ls`), cropped to the
   kernel window, then the constraint: exact projection onto the simplex
   (:func:`~hqsdeblur.steps.kernel.project_simplex`) or clipping of negative
   values, removal of entries below a fraction of the maximum and of small
   isolated connected components, renormalisation, and re-centring by the
   centre of mass (so the image does not drift).

``lam`` decays over the iterations of each scale (continuation), and the
whole loop runs over a pyramid (factor ``1/sqrt(2)``, 3-5 px kernel at the
coarsest level), the kernel being upsampled between levels. Borders are made
periodic with :func:`hqsdeblur.boundary.pad_smooth_wrap` before any FFT.
The final image is a non-blind deconvolution
(:func:`hqsdeblur.nonblind.deconvolve`, hyper-Laplacian by default) of the
input with the estimated kernel; colour images use the luminance for the
kernel and are restored channel by channel.

The coarse-to-fine loop is sensitive to its schedule: on large blurs
(Lai et al.'s 51-75 px kernels) two reasonable ``lam`` schedules fail on
different images. :func:`blind_deconvolve` therefore runs the schedules of
:data:`CANDIDATES` (one estimate each) and keeps the kernel whose non-blind
result has the sparsest gradients (:func:`gradient_sparsity`, the
``l1 / l2`` ratio of Krishnan et al. 2011: blur and ringing both raise it).
Safeguard: a kernel whose support exceeds ``max_support``
(:func:`kernel_support`, non-zero entries per window width; a shake kernel is
a thin path, a failed estimate spread-out noise) is never chosen; when every
candidate is rejected the input is returned unchanged with the delta kernel.
"""

from __future__ import annotations

import contextlib
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage

from .backend import _workers, blas_single_thread, get_backend, to_numpy
from .boundary import pad_smooth_wrap
from .errors import InputError
from .nonblind import _ffts, _local, _prepare, _resolve_backend, deconvolve, derivative_otfs, grad, grad_adjoint
from .steps import fourier
from .steps.features import feature_update
from .steps.kernel import clean_normalize, kernel_ls, project_simplex

__all__ = ["blind_deconvolve", "estimate_kernel", "kernel_support", "gradient_sparsity", "pyramid_sizes",
           "lam_for", "noise_rules", "DEFAULTS", "CANDIDATES"]

from .validate import LUMA as _LUMA  # noqa: E402

#: Default parameters of the kernel-estimation stage (see
#: :func:`estimate_kernel`). Chosen on the Levin et al. set with one setting
#: for all images (benchmarks/eval_tv.py).
DEFAULTS = dict(
    lam=None,  # initial prior weight at every scale; None: lam_for(kernel_size)
    lam_decay=1 / 1.1,  # per outer iteration
    lam_min=1e-4,
    lam_carry=False,  # True: lam keeps decaying across levels instead of restarting at each
    gamma=2.0,  # kernel ridge weight
    iterations=5,  # outer iterations per scale
    beta_ratio=2.0,  # beta growth in the latent HQS loop
    beta_max=1e3,  # largest beta
    threshold=0.05,  # kernel entries below threshold * max are removed
    min_component=0.02,  # components lighter than this fraction are removed
    constraint="clip",  # 'clip' (clip negatives, renormalise) or 'simplex'
    latent="image",  # 'image' (sparse-gradient image) or 'gradient' (features)
    scale_factor=1 / math.sqrt(2),
    coarsest=5,  # kernel size at the coarsest level (>= 3)
    max_support=15.0,  # back off when kernel_support() exceeds this
    noisy=0.005,  # noise level above which the noise-adaptive rules apply
    intensity=0.0,  # weight (times lam) of an L0 prior on 1 - x (white background); 0: off
    white=0.1,  # 'intensity' candidates run only if this fraction of pixels is >= 0.98
)

#: Schedules tried by :func:`blind_deconvolve` (overrides of :data:`DEFAULTS`;
#: explicit keyword arguments win over them). The first restarts ``lam`` at
#: every level with 10 iterations (robust basin, but the large initial ``lam``
#: biases the fit of 75 px kernels); the second lets ``lam`` decay through the
#: whole pyramid down to 5e-4, a weight at which the true kernel is a stable
#: fixed point at every level. On Lai's set (20 images) alone they are
#: positive on 16 and 15 images, the sparsest of the two on 19; on Levin's the
#: choice is neutral (benchmarks/eval_tv.py). Noisy input runs the first only.
#: The third adds an L0 prior on the latent's distance to white (Pan et al.
#: 2014's intensity prior, for text and documents): on Lai's text image with
#: the 75 px kernel both others fail (ISNR -0.12 dB) and it recovers the
#: kernel (+8.6 dB); it runs only on images whose pixels are white (>= 0.98)
#: for at least a fraction ``white`` (text 28-39 %, every other Lai and
#: Levin image at most 7 %).
CANDIDATES = (
    {"iterations": 10},
    {"iterations": 5, "lam_carry": True, "lam_min": 5e-4},
    {"iterations": 10, "intensity": 0.25},
)


def noise_rules(gray, *, final="hyper-laplacian", noisy=DEFAULTS["noisy"]):
    """The classical mode's rules for noisy input, for any kernel estimator
    followed by the non-blind step.

    Above the noise level `noisy` the kernel is estimated on a copy smoothed
    by a 1 px Gaussian (the blur is much wider; the finest scale's gradients
    are noise) and the final deconvolution's prior weight grows with the
    noise level. Clean and 8-bit images (noise level ~0.003) are untouched.

    Returns
    -------
    sigma : float
        :func:`noise_level` of `gray`.
    is_noisy : bool
    source : ndarray
        The image to estimate the kernel on.
    weight : float or None
        The final step's prior weight (None: its default).
    """
    sigma = noise_level(gray)
    if not sigma > noisy:
        return sigma, False, gray, None
    base = 1e-3 if final == "tv" else 3e-4  # nonblind.deconvolve's defaults
    return sigma, True, ndimage.gaussian_filter(gray, 1.0, mode="reflect"), base * sigma / 0.0035


def noise_level(gray):
    """Robust estimate of the noise standard deviation of a gray image.

    Median absolute value of the finest diagonal (Haar) detail, / 0.6745
    (Donoho & Johnstone): the blur leaves almost no signal at that scale.
    8-bit quantisation alone reads about 0.003.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> round(noise_level(0.5 + 0.02 * rng.standard_normal((256, 256))), 2)
    0.02
    """
    d = (gray[1:, 1:] - gray[:-1, 1:] - gray[1:, :-1] + gray[:-1, :-1]) / 2
    return float(np.median(np.abs(d)) / 0.6745)



def lam_for(kernel_size):
    """Default initial sparsity weight for a kernel window.

    Larger blurs leave the intermediate image noisier, so the L0 weight grows
    with the window: ``1e-3 * max(1, kernel_size / 31) ** 1.5`` (1e-3 was
    best on Levin's set with a 31 px window, about 4e-3 on Lai's with 75 px;
    two calibration points, so treat the exponent as a rule of thumb).

    Examples
    --------
    >>> lam_for(31), round(lam_for(75), 4)
    (0.001, 0.0038)
    """
    return 1e-3 * max(1.0, kernel_size / 31) ** 1.5


def pyramid_sizes(kernel_size, *, scale_factor=1 / math.sqrt(2), coarsest=5):
    """Kernel sizes (odd) and image scales of the pyramid, coarse to fine.

    Examples
    --------
    >>> [k for k, s in pyramid_sizes(31)]
    [5, 9, 11, 15, 23, 31]
    """
    out = []
    s = 1.0
    while True:
        k = int(round(kernel_size * s))
        k = max(3, k + 1 - k % 2)
        if out and k >= out[-1][0]:
            break
        out.append((k, s))
        if k <= coarsest:
            break
        s *= scale_factor
    return out[::-1]


def resize_kernel(k, size):
    """Resize a kernel to (size, size) (bilinear), non-negative, sum 1."""
    kh = k.shape[0]
    if kh == size:
        return k
    z = ndimage.zoom(k, size / kh, order=1, mode="grid-constant", grid_mode=True)
    out = np.zeros((size, size))
    h = min(size, z.shape[0])
    w = min(size, z.shape[1])
    oy, ox = (size - h) // 2, (size - w) // 2
    zy, zx = (z.shape[0] - h) // 2, (z.shape[1] - w) // 2
    out[oy : oy + h, ox : ox + w] = z[zy : zy + h, zx : zx + w]
    out = np.maximum(out, 0)
    s = out.sum()
    if not s > 0:
        out[:] = 0
        out[size // 2, size // 2] = 1
        return out
    return out / s


def kernel_support(k):
    """Support of a kernel in units of its window width: the number of
    non-zero entries divided by the window side, i.e. the mean thickness of
    the kernel if it were a path as long as the window.

    A no-reference sanity measure: camera-shake kernels are thin paths
    (about 2-7 for the ground truth of Levin's and Lai's sets; at most 6 for
    our Levin estimates, 12 for the working Lai ones), while failed estimates
    fill the window with noise (18-43 on Lai's 75 px blurs). Large smooth
    blurs (a wide Gaussian) also score high: raise ``max_support`` for them.

    Examples
    --------
    >>> k = np.zeros((5, 5)); k[2, 1:4] = 1 / 3
    >>> kernel_support(k)
    0.6
    """
    k = np.asarray(k)
    return float(np.count_nonzero(k > 0) / (0.5 * (k.shape[0] + k.shape[1])))


def gradient_sparsity(image, *, border=0):
    """Normalised sparsity ``||grad x||_1 / ||grad x||_2`` of an image.

    Scale invariant; lower for sharper images: blur spreads each edge over
    many small gradients, and deconvolution with a wrong kernel adds ringing
    (Krishnan, Tay & Fergus 2011). Used to choose between kernel estimates
    without a reference (the result with the lowest value wins). Gradients
    within `border` pixels of the edges are ignored (boundary artefacts).

    Examples
    --------
    >>> x = np.zeros((32, 32)); x[:, 16:] = 1
    >>> from scipy.ndimage import uniform_filter
    >>> gradient_sparsity(x) < gradient_sparsity(uniform_filter(x, 5))
    True
    """
    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 3:
        x = x @ _LUMA
    H, W = x.shape
    b = int(border) if 2 * int(border) < min(H, W) - 2 else 0
    x = x[b : H - b, b : W - b]
    g = np.hypot(np.diff(x, axis=1)[:-1], np.diff(x, axis=0)[:, :-1])
    l2 = float(np.sqrt((g * g).sum()))
    return float(g.sum() / l2) if l2 > 0 else math.inf


def _clean_kernel(k, *, threshold, min_component, constraint):
    """Kernel constraint on the host: non-negative, sparse, connected, sum 1,
    centred (:func:`~hqsdeblur.steps.kernel.clean_normalize` on the whole
    window, after the simplex projection when `constraint` asks for it)."""
    if constraint == "simplex":
        k = project_simplex(k)
    return clean_normalize(k, k.shape, threshold=threshold, min_component=min_component)[0]


def _level_shape(shape, scale):
    return tuple(shape) if scale == 1 else tuple(max(8, int(round(n * scale))) for n in shape)


def _rescale(y, scale):
    if scale == 1:
        return y
    from skimage.transform import resize

    return resize(y, _level_shape(y.shape, scale), order=1, anti_aliasing=True, mode="reflect")


def _latent(Y, Z, K, be, grid, *, lam, betas, prior):
    """HQS for the sparse gradients: returns (z spatial, Z spectrum)."""
    xp = be.xp
    C = Y.shape[0]
    z = None
    for beta in betas:
        zeta = xp.full((C,), 1.0 / beta, dtype=Y.real.dtype)
        G = feature_update(Y, Z, K, zeta)
        g = be.irfft2(G, s=grid)
        mag2 = (g * g).sum(axis=0)
        if prior == "l0":
            # min_z beta |g - z|^2 + lam [z != 0], joint over the channels
            z = g * (mag2 > lam / beta)
        else:
            # isotropic soft threshold by lam / beta
            mag = xp.sqrt(mag2)
            z = g * (xp.maximum(mag - lam / beta, 0) / xp.maximum(mag, 1e-12))
        Z = be.rfft2(z)
    return z, Z


def _latent_image(Y0, D, K, be, grid, *, lam, betas, prior, spatial_diff=False, intensity=0.0):
    """HQS for a latent image with sparse gradients (Xu et al. 2013):
    ``x``-step ``X = (conj(K) Y0 + beta sum_c conj(D_c) Z_c) / (|K|^2 + beta
    sum_c |D_c|^2)`` (the closed form of
    :func:`~hqsdeblur.steps.reconstruct.reconstruct`, with the terms that do
    not change across the loop computed once), sparse step on ``d_c * x``.
    Returns the spectra ``D X`` of the latent gradients.

    With ``spatial_diff`` (the bank is the two forward differences) the
    gradients and their adjoint are taken in the image domain, so each step
    costs one inverse and one forward single-channel FFT instead of two each.
    This loop is the bulk of the method's run time: the steps work in place
    on reused buffers, with the same values as the plain expressions.

    ``intensity > 0`` adds ``intensity * lam * ||1 - x||_0`` (white
    background, Pan et al. 2014), split with the same ``beta``: ``u = x``
    where ``(1 - x)^2 > intensity lam / beta``, else 1; the x-step gains
    ``beta U`` above and ``beta`` below.
    """
    xp = be.xp
    rfft2, irfft2 = _ffts(be)
    KY = K.conj() * Y0
    K2 = K.real**2 + K.imag**2
    D2 = (D.real**2 + D.imag**2).sum(axis=0)
    den = xp.empty_like(K2)
    ky = _real_view(KY)
    X = Y0
    g = None
    work = None
    for beta in betas:
        u = None
        if spatial_diff:
            x = irfft2(X, grid)
            if intensity:
                u = _white_prior_split(x, intensity * lam / beta, xp)
            g = grad(x, out=g)
            if work is None:
                work = [xp.empty_like(x) for _ in range(3)]
            z = _shrink_joint(g, lam, beta, prior, xp, work=work)
            a = grad_adjoint(z, out=x, overwrite_z=True)
            if u is not None:
                a += u
            num = rfft2(a)
        else:
            g = irfft2(D * X[None], grid)
            if work is None:
                work = [xp.empty_like(g[0]) for _ in range(3)]
            z = _shrink_joint(g, lam, beta, prior, xp, work=work)
            num = (D.conj() * rfft2(z)).sum(axis=0)
            if intensity:
                num += rfft2(_white_prior_split(irfft2(X, grid), intensity * lam / beta, xp))
        # X = (KY + beta num) / (K2 + beta D2), on the float views: a
        # complex over a real array is the product with the reciprocal
        # (NumPy's complex division does exactly that for a zero imaginary
        # part)
        v = _real_view(num)
        v *= beta
        v += ky
        xp.multiply(D2, beta, out=den)
        den += K2
        if intensity:
            den += beta
        xp.reciprocal(den, out=den)
        v *= den[..., None]
        X = num
    return D * X[None]


def _white_prior_split(x, t, xp):
    """The u-step of the white-background L0 prior: ``argmin_u w ||1 - u||_0
    + beta ||u - x||^2`` is x where ``(1 - x)^2 > w / beta`` (= `t`), else 1."""
    return xp.where((1 - x) ** 2 > t, x, 1.0)


def _real_view(A):
    """(..., 2) float view of a contiguous complex array."""
    return A.view(A.real.dtype).reshape(A.shape + (2,))


# Pyramid levels of fewer pixels than this run one candidate after the other
# even when the candidates have threads of their own (_run_estimates): on a
# 254 px Levin image with a 31 px window, 2**14 (the four smallest of six
# levels) gave 1.75 s instead of 1.83 s a image, 2**16 2.1 s.
_SERIAL_LEVEL_PIXELS = 2**14


def _candidate_threads(be, n):
    """Threads for `n` candidate estimates (see :func:`_run_estimates`): one
    per core, each with one FFT worker (at these grid sizes a second FFT
    worker gains nothing); one on the GPU or when the FFT workers are capped
    to 1 (``HQSDEBLUR_FFT_WORKERS``)."""
    if be.xp is not np or n < 2:
        return 1
    return max(1, min(n, _workers()))


def _shrink_joint(g, lam, beta, prior, xp, *, work=None):
    """Joint shrinkage of the channels of `g` (C, H, W) by ``lam / beta``.

    With `work` (three (H, W) scratch arrays) the result overwrites `g` and
    no temporary is allocated (the hot loop's main cost besides the FFTs);
    the values are those of the plain expressions.
    """
    if work is None:
        mag2 = (g * g).sum(axis=0)
        if prior == "l0":
            # min_z beta |g - z|^2 + lam [z != 0], joint over the channels
            return g * (mag2 > lam / beta)
        # isotropic soft threshold by lam / beta
        mag = xp.sqrt(mag2)
        return g * (xp.maximum(mag - lam / beta, 0) / xp.maximum(mag, 1e-12))
    mag2, tmp, fac = work
    xp.multiply(g[0], g[0], out=mag2)
    for c in range(1, g.shape[0]):
        mag2 += xp.multiply(g[c], g[c], out=tmp)
    if prior == "l0":
        xp.greater(mag2, lam / beta, out=fac)  # 1.0 / 0.0
    else:
        xp.sqrt(mag2, out=mag2)
        xp.subtract(mag2, lam / beta, out=fac)
        xp.maximum(fac, 0, out=fac)
        xp.maximum(mag2, 1e-12, out=mag2)
        fac /= mag2
    g *= fac
    return g


def _check_params(prior, params):
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise InputError(f"unknown parameter(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}.")
    if prior not in ("l0", "tv"):
        raise InputError(f"prior must be 'l0' or 'tv', not {prior!r}.")
    p = {**DEFAULTS, **params}
    if p["constraint"] not in ("clip", "simplex"):
        raise InputError(f"constraint must be 'clip' or 'simplex', not {p['constraint']!r}.")
    if p["latent"] not in ("image", "gradient"):
        raise InputError(f"latent must be 'image' or 'gradient', not {p['latent']!r}.")
    return p


@blas_single_thread
def estimate_kernel(
    y,
    kernel_size,
    *,
    prior="l0",
    filters=None,
    backend=None,
    progress=None,
    return_info=False,
    **params,
):
    """Estimate a blur kernel from a gray image (coarse to fine).

    Parameters
    ----------
    y : (H, W) ndarray
        Blurred gray image in [0, 1] (host array).
    kernel_size : int
        Odd kernel window size.
    prior : {'l0', 'tv'}
        Sparsity of the latent gradients: hard (L0) or soft (TV) threshold.
    filters : (C, h, w) array_like, optional
        Filter bank applied to `y` (correlation); default the horizontal and
        vertical first differences.
    backend : str or Backend, optional
    progress : callable, optional
        Called as ``progress(level, n_levels)`` after each pyramid level.
    return_info : bool
        Also return a dict with the kernel of every level.
    **params
        Overrides of :data:`DEFAULTS`.

    Returns
    -------
    k : (kernel_size, kernel_size) ndarray, float64, sums to 1
    info : dict, only with `return_info`

    Examples
    --------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).random((64, 64))
    >>> estimate_kernel(y, 7).shape
    (7, 7)
    """
    est = _Estimate(y, kernel_size, prior, filters, get_backend(backend), params)
    n = len(est.levels)
    est.advance(n, None if progress is None else lambda: progress(len(est.info["levels"]), n))
    return (est.kernel, est.info) if return_info else est.kernel


def _levels(y, kernel_size, p):
    """``(kernel size, scale, image shape)`` of each pyramid level."""
    return [(ks, scale, _level_shape(y.shape, scale))
            for ks, scale in pyramid_sizes(kernel_size, scale_factor=p["scale_factor"], coarsest=p["coarsest"])]


def _coarse_to_fine(y, kernel_size, prior, filters, be, p):
    """The loop of :func:`estimate_kernel` (`p`: complete parameters), as a
    generator that yields ``(ks, scale, shape, k)`` after each level, so a
    caller can interleave the levels of several estimates."""
    xp = be.xp
    dtype = np.float64 if y.dtype != np.float32 else np.float32
    levels = pyramid_sizes(kernel_size, scale_factor=p["scale_factor"], coarsest=p["coarsest"])
    k = np.zeros((levels[0][0],) * 2)
    k[levels[0][0] // 2, levels[0][0] // 2] = 1
    for li, (ks, scale) in enumerate(levels):
        k = resize_kernel(k, ks)
        ys = _rescale(np.asarray(y, dtype=np.float64), scale)
        pad = ks + ks // 2 + 2
        grid = fourier.fft_shape((ys.shape[0] + 2 * pad, ys.shape[1] + 2 * pad))
        yp = xp.asarray(pad_smooth_wrap(ys, pad, shape=grid), dtype=dtype)
        # this thread's FFTs (see blind_deconvolve), also for psf2otf/otf2psf
        rfft2, irfft2 = _ffts(be)
        FY = rfft2(yp)
        if filters is None:
            Dk = derivative_otfs(grid, xp, dtype)
        else:
            f = xp.asarray(np.asarray(filters, dtype=np.float64)[:, ::-1, ::-1].copy(), dtype=dtype)
            Dk = xp.stack([fourier.psf2otf(fc, grid) for fc in f])
        Y = Dk * FY[None]
        if li == 0 or not p["lam_carry"]:
            lam = p["lam"]
        Z = xp.zeros_like(Y)
        for _ in range(int(p["iterations"])):
            K = rfft2(fourier.roll(fourier.pad_post(xp.asarray(k, dtype=dtype), grid), (-(ks // 2), -(ks // 2))))
            betas = []
            b = 2 * lam
            while b < p["beta_max"]:
                betas.append(b)
                b *= p["beta_ratio"]
            if p["latent"] == "image":
                Z = _latent_image(FY, Dk, K, be, grid, lam=lam, betas=betas, prior=prior,
                                  spatial_diff=filters is None, intensity=p["intensity"])
            else:
                _, Z = _latent(Y, xp.zeros_like(Y), K, be, grid, lam=lam, betas=betas, prior=prior)
            Kt = kernel_ls(Z, Y, None, 1.0 / p["gamma"])
            kt = to_numpy(fourier.roll(irfft2(Kt, grid), (ks // 2, ks // 2))[:ks, :ks]).astype(np.float64)
            k = _clean_kernel(kt, threshold=p["threshold"], min_component=p["min_component"], constraint=p["constraint"])
            lam = max(lam * p["lam_decay"], p["lam_min"])
        yield ks, scale, ys.shape, k


class _Estimate:
    """One schedule's coarse-to-fine estimate, run level by level."""

    def __init__(self, y, kernel_size, prior, filters, be, params):
        p = _check_params(prior, params)
        if p["lam"] is None:
            p["lam"] = lam_for(kernel_size)
        self.params = params
        self.levels = _levels(y, kernel_size, p)
        self.info = {"levels": [], "kernels": []}
        self.kernel = None
        self._gen = _coarse_to_fine(y, kernel_size, prior, filters, be, p)

    def advance(self, n_levels, step=None):
        """Run the levels up to `n_levels` in all; ``step()`` after each."""
        while len(self.info["levels"]) < n_levels:
            ks, scale, shape, self.kernel = next(self._gen)
            self.info["levels"].append((ks, scale, shape))
            self.info["kernels"].append(self.kernel.copy())
            if step is not None:
                step()


class _Given:
    """A kernel estimated elsewhere, as a finished candidate."""

    levels = ()

    def __init__(self, k, kernel_size, i):
        k = np.asarray(to_numpy(k), dtype=np.float64)
        if k.shape != (kernel_size, kernel_size):
            raise InputError(f"extra_kernels[{i}] has shape {k.shape}; it must be ({kernel_size}, {kernel_size}).")
        if not np.all(np.isfinite(k)):
            raise InputError(f"extra_kernels[{i}] holds NaN or infinite values.")
        k = np.clip(k, 0, None)
        if not k.sum() > 0:
            raise InputError(f"extra_kernels[{i}] has no positive entry (a kernel sums to 1).")
        self.kernel = k / k.sum()
        self.params = {"given": i}
        self.info = {"levels": [], "kernels": [self.kernel.copy()]}

    def advance(self, n_levels, step=None):
        pass


@contextlib.contextmanager
def _one_fft_worker():
    outer = getattr(_local, "fft_workers", None)
    _local.fft_workers = 1
    try:
        yield
    finally:
        _local.fft_workers = outer


def _run_estimates(ests, score, n_threads, progress):
    """Complete every estimate and return ``[score(est)]``, in order.

    With several threads the estimates run side by side, one FFT thread each
    (independent, and ``scipy.fft`` and NumPy's array loops release the GIL),
    except their small levels (under ``_SERIAL_LEVEL_PIXELS`` pixels), which
    are bound by Python overhead that the threads would only fight over:
    those run first, one estimate after the other. The results do not depend
    on the threads. `progress` gets ``(levels done, levels in all)``.
    """
    total = sum(len(e.levels) for e in ests)
    lock = threading.Lock()
    count = [0]

    def step():
        if progress is not None:
            with lock:
                count[0] += 1
                progress(count[0], total)

    def finish(est):
        est.advance(len(est.levels), step)
        return score(est)

    if n_threads < 2:
        return [finish(e) for e in ests]

    def finish_1(est):
        with _one_fft_worker():
            return finish(est)

    with _one_fft_worker():
        for e in ests:
            e.advance(sum(h * w < _SERIAL_LEVEL_PIXELS for _, _, (h, w) in e.levels), step)
    with ThreadPoolExecutor(n_threads) as pool:
        return list(pool.map(finish_1, ests))


@blas_single_thread
def blind_deconvolve(
    image,
    *,
    kernel_size=31,
    method="tv",
    channel_axis=None,
    prior="l0",
    final="hyper-laplacian",
    final_weight=None,
    iterations=None,
    filters=None,
    candidates=None,
    extra_kernels=None,
    backend=None,
    progress=None,
    return_info=False,
    **params,
):
    """Blind deconvolution: estimate the kernel, then deconvolve.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) array_like
        Blurred image in [0, 1].
    kernel_size : int
        Odd size of the kernel window; should exceed the blur's extent
        (31 covers most camera shake on 255 px images; for a blur of ``b`` px
        use about ``b`` rounded up to odd, e.g. 75 for 75 px kernels).
    method : {'tv'}
        The classical HQS method (the only one in this module).
    channel_axis : int, optional
        Colour axis (None: gray, or RGB in the last axis).
    prior : {'l0', 'tv'}
        Sparsity used for the latent gradients during kernel estimation.
    final : {'hyper-laplacian', 'tv'}
        Prior of the final non-blind deconvolution.
    final_weight : float, optional
        Prior weight of the final deconvolution (default of
        :func:`hqsdeblur.nonblind.deconvolve`).
    iterations : int, optional
        Outer iterations per pyramid level, for every candidate (default:
        each candidate's own, else ``DEFAULTS['iterations']``).
    filters : (C, h, w) array_like, optional
        Filter bank for the kernel stage (default first differences).
    candidates : sequence of dict, optional
        Estimation schedules to try, each a dict of overrides of
        :data:`DEFAULTS` (default :data:`CANDIDATES`; ``[{}]``: one estimate
        with the defaults, the fastest). Keyword arguments given here win over
        them. The kernel whose deconvolution has the lowest
        :func:`gradient_sparsity` is kept; each extra candidate costs one more
        estimate and one gray deconvolution (the estimates run in parallel
        threads on a multi-core host, one per core, unless
        ``HQSDEBLUR_FFT_WORKERS=1``). Noisy input (noise level above
        ``noisy``) runs the first candidate only.
    extra_kernels : sequence of (kernel_size, kernel_size) arrays, optional
        Kernels estimated elsewhere (e.g. by the unrolled network) that
        compete in the same selection, after the schedules (their
        ``params`` in the info are ``{'given': i}``; one 2-D array is one
        kernel). On noisy input the schedules reduce to the first one and
        the given kernels still compete with it by sparsity (not measured:
        no evaluation set here has noise and a window large enough for
        ``deblur``'s classical check).
    backend : str, optional
        Backend name; CuPy input runs on 'cupy'.
    progress : callable, optional
        ``progress(level, n_levels)`` after each pyramid level.
    return_info : bool
        Also return a dict of intermediate kernels.
    **params
        Advanced overrides of :data:`DEFAULTS`.

    Returns
    -------
    image : ndarray
        Restored image, same shape, layout and float dtype as the input,
        in [0, 1].
    kernel : (kernel_size, kernel_size) ndarray, float64
        Estimated kernel (sums to 1, centre of mass at the window centre).
    info : dict, only with `return_info`
        ``levels``, ``kernels`` (per pyramid level of the chosen estimate),
        ``support`` (of the chosen estimate), ``chosen`` (its index),
        ``candidates`` (per candidate: ``params``, ``kernel``, ``support``,
        ``sparsity`` (None for a rejected one, which is not deconvolved),
        ``rejected``), ``noise_level``, ``backed_off`` (True when
        every candidate was rejected by the ``max_support`` safeguard; then
        ``kernel_rejected`` holds the sparsest of them and the input is
        returned unchanged).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.signal import fftconvolve
    >>> x = np.zeros((96, 96)); x[30:66, 30:66] = 1
    >>> y = fftconvolve(x, np.ones((1, 5)) / 5, mode="same").clip(0, 1)
    >>> out, k = blind_deconvolve(y, kernel_size=9)
    >>> out.shape, k.shape, round(float(k.sum()), 6)
    ((96, 96), (9, 9), 1.0)
    """
    from .validate import check_kernel_size

    if method != "tv":
        raise InputError(f"method must be 'tv', not {method!r}.")
    img, restore, was_device = _prepare(image, channel_axis)
    kernel_size = check_kernel_size(kernel_size, img.shape)
    be = _resolve_backend(backend, was_device)
    gray = img if img.ndim == 2 else img @ _LUMA.astype(img.dtype)
    if iterations is not None:
        params["iterations"] = int(iterations)
    _check_params(prior, params)
    candidates = CANDIDATES if candidates is None else tuple(candidates)
    if not candidates:
        raise InputError("candidates must hold at least one schedule (e.g. [{}]).")
    for c in candidates:
        _check_params(prior, dict(c))
    max_support = params.get("max_support", DEFAULTS["max_support"])
    delta = np.zeros((kernel_size, kernel_size))
    delta[kernel_size // 2, kernel_size // 2] = 1
    if float(gray.max() - gray.min()) < 1e-6:
        # A flat image carries no blur information: the delta kernel.
        info = {"levels": [], "kernels": [], "support": kernel_support(delta), "backed_off": False,
                "candidates": [], "chosen": None}
        out = restore(img.copy())
        return (out, delta, info) if return_info else (out, delta)
    # Noisy input (e.g. sigma = 1 %): the finest scale's gradients are
    # noise and the kernel estimate turns into scattered dots; estimate
    # the kernel on a lightly smoothed copy (the blur is much wider than
    # 1 px) and deconvolve with a prior weight grown with the noise
    # level. Clean and 8-bit images (noise level ~0.003) are untouched.
    sigma, noisy, source, weight = noise_rules(gray, final=final, noisy=params.get("noisy", DEFAULTS["noisy"]))
    if final_weight is None:
        final_weight = weight
    if noisy:
        # Only the first schedule: the others' small lam floors fit the
        # noise, and the sparsity of a noisy deconvolution is no guide (on
        # held-out Kodak at 1 % noise the choice cost 0.5 dB against the
        # first schedule alone).
        candidates = candidates[:1]
    elif float(np.mean(gray >= 0.98)) < params.get("white", DEFAULTS["white"]):
        # the white-background prior is for text and documents: skip its
        # candidates elsewhere (unless they are all there is)
        candidates = tuple(c for c in candidates if not c.get("intensity")) or candidates
    skip = ("max_support", "noisy", "white")
    user = {key: v for key, v in params.items() if key not in skip}
    ests = [_Estimate(source, kernel_size, prior, filters, be,
                      {**{key: v for key, v in cand.items() if key not in skip}, **user})
            for cand in candidates]
    if extra_kernels is not None and getattr(extra_kernels, "ndim", None) == 2:
        extra_kernels = [extra_kernels]  # one kernel given as an array
    for i, kx in enumerate(extra_kernels if extra_kernels is not None else ()):
        ests.append(_Given(kx, kernel_size, i))

    def score(est):
        k = est.kernel
        entry = {"params": est.params, "kernel": k, "support": kernel_support(k), "kinfo": est.info}
        entry["rejected"] = entry["support"] > max_support
        entry["sparsity"] = None
        if not entry["rejected"] and (len(ests) > 1 or img.ndim == 2):
            # gray deconvolution: the selection score, and for gray input
            # the output itself (same settings as the final step)
            entry["gray"] = deconvolve(gray, k, prior=final, weight=final_weight, backend=be)
            entry["sparsity"] = gradient_sparsity(entry["gray"], border=kernel_size // 2)
        return entry

    tried = _run_estimates(ests, score, _candidate_threads(be, len(ests)), progress)
    best = None
    for ci, entry in enumerate(tried):
        if entry["rejected"]:
            continue
        if best is None or entry["sparsity"] is None or entry["sparsity"] < tried[best]["sparsity"]:
            best = ci
    backed_off = best is None
    if backed_off:
        # Safeguard: a blur kernel is a thin connected path, so one spread
        # over much of its window is noise fitted by a failed estimate (seen
        # with 75 px blurs on textureless images). Deconvolving with it
        # destroys the image; returning the input unchanged is safer.
        pick = min(range(len(tried)), key=lambda i: tried[i]["support"])
        k_rej = tried[pick]["kernel"]
        k, out = delta, img.copy()
    else:
        pick = best
        k = tried[pick]["kernel"]
        if img.ndim == 2:
            out = tried[pick]["gray"]
        else:
            out = deconvolve(img, k, prior=final, weight=final_weight, backend=be)
    out = restore(out)
    if not return_info:
        return out, k
    info = dict(tried[pick]["kinfo"])
    info.update(
        noise_level=sigma,
        support=tried[pick]["support"],
        chosen=None if backed_off else pick,
        backed_off=backed_off,
        candidates=[{key: e[key] for key in ("params", "kernel", "support", "sparsity", "rejected")} for e in tried],
    )
    if backed_off:
        info["kernel_rejected"] = k_rej
    return out, k, info
