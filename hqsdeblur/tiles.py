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

__all__ = ["estimate_kernel_region", "deconvolve_tiled", "deblur_large"]

from .validate import LUMA as _LUMA  # noqa: E402


def _luma_block(image, rows, cols):
    """float64 luminance of ``image[rows, cols]`` (gray or channel-last)."""
    b = np.asarray(image[rows, cols], dtype=np.float64)
    if b.ndim == 3:
        b = b[..., :3] @ _LUMA[: b.shape[-1]] if b.shape[-1] == 3 else b.mean(axis=-1)
    return b


def estimate_kernel_region(image, kernel_size, *, region=1024):
    """Pick a representative crop for blind kernel estimation.

    Candidate windows of ``region x region`` pixels lie on a grid with half a
    window stride; the one with the highest gradient energy (sum of squared
    first differences of the luminance) wins. Saturated pixels (>= 0.99) carry
    no blur information and are left out of the score. The image is scanned in
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

    Returns
    -------
    window : tuple of slice
        ``(rows, cols)``; ``image[window]`` is the crop.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((256, 256)); img[160:200, 160:200] = 1
    >>> rows, cols = estimate_kernel_region(img, 9, region=64)
    >>> rows.start >= 96 and cols.start >= 96
    True
    """
    H, W = np.shape(image)[:2]
    ks = int(kernel_size)
    side_y = min(H, max(int(region), 4 * ks))
    side_x = min(W, max(int(region), 4 * ks))
    # Energy of cells of half a window; a window is 2 x 2 cells.
    cy, cx = max(side_y // 2, 1), max(side_x // 2, 1)
    ny, nx = max(H // cy, 1), max(W // cx, 1)
    cells = np.zeros((ny, nx))
    for i in range(ny):
        r0, r1 = i * cy, (i + 1) * cy if i < ny - 1 else H
        # one extra row so vertical differences cross the cell boundary
        lum = _luma_block(image, slice(r0, min(r1 + 1, H)), slice(None))
        ok = lum < 0.99
        gx = np.diff(lum, axis=1) ** 2 * (ok[:, 1:] & ok[:, :-1])
        gy = np.diff(lum, axis=0) ** 2 * (ok[1:] & ok[:-1])
        gx = gx[: r1 - r0]
        for j in range(nx):
            c0, c1 = j * cx, (j + 1) * cx if j < nx - 1 else W
            cells[i, j] = gx[:, c0 : min(c1, W - 1)].sum() + gy[:, c0:c1].sum()
    wy, wx = min(2, ny), min(2, nx)
    best, arg = -1.0, (0, 0)
    for i in range(ny - wy + 1):
        for j in range(nx - wx + 1):
            e = cells[i : i + wy, j : j + wx].sum()
            if e > best:
                best, arg = e, (i, j)
    y0 = min(arg[0] * cy, H - side_y)
    x0 = min(arg[1] * cx, W - side_x)
    return slice(y0, y0 + side_y), slice(x0, x0 + side_x)


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
        acc = np.zeros((len(ys), len(xs)) + ((ch[2],) if colour else ()))
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
            w = np.outer(wy[r], wx[c])
            acc[r, c] += part * (w[..., None] if colour else w)
        return np.clip(acc, 0, 1).astype(dtype, copy=False)

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

    Parameters
    ----------
    image : (H, W) or (H, W, 3) array_like
        Float image in [0, 1] (a ``numpy.memmap`` is fine).
    kernel_size : int
        Odd kernel window size.
    method : {'tv', 'unrolled'}
        Kernel estimator (see :func:`hqsdeblur.deblur.deblur`).
    region : int
        Side of the crop used for kernel estimation
        (:func:`estimate_kernel_region`).
    tile, overlap, client, num_workers, out
        See :func:`deconvolve_tiled`.
    model : optional
        Model for ``method='unrolled'``.
    deblur_options : dict, optional
        Extra keyword arguments of :func:`hqsdeblur.deblur.deblur`.
    **deconvolve_options
        Passed to :func:`hqsdeblur.nonblind.deconvolve`.

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
    from .deblur import deblur

    rows, cols = estimate_kernel_region(image, kernel_size, region=region)
    crop = np.asarray(image[rows, cols])
    _, k = deblur(crop, method=method, kernel_size=kernel_size, model=model, **(deblur_options or {}))
    x = deconvolve_tiled(image, k, tile=tile, overlap=overlap, client=client, num_workers=num_workers, out=out, **deconvolve_options)
    return x, k
