"""One entry point for blind deblurring: ``hqsdeblur.deblur``.

It validates the input once, picks the method (classical TV or the unrolled
network), handles colour (kernel from luminance) and large kernels (the
unrolled network runs on a downscaled image when the kernel would not fit
its window), and returns the image and the kernel.
"""

from __future__ import annotations

import os

import numpy as np

from .backend import backend_for, blas_single_thread, get_backend, to_numpy, use_backend
from .errors import InputError
from .validate import LUMA, as_image, check_finite_output, check_kernel_size

__all__ = ["deblur", "unrolled_deblur", "default_model_path", "load_default_model", "MAX_DIRECT_PIXELS"]

#: Above this many pixels (H * W) :func:`deblur` estimates the kernel on a
#: crop and deconvolves the image in tiles (peak memory, docs/large_images.md).
MAX_DIRECT_PIXELS = 3_500_000

_MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")


def default_model_path():
    """Path of the model shipped with the package (None if absent)."""
    p = os.path.join(_MODELS, "hqsdeblur_unrolled.npz")
    return p if os.path.exists(p) else None


_model_cache: dict = {}


def load_default_model():
    path = default_model_path()
    if path is None:
        return None
    if path not in _model_cache:
        from .model_io import load_model

        _model_cache[path] = load_model(path)
    return _model_cache[path]


def _resolve_model(model):
    if model is None:
        m = load_default_model()
        if m is None:
            raise InputError("no model given and no model ships with this installation; pass model= (e.g. a .npz file)")
        return m
    if isinstance(model, (str, os.PathLike)):
        from .model_io import load_model

        key = os.path.abspath(os.fspath(model))
        if key not in _model_cache:
            _model_cache[key] = load_model(model)
        return _model_cache[key]
    return model


@blas_single_thread
def deblur(
    image,
    *,
    method="tv",
    kernel_size=None,
    channel_axis=None,
    model=None,
    exact=False,
    colour="nonblind",
    backend=None,
    progress=None,
    max_direct_pixels=MAX_DIRECT_PIXELS,
    tiling=None,
    **options,
):
    """Blind deblurring: estimate the blur kernel and the sharp image.

    Parameters
    ----------
    image : array_like
        Blurred image, float in [0, 1] (integers are scaled by their dtype
        maximum), gray ``(H, W)`` or colour with a channel axis.
    method : {'tv', 'unrolled'}
        Classical TV/L0 blind deconvolution (no training), or the unrolled
        network (`model`).
    kernel_size : int, optional
        Odd size of the kernel window. Default: 31 for 'tv'; the model's
        window (45) for 'unrolled' (larger windows work: the network runs
        coarse to fine, or, with ``pyramid=False``, on a downscaled copy).
    channel_axis : int, optional
        Channel axis of a colour image (default: last axis of size 3 or 4).
    model : str, path or UnrolledModel, optional
        For 'unrolled': a model file (ours or the published DUBLID archive)
        or a loaded model; default the model shipped with the package.
    exact : bool
        For 'unrolled': the published network's exact behaviour (zero-padded
        border, 64-multiple FFT grid, no kernel re-centring).
    colour : {'nonblind', 'joint', 'per-channel'}
        For 'unrolled' on colour input, how the channels are recovered once
        the kernel is estimated on luminance: a non-blind hyper-Laplacian
        deconvolution of each channel (default), the network's own
        reconstruction solved jointly, or per channel.
    backend : str, optional
        'numpy', 'cython', 'numba' or 'cupy' (default: automatic).
    progress : callable, optional
        For 'tv': ``progress(level, n_levels)`` after each pyramid level.
    max_direct_pixels : int or None
        Images with more pixels (``H * W``) than this take the large-image
        route (:func:`hqsdeblur.tiles.deblur_large`), which keeps the peak
        memory of a 16-megapixel photo near 1 GB gray, 1.6 GB RGB (see
        ``docs/large_images.md``): the image is processed and returned in
        float32; the kernel is estimated on the luminance of up to three
        ``region x region`` crops with the most edge energy, the medoid of
        their kernels wins; the whole image is reconstructed by the
        non-blind hyper-Laplacian deconvolution in overlapping tiles
        (:func:`hqsdeblur.tiles.deconvolve_tiled`) with the noise-adapted
        weight of :func:`hqsdeblur.blind_deconvolve`'s final step. For
        'unrolled' the returned image is therefore that non-blind
        deconvolution, not the network's own reconstruction (`colour` is
        ignored). Default :data:`MAX_DIRECT_PIXELS` (3.5 million: the
        unrolled network peaks at about 0.5 GB per megapixel); None never
        tiles.
    tiling : dict, optional
        Settings of the large-image route: ``region`` (crop side, 1024 or
        16 kernel widths if more),
        ``crops`` (3), ``tile`` (1024), ``overlap`` (twice the kernel size),
        ``num_workers`` (threads, default at most 2: each holds one tile,
        ~80 MB gray, ~240 MB RGB)
        and ``client`` (a Dask client).
    **options
        Passed to :func:`hqsdeblur.blind_deconvolve` for 'tv'. For
        'unrolled': ``pyramid`` (default True unless `exact`: run the
        network coarse to fine, see :func:`unrolled_deblur`) and
        ``coarsest`` (kernel window of the coarsest level; default the
        model's ``meta['coarsest']``, else 15) and ``classical_check``
        ('auto', True or False: let the classical candidates compete with
        the network's kernel; 'auto' for windows above twice the model's,
        see :func:`unrolled_deblur`).

    Returns
    -------
    image : ndarray
        The deblurred image, same shape and layout as the input, float in
        [0, 1] (float32 stays float32; the large-image route always gives
        float32, the precision it computes in).
    kernel : ndarray
        The estimated kernel (odd square window, non-negative, sum 1).

    Examples
    --------
    >>> import numpy as np
    >>> from hqsdeblur import deblur
    >>> y = np.random.default_rng(0).random((64, 64))
    >>> x, k = deblur(y, kernel_size=9)
    >>> x.shape, k.shape
    ((64, 64), (9, 9))
    """
    if method not in ("tv", "unrolled"):
        raise InputError(f"unknown method {method!r}; choose 'tv' or 'unrolled'")
    if colour not in ("nonblind", "joint", "per-channel"):
        raise InputError(f"unknown colour mode {colour!r}; choose 'nonblind', 'joint' or 'per-channel'")
    xp_in = backend_for(image).xp if hasattr(image, "__cuda_array_interface__") else np
    host = to_numpy(image) if xp_in is not np else image
    large = max_direct_pixels is not None and _pixels(host, channel_axis) > max_direct_pixels
    if large:
        host = _float32(host)  # half the size of the float64 copy validation makes
    img = _valid_float32(host, channel_axis) if large else None
    if img is None:
        img = as_image(host, channel_axis=channel_axis)
    del host
    if large and img.dtype != np.float32:  # signed integers, bool, lists
        img = img.astype(np.float32)
    moved = channel_axis is not None and np.ndim(image) == 3 and img.ndim == 3
    be = get_backend(backend)
    if large:
        x, k = _deblur_large(img, method=method, kernel_size=kernel_size, model=model, exact=exact, backend=be.name, progress=progress, tiling=tiling, options=options)
        del img
        check_finite_output(x, "the deblurred image")
        np.clip(x, 0, 1, out=x)  # in place: the image may be huge
        return (np.moveaxis(x, -1, channel_axis) if moved else x), k
    with use_backend(be.name):
        if method == "tv":
            from .tv import blind_deconvolve

            ks = 31 if kernel_size is None else kernel_size
            check_kernel_size(ks, img.shape[:2])
            x, k = blind_deconvolve(img, kernel_size=ks, channel_axis=-1 if img.ndim == 3 else None, backend=be.name, progress=progress, **options)
        else:
            unknown = set(options) - {"pyramid", "coarsest", "classical_check"}
            if unknown:
                raise InputError(f"unknown options {sorted(unknown)} for method 'unrolled'; it takes pyramid, coarsest, classical_check")
            x, k = unrolled_deblur(img, model=model, kernel_size=kernel_size, exact=exact, colour=colour, **options)
    x = np.asarray(to_numpy(x))
    check_finite_output(x, "the deblurred image")
    x = np.clip(x, 0, 1).astype(img.dtype, copy=False)
    if moved:
        x = np.moveaxis(x, -1, channel_axis)
    return x, np.asarray(to_numpy(k))


def _pixels(image, channel_axis):
    """H * W of an image not yet validated (0 when the shape is odd: the
    validation then says what is wrong)."""
    shape = np.shape(image)
    if len(shape) == 2:
        return shape[0] * shape[1]
    if len(shape) != 3:
        return 0
    try:
        ax = (-1 if channel_axis is None else int(channel_axis)) % 3
    except (TypeError, ValueError):
        return 0
    hw = [n for i, n in enumerate(shape) if i != ax]
    return hw[0] * hw[1]


def _float32(image):
    """float64 / unsigned-integer arrays as float32 in [0, 1] (one copy half
    the size of the float64 one validation would make); anything else as is."""
    if not isinstance(image, np.ndarray):
        return image
    if image.dtype == np.float64:
        return image.astype(np.float32)
    if image.dtype.kind == "u":
        out = image.astype(np.float32)
        out /= np.float32(np.iinfo(image.dtype).max)
        return out
    return image


def _valid_float32(image, channel_axis):
    """`image` itself when it is a C-contiguous float32 (H, W) or (H, W, 3)
    array in [0, 1] (checked in strips), else None. The large route only
    reads it, so a huge photo needs no validated copy."""
    if not (isinstance(image, np.ndarray) and image.dtype == np.float32 and image.flags.c_contiguous):
        return None
    if not (image.ndim == 2 and channel_axis is None or image.ndim == 3 and image.shape[2] == 3 and channel_axis in (None, -1, 2)):
        return None
    for r in range(0, image.shape[0], 256):
        blk = image[r : r + 256]
        if not (np.isfinite(blk).all() and blk.min() >= 0 and blk.max() <= 1):
            return None  # as_image says what is wrong (or clips rounding noise)
    return image


def _deblur_large(img, *, method, kernel_size, model, exact, backend, progress, tiling, options):
    """The large-image route of :func:`deblur` on a validated float32 image:
    kernel from a crop, image by tiles (:func:`hqsdeblur.tiles.deblur_large`)."""
    from .tiles import deblur_large

    t = dict(tiling or {})
    unknown = set(t) - {"region", "crops", "tile", "overlap", "num_workers", "client"}
    if unknown:
        raise InputError(f"unknown tiling settings {sorted(unknown)}; use region, crops, tile, overlap, num_workers, client")
    if t.get("client") is None and t.get("num_workers") is None:
        # each thread holds a tile: ~240 MB for an RGB 1024^2 tile (+ halo)
        t["num_workers"] = min(os.cpu_count() or 1, 2)
    ks = (31 if method == "tv" else _resolve_model(model).config.kernel_size) if kernel_size is None else kernel_size
    check_kernel_size(ks, img.shape[:2])
    # crops under ~10 kernel widths lose large kernels (docs/large_images.md)
    t.setdefault("region", max(1024, 16 * ks))
    if method == "tv":
        est = dict(options, backend=backend, progress=progress)
    else:
        est = dict(options, backend=backend, exact=exact)  # pyramid, coarsest, classical_check: per crop
    out = np.empty(img.shape, dtype=np.float32)
    return deblur_large(img, kernel_size=ks, method=method, model=model, out=out, deblur_options=est, backend=backend, **t)


#: A schedule network's kernel for a window more than this many times the
#: window it was trained on competes with the classical candidates
#: (``classical_check='auto'`` of :func:`unrolled_deblur`).
CHECK_BEYOND = 2.0


def unrolled_deblur(img, *, model=None, kernel_size=None, exact=False, colour="nonblind", dtype=np.float32,
                    pyramid=None, coarsest=None, classical_check="auto"):
    """The unrolled network on a validated image (H, W) or (H, W, 3).

    With `pyramid` (default unless `exact`) the network runs coarse to fine
    (:func:`hqsdeblur.coarse_to_fine.unrolled_coarse_to_fine`, the classical
    mode's 'wrap' border) from a kernel window of `coarsest` up to
    `kernel_size`: on Levin's 32 images the shipped model scores 29.33 dB
    (ER <= 3 on 97 %) against 25.11 dB (53 %) for one pass at full size
    (``benchmarks/eval_all.py``, methods ``ours_c2f`` and ``ours``), and
    kernels larger than the model's window are estimated at full resolution.
    Without it the network runs once (on a downscaled copy when the kernel
    exceeds its window). A model whose metadata says
    ``final_image='nonblind'`` (a schedule network,
    :mod:`hqsdeblur.schedule`) estimates the kernel only: the image is the
    non-blind hyper-Laplacian deconvolution with it.

    `classical_check` (schedule networks, gray or ``colour='nonblind'``):
    the network's kernel joins the classical mode's candidate schedules
    (:func:`hqsdeblur.tv.blind_deconvolve` with ``extra_kernels``) and the
    same selection keeps one: kernels spread over their window are
    rejected, then the sparsest non-blind result wins. ``'auto'`` does this
    only for windows above ``CHECK_BEYOND`` (2) times the model's own
    window, where the network extrapolates: on Lai et al.'s 75 px blurs
    (window 2.4x the shipped 31) the network alone lost 1.2-8 dB on 4 of 5
    images (3 of its kernels spread over 27-42 % of the window), and the
    check turns all five into gains. It costs the classical estimate on
    top (~25 s of CPU on a 1024x680 image at 75 px). True: always; False:
    never.

    Returns the image (not clipped) and the kernel (numpy arrays).
    """
    from .unrolled import reconstruct_channels

    if not (classical_check == "auto" or isinstance(classical_check, (bool, np.bool_))):
        raise InputError(f"classical_check must be 'auto', True or False, not {classical_check!r}")
    model = _resolve_model(model)
    cfg = model.config
    window = cfg.kernel_size
    gray = img.ndim == 2
    lum = img if gray else img @ LUMA.astype(img.dtype)
    be = get_backend()
    xp = be.xp
    ks = window if kernel_size is None else check_kernel_size(kernel_size, img.shape[:2])
    if pyramid is None:
        pyramid = not exact
    if pyramid and exact:
        raise InputError("--exact (exact=True) runs the published network at one scale only; it cannot run coarse to fine")
    auto_check = isinstance(classical_check, str)  # 'auto' (checked above)
    force_check = not auto_check and bool(classical_check)
    if force_check and not pyramid:
        raise InputError("classical_check=True runs with the coarse-to-fine path (pyramid=True), not one pass")
    if pyramid:
        from .coarse_to_fine import unrolled_coarse_to_fine

        check_kernel_size(ks, lum.shape)
        joint_state = not gray and colour != "nonblind"
        nb_final = model.meta.get("final_image") == "nonblind"
        if force_check and not (nb_final and (gray or colour == "nonblind")):
            raise InputError("classical_check=True needs a schedule network (a model whose final image is the "
                             "non-blind step) and a gray image or colour='nonblind'")
        source, weight = lum, None
        if nb_final:
            # a kernel estimator like the classical mode's: its noise rules too
            from .tv import noise_rules

            _, _, source, weight = noise_rules(np.asarray(lum))
        if coarsest is None:
            coarsest = int(model.meta.get("coarsest", 15))
        model = _window_prior(model, ks)
        out = unrolled_coarse_to_fine(model, source, kernel_size=ks, coarsest=coarsest, dtype=dtype,
                                      return_state=joint_state)
        k = np.asarray(to_numpy(out[1]))
        check = force_check or (auto_check and ks > CHECK_BEYOND * window)
        if nb_final and check and (gray or colour == "nonblind"):
            from .tv import blind_deconvolve

            return blind_deconvolve(img, kernel_size=ks, channel_axis=None if gray else -1,
                                    extra_kernels=[k], backend=be.name)
        if gray and nb_final:
            from .nonblind import deconvolve

            return deconvolve(img, k, weight=weight), k
        if gray:
            return to_numpy(out[0]), k
        if colour == "nonblind":
            from .nonblind import deconvolve

            return deconvolve(img, k, channel_axis=-1, weight=weight), k
        chans = xp.asarray(np.moveaxis(img, -1, 0), dtype=dtype)
        return np.moveaxis(to_numpy(reconstruct_channels(out[2], chans, joint=colour == "joint")), 0, -1), k
    scale = 1.0
    if ks > window:
        if exact:
            raise InputError(f"kernel_size {ks} is larger than the model's window {window}; --exact runs at one scale only")
        scale = window / ks
    elif ks != window:
        # the window is not a learned shape: a smaller one is just a config change
        model = model.with_window(ks)
    check_kernel_size(min(ks, window), lum.shape)
    nb_final = model.meta.get("final_image") == "nonblind"
    weight = None
    if nb_final:
        # a kernel estimator like the classical mode's: its noise rules, as
        # coarse to fine above
        from .tv import noise_rules

        _, _, lum, weight = noise_rules(np.asarray(lum))
    if scale < 1:
        small = _resize(lum, scale)
        x_s, k_s = model.forward(xp.asarray(small, dtype=dtype))
        k = _resize_kernel(to_numpy(k_s), ks)
        from .nonblind import deconvolve

        x = deconvolve(img, k, channel_axis=None if gray else -1, weight=weight)
        return x, k
    y = xp.asarray(lum, dtype=dtype)
    if gray:
        x, k = model.forward(y, exact=exact)
        if nb_final:
            from .nonblind import deconvolve

            k = to_numpy(k)
            return deconvolve(img, k, weight=weight), k
        return to_numpy(x), to_numpy(k)
    x_l, k, state = model.forward(y, exact=exact, return_state=True)
    k = to_numpy(k)
    if colour == "nonblind":
        from .nonblind import deconvolve

        x = deconvolve(img, k, channel_axis=-1, weight=weight)
    else:
        chans = xp.asarray(np.moveaxis(img, -1, 0), dtype=dtype)
        x = np.moveaxis(to_numpy(reconstruct_channels(state, chans, joint=colour == "joint")), 0, -1)
    return x, k


def _window_prior(model, ks):
    """The classical rule that the prior weight grows with the kernel window
    (:func:`hqsdeblur.tv.lam_for`: larger blurs leave noisier intermediate
    images), for a schedule network whose metadata asks for it
    (``meta['lam_rule'] == 'tv'``): its thresholds (``lam / beta``) are
    scaled by ``lam_for(ks) / lam_for(window)``; cached on the model."""
    if model.meta.get("lam_rule") != "tv" or ks == model.config.kernel_size:
        return model
    from .tv import lam_for
    from .unrolled import UnrolledModel

    f = lam_for(ks) / lam_for(model.config.kernel_size)
    if f == 1:
        return model
    cache = model._cache.setdefault("window_prior", {})
    if ks not in cache:
        cache[ks] = UnrolledModel(model.config, {**model.params, "bias": model.params["bias"] * f}, model.meta)
    return cache[ks]


def _resize(img, scale):
    from scipy import ndimage

    shape = (max(8, int(round(img.shape[0] * scale))), max(8, int(round(img.shape[1] * scale))))
    sigma = 0.5 / scale * 0.8  # anti-aliasing before decimation
    sm = ndimage.gaussian_filter(img, sigma, mode="reflect")
    zy, zx = shape[0] / img.shape[0], shape[1] / img.shape[1]
    return ndimage.zoom(sm, (zy, zx), order=1, mode="reflect", grid_mode=True)


def _resize_kernel(k, size):
    """Upsample a kernel estimated at a coarse scale to an odd `size` window,
    non-negative, sum 1, centred."""
    from .steps.kernel import center_of_mass_shift, shift_kernel
    from .tv import resize_kernel

    out = resize_kernel(k, size)
    return shift_kernel(out, center_of_mass_shift(out))
