"""Huge images: estimate the kernel on a crop, deconvolve the whole image in
overlapping tiles.

Blind kernel estimation does not need the whole photograph: a window rich in
edges constrains the blur as well as the full frame does, at a fraction of the
cost. :func:`estimate_kernel_region` picks that window. The non-blind step
then runs tile by tile (:func:`deconvolve_tiled`): every tile is deconvolved
together with a halo of ``overlap`` pixels on each side (``dask.array``
``map_overlap``), so the artefacts of the tile's own border die out inside the
halo, and neighbouring tiles are cross-faded by cosine weights that sum to one
(a partition of unity) over a band centred on each seam. Peak memory is a few
tiles per thread plus the output, and the output itself can be a
``numpy.memmap`` (``out=``).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InputError

__all__ = ["estimate_kernel_region", "estimate_kernel_regions", "deconvolve_tiled", "deblur_large"]

from .validate import LUMA as _LUMA  # noqa: E402


def _luma_block(image, rows, cols):
    """float64 luminance of ``image[rows, cols]`` (gray or channel-last)."""
    b = np.asarray(image[rows, cols], dtype=np.float64)
    if b.ndim == 3:
        b = b[..., :3] @ _LUMA[: b.shape[-1]] if b.shape[-1] == 3 else b.mean(axis=-1)
    return b


def estimate_kernel_region(image, kernel_size, *, region=1024):
    """Pick a representative crop for blind kernel estimation.

    The first window of :func:`estimate_kernel_regions`: the ``region x
    region`` window with the highest gradient energy.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array_like
        Float image in [0, 1], gray or channel-last.
    kernel_size : int
        Size of the kernel to be estimated; the window is at least
        ``4 * kernel_size`` wide (and never larger than the image).
    region : int, optional
        Side of the window (default 1024).

    Returns
    -------
    window : tuple of slice
        ``(rows, cols)``; ``image[window]`` is the crop.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((256, 256)); img[160:200, 160:200] = 0.5
    >>> rows, cols = estimate_kernel_region(img, 9, region=64)
    >>> rows.start >= 96 and cols.start >= 96
    True
    """
    return estimate_kernel_regions(image, kernel_size, region=region, count=1)[0]


def estimate_kernel_regions(image, kernel_size, *, region=1024, count=3, max_overlap=0.5):
    """Rank crops for blind kernel estimation by their edge content.

    Candidate windows of ``region x region`` pixels start every quarter of a
    window along each axis, plus one flush with the bottom / right border,
    and are ranked by gradient energy (sum of squared first differences of
    the luminance). Saturated pixels (>= 0.99) carry no blur information and
    are left out of the score. Going down the ranking, a window is kept when
    it overlaps every window kept before by at most `max_overlap` of its
    area; if that leaves fewer than `count` (small images), a second pass
    allows an overlap of ``(1 + max_overlap) / 2``. The energy is summed in small blocks while the image is scanned in
    strips, so memory stays bounded for huge (or memory-mapped) inputs.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array_like
        Float image in [0, 1], gray or channel-last.
    kernel_size : int
        Size of the kernel to be estimated; the window is at least
        ``4 * kernel_size`` wide (and never larger than the image).
    region : int, optional
        Side of the window (default 1024).
    count : int, optional
        Most windows returned (default 3).
    max_overlap : float, optional
        Largest overlap of two returned windows, as a fraction of the window
        area (default 0.5).

    Returns
    -------
    windows : list of tuple of slice
        ``(rows, cols)`` pairs, first pass first, each pass by decreasing
        energy (at least one).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((256, 512)); img[160:200, 160:200] = 0.5; img[20:60, 400:440] = 0.5
    >>> [(r.start, c.start) for r, c in estimate_kernel_regions(img, 9, region=128, max_overlap=0.25)]
    [(0, 320), (96, 96), (96, 192)]
    """
    H, W = np.shape(image)[:2]
    ks = int(kernel_size)
    side_y = min(H, max(int(region), 4 * ks))
    side_x = min(W, max(int(region), 4 * ks))
    # energy per b x b block; window energies from its summed-area table
    b = max(1, min(16, side_y // 8, side_x // 8))
    nby, nbx = -(-H // b), -(-W // b)
    blocks = np.zeros((nby, nbx))
    strip = b * max(1, 256 // b)
    for r0 in range(0, H, strip):
        r1 = min(r0 + strip, H)
        # one extra row so vertical differences cross the strip boundary
        lum = _luma_block(image, slice(r0, min(r1 + 1, H)), slice(None))
        ok = lum < 0.99
        e = np.zeros((r1 - r0, W))
        e[:, :-1] = (np.diff(lum[: r1 - r0], axis=1) ** 2 * (ok[: r1 - r0, 1:] & ok[: r1 - r0, :-1]))
        gy = np.diff(lum, axis=0) ** 2 * (ok[1:] & ok[:-1])
        e[: gy.shape[0]] += gy
        e = np.add.reduceat(np.add.reduceat(e, np.arange(0, r1 - r0, b), axis=0), np.arange(0, W, b), axis=1)
        blocks[r0 // b : r0 // b + e.shape[0]] = e
    sat = np.zeros((nby + 1, nbx + 1))
    sat[1:, 1:] = blocks.cumsum(0).cumsum(1)

    def starts(n, side):
        step = max(side // 4, 1)
        return sorted(set(range(0, n - side + 1, step)) | {n - side})

    cands = []
    for y0 in starts(H, side_y):
        by0, by1 = round(y0 / b), min(nby, round((y0 + side_y) / b))
        for x0 in starts(W, side_x):
            bx0, bx1 = round(x0 / b), min(nbx, round((x0 + side_x) / b))
            cands.append((-(sat[by1, bx1] - sat[by0, bx1] - sat[by1, bx0] + sat[by0, bx0]), y0, x0))
    cands.sort()  # highest energy first; ties: top-left first
    kept = []
    # a second pass fills up with closer windows (images under ~2 windows
    # wide): overlapping crops still give partly independent estimates
    for limit in (max_overlap, (1 + max_overlap) / 2):
        for _, y0, x0 in cands:
            if len(kept) == max(int(count), 1):
                break
            if all(max(0, side_y - abs(y0 - a)) * max(0, side_x - abs(x0 - c)) <= limit * side_y * side_x for a, c in kept):
                kept.append((y0, x0))
    return [(slice(y0, y0 + side_y), slice(x0, x0 + side_x)) for y0, x0 in kept]


def _chunks(n, tile, depth):
    """Balanced chunk sizes of an axis of length n, each >= depth."""
    k = max(1, math.ceil(n / tile))
    while k > 1 and n // k < depth:
        k -= 1
    base, extra = divmod(n, k)
    return tuple(base + (1 if i < extra else 0) for i in range(k))


def _ramp(coords, lo, hi, n, band):
    """1-D weight of the tile with core [lo, hi) at integer `coords` of an
    axis of length n: 1 inside, cosine ramps of width `band` centred on the
    inner seams; the weights of consecutive tiles sum to one."""
    w = np.ones(coords.shape)
    if band <= 0:
        return ((coords >= lo) & (coords < hi)).astype(float)
    for seam, rising in ((lo, True), (hi, False)):
        if seam in (0, n):
            continue
        # t: 0 at seam - band/2, 1 at seam + band/2 (pixel centres)
        t = np.clip((coords + 0.5 - (seam - band / 2)) / band, 0, 1)
        up = 0.5 - 0.5 * np.cos(np.pi * t)
        w = w * (up if rising else 1 - up)
    return w


def deconvolve_tiled(image, kernel, *, tile=1024, overlap=None, blend=None, client=None, num_workers=None, out=None, **deconvolve_options):
    """Non-blind deconvolution of a large image in overlapping tiles.

    Each tile (``tile`` pixels square, plus ``overlap`` pixels of the
    neighbours on each side) is deconvolved with
    :func:`hqsdeblur.nonblind.deconvolve`; seams are cross-faded with cosine
    weights over a band of ``blend`` pixels, so the result is smooth and,
    away from the image border, matches the whole-image deconvolution up to a
    small error (about 1e-3 at the default overlap, see ``docs/cluster.md``).

    Parameters
    ----------
    image : (H, W) or (H, W, 3) array_like
        Float image in [0, 1]; may be a ``numpy.memmap`` or any array that
        supports slicing (it is read tile by tile).
    kernel : (kh, kw) array_like
        Blur kernel (see :func:`hqsdeblur.nonblind.deconvolve`).
    tile : int, optional
        Core tile side in pixels (default 1024); the memory per tile is about
        ``(tile + 2 * overlap)**2`` times a few float64 planes.
    overlap : int, optional
        Halo around each tile, at least the kernel size; default twice the
        kernel size.
    blend : int, optional
        Width of the cross-fade band at each seam, at most ``overlap``;
        default ``overlap // 2``.
    client : distributed.Client, optional
        Run the tiles on this Dask client; default the threaded scheduler.
    num_workers : int, optional
        Threads of the local scheduler (default: dask's, one per core).
    out : ndarray, optional
        Where to write the result (e.g. a ``numpy.memmap``), same shape as
        `image`; default a new float array.
    **deconvolve_options
        Passed to :func:`hqsdeblur.nonblind.deconvolve` (``weight``,
        ``alpha``, ``iterations``, ``backend``, ...).

    Returns
    -------
    out : ndarray
        The deconvolved image, shape of `image`, float, clipped to [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).random((96, 128))
    >>> k = np.ones((1, 5)) / 5
    >>> deconvolve_tiled(y, k, tile=48).shape
    (96, 128)
    """
    import dask
    import dask.array as da

    from .nonblind import deconvolve
    from .validate import as_kernel

    k = as_kernel(kernel)
    ndim = len(np.shape(image))
    if ndim not in (2, 3):
        raise InputError(f"image must be (H, W) or (H, W, C), got shape {np.shape(image)}.")
    H, W = np.shape(image)[:2]
    ks = max(k.shape)
    depth = 2 * ks if overlap is None else int(overlap)
    if depth < ks:
        raise InputError(f"overlap {depth} is smaller than the kernel size {ks}.")
    band = depth // 2 if blend is None else int(blend)
    if not 0 <= band <= depth:
        raise InputError(f"blend must be in [0, overlap={depth}], got {blend!r}.")
    if int(tile) < 2 * ks:
        raise InputError(f"tile {tile} is smaller than twice the kernel size {ks}.")
    if "channel_axis" in deconvolve_options:
        raise InputError("deconvolve_tiled takes channel-last images; channel_axis is not an option.")
    ch = (_chunks(H, int(tile), depth), _chunks(W, int(tile), depth))
    dep = {0: depth if len(ch[0]) > 1 else 0, 1: depth if len(ch[1]) > 1 else 0}
    if ndim == 3:
        ch = ch + (np.shape(image)[2],)
        dep[2] = 0
    colour = ndim == 3
    dtype = np.float32 if np.asarray(image[:1, :1]).dtype == np.float32 else np.float64

    def _tile(block):
        res = deconvolve(block, k, channel_axis=-1 if colour else None, **deconvolve_options)
        return np.asarray(res, dtype=dtype)

    x = da.from_array(image, chunks=ch, asarray=True)
    # Deconvolve every tile with its halo; keep the halo (trim=False) for the blend.
    ext = x.map_overlap(_tile, depth=dep, boundary="none", trim=False, dtype=dtype, meta=np.empty((0,) * ndim, dtype))
    tiles = ext.to_delayed()
    if colour:
        tiles = tiles[..., 0]
    oy = np.concatenate([[0], np.cumsum(ch[0])])
    ox = np.concatenate([[0], np.cumsum(ch[1])])

    def ext_range(o, i, n, d):
        return max(0, o[i] - d), min(n, o[i + 1] + d)

    def assemble(i, j, *neigh):
        """Core block (i, j) = sum of the weighted neighbour tiles."""
        ys, xs = np.arange(oy[i], oy[i + 1]), np.arange(ox[j], ox[j + 1])
        acc = np.zeros((len(ys), len(xs)) + ((ch[2],) if colour else ()), dtype=dtype)
        for (a, b), t in neigh:
            ey0, _ = ext_range(oy, a, H, dep[0])
            ex0, _ = ext_range(ox, b, W, dep[1])
            wy = _ramp(ys, oy[a], oy[a + 1], H, band if dep[0] else 0)
            wx = _ramp(xs, ox[b], ox[b + 1], W, band if dep[1] else 0)
            iy, ix = np.flatnonzero(wy), np.flatnonzero(wx)
            if not (iy.size and ix.size):
                continue
            r = slice(iy[0], iy[-1] + 1)
            c = slice(ix[0], ix[-1] + 1)
            part = t[ys[r][0] - ey0 : ys[r][-1] + 1 - ey0, xs[c][0] - ex0 : xs[c][-1] + 1 - ex0]
            w = np.outer(wy[r], wx[c]).astype(dtype, copy=False)
            acc[r, c] += part * (w[..., None] if colour else w)
        return np.clip(acc, 0, 1, out=acc)

    ny, nx = len(ch[0]), len(ch[1])
    rows = []
    for i in range(ny):
        row = []
        for j in range(nx):
            neigh = [((a, b), tiles[a, b]) for a in range(max(0, i - 1), min(ny, i + 2)) for b in range(max(0, j - 1), min(nx, j + 2))]
            shape = (ch[0][i], ch[1][j]) + ((ch[2],) if colour else ())
            blk = dask.delayed(assemble, pure=True)(i, j, *neigh)
            arr = da.from_delayed(blk, shape=shape, dtype=dtype)
            row.append([arr] if colour else arr)  # da.block nests once per axis
        rows.append(row)
    result = da.block(rows)
    if out is None:
        out = np.empty(np.shape(image), dtype=dtype)
    elif out.shape != np.shape(image):
        raise InputError(f"out has shape {out.shape}, expected {np.shape(image)}.")
    if client is not None:
        # The workers may not share our memory: bring each finished block
        # back and write it here, releasing it at once.
        from distributed import as_completed

        where = {}
        futs = []
        for i, row in enumerate(rows):
            for j, blk in enumerate(row):
                f = client.compute(blk[0] if colour else blk)
                where[f.key] = (slice(oy[i], oy[i + 1]), slice(ox[j], ox[j + 1]))
                futs.append(f)
        for f in as_completed(futs):
            out[where[f.key]] = f.result()
            f.release()
    else:
        kw = {} if num_workers is None else {"num_workers": int(num_workers)}
        da.store(result, out, lock=False, compute=True, scheduler="threads", **kw)
    return out


def deblur_large(
    image,
    *,
    kernel_size,
    method="tv",
    region=1024,
    crops=3,
    tile=1024,
    overlap=None,
    model=None,
    client=None,
    num_workers=None,
    out=None,
    deblur_options=None,
    **deconvolve_options,
):
    """Blind deblurring of a huge image: kernel from a crop, image by tiles.

    The kernel is estimated on the luminance of up to `crops` crops chosen
    by :func:`estimate_kernel_regions` (the most edge energy, overlapping by
    at most half), and of these kernels the one closest to the others wins
    (the medoid: a single failed estimate is outvoted; with one or two crops,
    the first). The whole image is then deconvolved with it by
    :func:`deconvolve_tiled`, with the prior (``final``) and the
    noise-adapted weight of :func:`hqsdeblur.tv.blind_deconvolve` (the
    noise level is measured on the crop). For ``method='unrolled'`` the image
    is therefore that non-blind deconvolution, not the network's own
    reconstruction; for ``method='tv'``, when the safeguard of
    ``blind_deconvolve`` rejects the kernel, the input is returned unchanged
    with a delta kernel.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) array_like
        Float image in [0, 1] (a ``numpy.memmap`` is fine); float32 keeps
        every tile in float32.
    kernel_size : int
        Odd kernel window size.
    method : {'tv', 'unrolled'}
        Kernel estimator (see :func:`hqsdeblur.deblur.deblur`).
    region : int
        Side of the crops used for kernel estimation
        (:func:`estimate_kernel_regions`).
    crops : int
        Most crops the kernel is estimated on (default 3).
    tile, overlap, client, num_workers, out
        See :func:`deconvolve_tiled`.
    model : optional
        Model for ``method='unrolled'``.
    deblur_options : dict, optional
        Options of the kernel estimator: for 'tv' those of
        :func:`hqsdeblur.tv.blind_deconvolve` (``backend``, ``progress``,
        ``final``, ``final_weight``, ...), for 'unrolled' those of
        :func:`hqsdeblur.deblur.deblur` (``backend``, ``exact``, ...).
    **deconvolve_options
        Passed to :func:`hqsdeblur.nonblind.deconvolve` (they override the
        prior and weight chosen for 'tv').

    Returns
    -------
    image : ndarray
        The deblurred image.
    kernel : ndarray
        The kernel estimated on the crop.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).random((128, 160))
    >>> x, k = deblur_large(y, kernel_size=9, region=64, tile=64)
    >>> x.shape, k.shape
    ((128, 160), (9, 9))
    """
    if method not in ("tv", "unrolled"):
        raise InputError(f"unknown method {method!r}; choose 'tv' or 'unrolled'")
    f32 = np.asarray(image[:1, :1]).dtype == np.float32
    found = []
    for rows, cols in estimate_kernel_regions(image, kernel_size, region=region, count=crops):
        crop = _luma_block(image, rows, cols)
        found.append(_crop_kernel(crop.astype(np.float32) if f32 else crop, method, kernel_size, model, dict(deblur_options or {})))
        del crop
    k, final = _consensus(found)
    if final is None:  # the TV safeguard rejected every kernel: input unchanged
        if out is None:
            return np.array(image, copy=True), k
        out[...] = image
        return out, k
    x = deconvolve_tiled(image, k, tile=tile, overlap=overlap, client=client, num_workers=num_workers, out=out, **{**final, **deconvolve_options})
    return x, k


def _consensus(found):
    """The medoid of the (kernel, options) pairs whose options are not None
    (shift-tolerant kernel distance); with fewer than three, the first."""
    from .metrics import kernel_rmse

    ok = [f for f in found if f[1] is not None] or found[:1]
    if len(ok) < 3:
        return ok[0]
    ks = [f[0] for f in ok]
    n = max(ks[0].shape)

    def dist(a, b):
        return kernel_rmse(a, b, window=n, max_shift=3)[0] + kernel_rmse(b, a, window=n, max_shift=3)[0]

    cost = [sum(dist(a, b) for b in ks) for a in ks]
    return ok[int(np.argmin(cost))]


def _crop_kernel(crop, method, kernel_size, model, opts):
    """Kernel of a gray crop, and the options of the final deconvolution
    (None: keep the input, the TV safeguard rejected the kernel)."""
    from .tv import DEFAULTS, blind_deconvolve, noise_level

    noisy = opts.pop("noisy", DEFAULTS["noisy"])
    final = opts.pop("final", "hyper-laplacian")
    weight = opts.pop("final_weight", None)
    if method == "unrolled":
        from .deblur import deblur

        opts.pop("progress", None)
        _, k = deblur(crop, method="unrolled", kernel_size=kernel_size, model=model, max_direct_pixels=None, **opts)
        sigma = noise_level(crop)
    else:
        for key in ("colour", "exact", "model", "channel_axis"):
            opts.pop(key, None)
        _, k, info = blind_deconvolve(crop, kernel_size=kernel_size, return_info=True, noisy=noisy, final=final, final_weight=weight, **opts)
        if info["backed_off"]:
            return k, None
        sigma = info.get("noise_level", 0.0)
    if weight is None and sigma > noisy:
        # blind_deconvolve's noise-adaptive final weight (kept in step with
        # tv.py), for both methods: on 1 % noise it is worth 0.3-1 dB over
        # the default weight after the unrolled network's kernel as well
        weight = (1e-3 if final == "tv" else 3e-4) * sigma / 0.0035
    return k, {"prior": final, "weight": weight}
