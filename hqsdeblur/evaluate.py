"""Dataset runner for the evaluation protocol of the DUBLID reference dev sets.

Loads the Levin et al. (2009) set and the synthetic subset of Lai et al.
(2016) exactly as the reference did (8-bit image -> float, skimage-style
``rgb2gray`` for RGB, crop to even size, float32 rounding), runs a blind
method ``method(blurred_gray) -> (image, kernel)`` on every blurred image
and scores it with :mod:`hqsdeblur.metrics`.  Row and summary field names
follow ``dublid_reference_dev_sets.json`` so the numbers can be put side by
side with the reference.
"""

import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import metrics as _m
from .errors import InputError, OutputError

__all__ = [
    "DATASETS",
    "DatasetItem",
    "load_image_gray",
    "load_dataset",
    "evaluate",
    "summarize",
    "format_table",
    "write_report",
]

DATASETS = ("levin", "lai2016")

_KERNEL_NPZ = {
    "levin": "kernels/levin_kernels_float64.npz",
    "lai2016": "kernels/lai_kernels.npz",
}


class DatasetItem(NamedTuple):
    """One evaluation pair: name, blurred and sharp gray images, true kernel."""

    name: str
    blurred: np.ndarray
    sharp: np.ndarray
    kernel: np.ndarray


def load_image_gray(path, *, float32=True):
    """Read an image the way the reference loader does.

    ``img_as_float`` (integer types divided by their maximum), gray
    conversion ``0.2125 R + 0.7154 G + 0.0721 B`` for RGB(A) (alpha dropped),
    crop to even size by dropping the last row/column, and, with
    ``float32=True``, rounding to float32 as the reference network input was.

    Parameters
    ----------
    path : str or Path
        Image file.
    float32 : bool, optional
        Round through float32 (the protocol); the result is float64 anyway.

    Returns
    -------
    (H, W) ndarray, float64 in [0, 1], H and W even.

    Example
    -------
    >>> y = load_image_gray("../shared/data/levin/blurred/im1_k1.png")  # doctest: +SKIP
    >>> y.shape  # doctest: +SKIP
    (254, 254)
    """
    from .data import load_gray

    a = load_gray(path)  # rgb2gray weights, alpha dropped, in [0, 1]
    H, W = a.shape
    a = a[: H - H % 2, : W - W % 2]
    if float32:
        a = a.astype(np.float32).astype(np.float64)
    return np.ascontiguousarray(a)


def _dataset_dir(root, name):
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    root = Path(root)
    for cand in (root / name, root / "data" / name, root):
        if (cand / "manifest.json").is_file() and (cand / _KERNEL_NPZ[name]).is_file():
            return cand
    raise InputError(f"dataset {name!r} not found under {root}")


def _entries(root, name):
    """List of (item name, blurred path, sharp path, kernel key), sorted by name."""
    d = _dataset_dir(root, name)
    with open(d / "manifest.json") as f:
        man = json.load(f)
    out = []
    for rel, info in man["images"].items():
        if not rel.startswith("blurred/"):
            continue  # lai2016: only the synthetic pairs (real photos have no GT)
        item = Path(rel).stem
        out.append((item, d / rel, d / info["sharp"], info["kernel_npz_key"]))
    out.sort(key=lambda e: e[0])
    return d, out


def load_dataset(root, name, *, limit=None, float32=True):
    """Iterate over the evaluation pairs of a dataset.

    Parameters
    ----------
    root : str or Path
        Data root holding ``levin/`` and ``lai2016/`` (e.g. ``../shared/data``),
        or the dataset folder itself.
    name : {"levin", "lai2016"}
        Dataset. ``lai2016`` gives only the 20 synthetic blurred images.
    limit : int, optional
        Stop after this many items (in name order).
    float32 : bool, optional
        Round images through float32 as the reference protocol did.

    Yields
    ------
    DatasetItem
        ``(name, blurred, sharp, kernel)``: gray float64 images of the same
        even size, kernel float64 normalised to sum 1 (native size,
        convolution orientation).

    Example
    -------
    >>> items = list(load_dataset("../shared/data", "levin", limit=2))  # doctest: +SKIP
    >>> items[0].name, items[0].blurred.shape, items[0].kernel.shape  # doctest: +SKIP
    ('im1_k1', (254, 254), (19, 19))
    """
    d, entries = _entries(root, name)
    if limit is not None:
        entries = entries[: int(limit)]
    with np.load(d / _KERNEL_NPZ[name]) as npz:
        kernels = {k: np.asarray(npz[k], dtype=np.float64) for k in npz.files}
    sharp_cache = {}
    for item, bpath, spath, kkey in entries:
        if spath not in sharp_cache:
            sharp_cache = {spath: load_image_gray(spath, float32=float32)}
        y = load_image_gray(bpath, float32=float32)
        x = sharp_cache[spath]
        if y.shape != x.shape:
            raise InputError(f"{item}: blurred {y.shape} vs sharp {x.shape}")
        k = kernels[kkey]
        yield DatasetItem(item, y, x, k / k.sum())


def _kernel_key(name, item):
    return item.rsplit("_", 1)[-1] if name == "levin" else "kernel_" + item.rsplit("_", 1)[-1]


def _score(item, image, kernel, *, dataset, seconds, window=45):
    y, x, kt = item.blurred, item.sharp, item.kernel
    image = np.asarray(image, dtype=np.float64)
    if image.shape != x.shape:
        raise InputError(f"{item.name}: method returned shape {image.shape}, expected {x.shape}")
    ks = int(max(kt.shape))
    out = _m.aligned_compare(image, x)
    blur = _m.aligned_compare(y, x)
    row = {
        "dataset": dataset,
        "name": item.name,
        "kernel": _kernel_key(dataset, item.name),
        "kernel_size": ks,
        "kernel_fits_45": ks <= window,
        "H": int(x.shape[0]),
        "W": int(x.shape[1]),
        "psnr": out["psnr"],
        "ssim": out["ssim"],
        "shift_dy": out["shift"][0],
        "shift_dx": out["shift"][1],
        "psnr_blurred": blur["psnr"],
        "ssim_blurred": blur["ssim"],
        "blurred_shift_dy": blur["shift"][0],
        "blurred_shift_dx": blur["shift"][1],
        "isnr": out["psnr"] - blur["psnr"],
        "out_shift_at_edge": out["at_edge"],
        "blurred_shift_at_edge": blur["at_edge"],
        "out_min": float(image.min()),
        "out_max": float(image.max()),
        "seconds": seconds,
    }
    kfields = ("kernel_rmse", "kernel_rmse_noshift", "kernel_rmse_pm22",
               "kernel_shift_pm22", "kernel_shift_dy", "kernel_shift_dx",
               "kernel_shift_at_edge", "kernel_sum", "kernel_est_size")
    nbfields = ("ssd_est", "ssd_true", "error_ratio", "psnr_nb_est", "ssim_nb_est",
                "psnr_nb_true", "ssim_nb_true", "nb_est_shift", "nb_true_shift", "nb_pad")
    row.update(dict.fromkeys(kfields))
    row.update(dict.fromkeys(nbfields))
    row.update(dict.fromkeys("circ_" + f for f in nbfields if f != "nb_pad"))
    if kernel is None:
        return row
    k = np.asarray(kernel, dtype=np.float64)
    row["kernel_sum"] = float(k.sum())
    row["kernel_est_size"] = list(k.shape)
    r10 = _m.kernel_rmse(k, kt, window=window, max_shift=10)
    if r10 is not None:
        r0 = _m.kernel_rmse(k, kt, window=window, max_shift=0)
        r22 = _m.kernel_rmse(k, kt, window=window, max_shift=22)
        row.update(
            kernel_rmse=r10[0], kernel_rmse_noshift=r0[0], kernel_rmse_pm22=r22[0],
            kernel_shift_pm22=list(r22[1]), kernel_shift_dy=r10[1][0],
            kernel_shift_dx=r10[1][1],
            kernel_shift_at_edge=bool(abs(r10[1][0]) == 10 or abs(r10[1][1]) == 10),
        )
    for prefix, circ in (("", False), ("circ_", True)):
        nb = _m.nonblind_compare(y, k, kt, x, circular=circ)
        for f in nbfields:
            if circ and f == "nb_pad":
                continue
            v = nb[f]
            row[prefix + f] = list(v) if isinstance(v, tuple) else v
    return row


def evaluate(method, root, name, *, limit=None, progress=True):
    """Run a blind deblurring method on a dataset and score it.

    Parameters
    ----------
    method : callable
        ``method(blurred_gray) -> (image, kernel)``; ``image`` has the input's
        shape, ``kernel`` is a 2-D array (or None: kernel metrics are skipped).
    root : str or Path
        Data root (see :func:`load_dataset`).
    name : {"levin", "lai2016"}
        Dataset.
    limit : int, optional
        Evaluate only the first ``limit`` items.
    progress : bool, optional
        Show a tqdm progress bar on stderr.

    Returns
    -------
    rows : list of dict
        Per-image metrics, field names as in the reference ``per_image_*``
        entries (``seconds`` = wall time of the method call).
    summary : dict
        Aggregates, field names as in the reference dataset summaries
        (see :func:`summarize`).

    Example
    -------
    >>> blind = lambda y: (y, np.ones((1, 1)))
    >>> rows, summ = evaluate(blind, "../shared/data", "levin", limit=2)  # doctest: +SKIP
    >>> round(summ["mean_isnr_db"], 6)  # doctest: +SKIP
    0.0
    """
    from tqdm import tqdm

    _, entries = _entries(root, name)
    total = len(entries) if limit is None else min(len(entries), int(limit))
    rows = []
    bar = tqdm(load_dataset(root, name, limit=limit), total=total, file=sys.stderr,
               disable=not progress, desc=name, unit="img")
    for item in bar:
        t0 = time.perf_counter()
        image, kernel = method(item.blurred)
        seconds = time.perf_counter() - t0
        rows.append(_score(item, image, kernel, dataset=name, seconds=seconds))
        if progress:
            bar.set_postfix(psnr=f"{rows[-1]['psnr']:.2f}")
    return rows, summarize(rows)


def _vals(rows, key):
    return [r[key] for r in rows if r.get(key) is not None]


def _mean(v):
    return float(np.mean(v)) if v else None


def _frac_le(v, t):
    return float(np.mean([x <= t for x in v])) if v else None


def summarize(rows):
    """Aggregate per-image rows into the reference summary fields.

    Example
    -------
    >>> summarize([{"psnr": 20.0, "psnr_blurred": 19.0, "isnr": 1.0}])["mean_isnr_db"]
    1.0
    """
    isn = _vals(rows, "isnr")
    er = _vals(rows, "error_ratio")
    cer = _vals(rows, "circ_error_ratio")
    secs = _vals(rows, "seconds")
    s = {
        "count": len(rows),
        "mean_psnr_aligned_db": _mean(_vals(rows, "psnr")),
        "mean_ssim_aligned": _mean(_vals(rows, "ssim")),
        "mean_psnr_blurred_aligned_db": _mean(_vals(rows, "psnr_blurred")),
        "mean_ssim_blurred_aligned": _mean(_vals(rows, "ssim_blurred")),
        "mean_isnr_db": _mean(isn),
        "min_isnr_db": float(min(isn)) if isn else None,
        "count_isnr_positive": int(sum(v > 0 for v in isn)),
        "kernel_rmse_count": len(_vals(rows, "kernel_rmse")),
        "mean_kernel_rmse_min_shift_pm10": _mean(_vals(rows, "kernel_rmse")),
        "mean_kernel_rmse_min_shift_pm22": _mean(_vals(rows, "kernel_rmse_pm22")),
        "mean_kernel_rmse_noshift": _mean(_vals(rows, "kernel_rmse_noshift")),
        "error_ratio_frac_le_2": _frac_le(er, 2.0),
        "error_ratio_frac_le_3": _frac_le(er, 3.0),
        "error_ratio_mean": _mean(er),
        "error_ratio_median": float(statistics.median(er)) if er else None,
        "error_ratio_max": float(max(er)) if er else None,
        "mean_psnr_nonblind_true_kernel_db": _mean(_vals(rows, "psnr_nb_true")),
        "mean_ssim_nonblind_true_kernel": _mean(_vals(rows, "ssim_nb_true")),
        "mean_psnr_nonblind_est_kernel_db": _mean(_vals(rows, "psnr_nb_est")),
        "mean_ssim_nonblind_est_kernel": _mean(_vals(rows, "ssim_nb_est")),
        "circ_error_ratio_frac_le_2": _frac_le(cer, 2.0),
        "circ_error_ratio_frac_le_3": _frac_le(cer, 3.0),
        "circ_error_ratio_mean": _mean(cer),
        "circ_error_ratio_median": float(statistics.median(cer)) if cer else None,
        "circ_mean_psnr_nonblind_true_kernel_db": _mean(_vals(rows, "circ_psnr_nb_true")),
        "circ_mean_ssim_nonblind_true_kernel": _mean(_vals(rows, "circ_ssim_nb_true")),
        "circ_mean_psnr_nonblind_est_kernel_db": _mean(_vals(rows, "circ_psnr_nb_est")),
        "count_out_shift_at_edge": int(sum(bool(r.get("out_shift_at_edge")) for r in rows)),
        "count_kernel_shift_at_edge": int(sum(bool(r.get("kernel_shift_at_edge")) for r in rows)),
        "seconds_mean": _mean(secs),
        "seconds_median": float(statistics.median(secs)) if secs else None,
    }
    return s


#: (summary key, column header, format) of :func:`format_table`'s default columns.
TABLE_COLUMNS = (
    ("count", "n", "{:d}"),
    ("mean_psnr_aligned_db", "PSNR", "{:.2f}"),
    ("mean_ssim_aligned", "SSIM", "{:.4f}"),
    ("mean_psnr_blurred_aligned_db", "PSNR blurred", "{:.2f}"),
    ("mean_isnr_db", "ISNR", "{:+.2f}"),
    ("mean_kernel_rmse_min_shift_pm10", "k RMSE", "{:.2e}"),
    ("error_ratio_frac_le_2", "ER<=2", "{:.0%}"),
    ("error_ratio_frac_le_3", "ER<=3", "{:.0%}"),
    ("error_ratio_median", "ER med", "{:.2f}"),
    ("mean_psnr_nonblind_est_kernel_db", "NB est", "{:.2f}"),
    ("mean_psnr_nonblind_true_kernel_db", "NB true", "{:.2f}"),
    ("seconds_mean", "s/img", "{:.2f}"),
)


def _fmt(v, spec):
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    try:
        return spec.format(v)
    except (ValueError, TypeError):
        return str(v)


def format_table(summary_by_method, *, columns=TABLE_COLUMNS):
    """Markdown table of summaries, one row per method.

    Parameters
    ----------
    summary_by_method : dict
        ``{method name: summary dict}`` (missing keys print as ``-``).
    columns : sequence of (key, header, format), optional
        Columns to show.

    Returns
    -------
    str

    Example
    -------
    >>> print(format_table({"a": {"count": 1}}, columns=[("count", "n", "{:d}")]))
    | method | n |
    | --- | --- |
    | a | 1 |
    """
    head = "| method | " + " | ".join(c[1] for c in columns) + " |"
    sep = "| --- | " + " | ".join("---" for _ in columns) + " |"
    lines = [head, sep]
    for meth, summ in summary_by_method.items():
        cells = [_fmt(summ.get(k), f) for k, _, f in columns]
        lines.append(f"| {meth} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _atomic_write_text(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_report(path, rows, summary, **extra):
    """Write ``{"summary": ..., "rows": [...], **extra}`` as JSON, atomically.

    Non-finite floats are written as ``Infinity``/``NaN`` (Python's json
    default). Raises :class:`~hqsdeblur.errors.OutputError` on failure. The file is written to a temporary name in the same folder and
    moved into place with :func:`os.replace`.

    Example
    -------
    >>> write_report("/tmp/report.json", [], {"count": 0})  # doctest: +SKIP
    """
    doc = {"summary": _jsonable(summary), "rows": _jsonable(rows)}
    doc.update(_jsonable(extra))
    text = json.dumps(doc, indent=1)
    try:
        _atomic_write_text(path, text)
    except OSError as exc:
        raise OutputError(f"cannot write report {path}: {exc}") from exc
