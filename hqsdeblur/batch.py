"""Deblur files: one file (:func:`process_file`) or many (:func:`deblur_files`).

A file that fails (unreadable, invalid, cannot be written) does not stop a
batch: its result row says ``status='failed'`` with a one-line message naming
the file, and the other files are still written. Outputs are written
atomically (see :mod:`hqsdeblur.io`), so an interrupted run (Ctrl-C, SIGTERM)
leaves no partial file; rerunning with ``skip_existing=True`` resumes it.

Example
-------
>>> from hqsdeblur.batch import deblur_files
>>> rows = deblur_files(["photos/"], "sharp/", report="sharp/report.csv")  # doctest: +SKIP
>>> [r["status"] for r in rows]  # doctest: +SKIP
['ok', 'ok', 'failed']
"""

from __future__ import annotations

import csv
import glob
import json
import os
import sys
import time
import warnings

import numpy as np

from .errors import HqsdeblurError, InputError, OutputError

__all__ = ["default_method", "process_file", "expand_inputs", "deblur_files", "run_jobs",
           "IMAGE_EXTENSIONS"]

#: File extensions treated as images when a folder is expanded.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy")

# settings understood here; anything else goes to hqsdeblur.deblur as an option
_DEBLUR_KEYS = ("method", "model", "kernel_size", "backend", "exact", "colour")
_FAILURES = (HqsdeblurError, OSError, ValueError, MemoryError)


def default_method():
    """The method used when none is asked for, and its model.

    Returns
    -------
    method : {'unrolled', 'tv'}
        'tv' unless the shipped model's metadata marks it as the default
        (``meta['default_method'] is True``), which the trainer sets only for
        a model that beat the classical mode on the evaluation protocol.
        The model shipped now does not: on Levin's 32 images it scores
        29.1 dB mean aligned PSNR against 29.4 dB for 'tv', and 'tv' leads
        on Lai's 75 px kernels (README).
    model : str or None
        Path of the shipped model for 'unrolled', None for 'tv'.

    Example
    -------
    >>> default_method()[0] in ("unrolled", "tv")
    True
    """
    from .deblur import default_model_path, load_default_model

    path = default_model_path()
    if path is not None:
        try:
            if load_default_model().meta.get("default_method") is True:
                return "unrolled", path
        except Exception:  # a broken shipped model must not break 'tv'
            pass
    return "tv", None


def _deblur_kwargs(settings):
    s = dict(settings or {})
    s.pop("max_pixels", None)
    if s.get("backend") == "auto":
        s["backend"] = None
    if s.get("method") is None:
        method, model = default_method()
        s["method"] = method
        if s.get("model") is None:
            s["model"] = model
    return {k: v for k, v in s.items() if v is not None}


def _one_line(msg, path):
    msg = " ".join(str(msg).split()) or "unknown error"
    return msg if str(path) in msg else f"{path}: {msg}"


def _failure_message(exc, path):
    if isinstance(exc, MemoryError):
        return _one_line("not enough memory to deblur this image (try a smaller image or --max-pixels)", path)
    if isinstance(exc, HqsdeblurError):
        return _one_line(exc, path)
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else path
        return _one_line(f"{where}: {exc.strerror}", path)
    return _one_line(f"{type(exc).__name__}: {exc}", path)


def _bit_depth(info, output):
    ext = os.path.splitext(output)[1].lower()
    if ext in (".jpg", ".jpeg"):
        return 8
    # float data (.npy, float TIFF) and 16-bit files keep 16 bits; 1..8-bit stay 8
    return 8 if info.bit_depth is not None and info.bit_depth <= 8 else 16


def _npy_dtype(info):
    """Float dtype for a .npy output: a float .npy input keeps its precision,
    anything else gives float32."""
    if info.format == "npy":
        try:
            dt = np.load(info.path, mmap_mode="r", allow_pickle=False).dtype
        except (OSError, ValueError):
            dt = None
        if dt == np.float64:
            return np.float64
    return np.float32


def process_file(input_path, output_path, *, kernel_path=None, settings=None, overwrite=False,
                 skip_existing=False, progress=None):
    """Deblur one image file and write the result (and the kernel).

    Parameters
    ----------
    input_path : str or os.PathLike
        A ``.png``, ``.jpg``, ``.tif`` or ``.npy`` image.
    output_path : str or os.PathLike
        Where the deblurred image goes; the format follows the extension.
        8-bit input gives 8-bit output, 16-bit (or float) input 16-bit
        output; a ``.npy`` output stores the float array (float64 only when
        the input was a float64 ``.npy``, else float32). Gray stays gray;
        an alpha channel is dropped (with a note).
    kernel_path : str or os.PathLike, optional
        Where the estimated kernel goes (``.npy`` keeps the exact values, an
        image stores it scaled to its maximum).
    settings : dict, optional
        ``method``, ``model``, ``kernel_size``, ``backend``, ``exact``,
        ``colour`` (see :func:`hqsdeblur.deblur.deblur`), ``max_pixels``
        (see :func:`hqsdeblur.io.read_image`); other keys are passed to
        ``deblur`` as options. No method means :func:`default_method`.
    overwrite : bool, optional
        Replace existing outputs.
    skip_existing : bool, optional
        If every output exists already, do nothing (status ``'skipped'``,
        nothing is read). If only some exist, they are recomputed.
    progress : callable, optional
        Passed to ``deblur`` for the 'tv' method (``progress(level, n)``).

    Returns
    -------
    dict
        ``input``, ``output``, ``kernel`` (paths as str, kernel None if not
        asked), ``status`` ('ok', 'skipped' or 'failed'), ``seconds``,
        ``error`` (one line naming the file, or None) and ``notes`` (list of
        str, e.g. a dropped alpha channel).

    Raises
    ------
    KeyboardInterrupt
        Propagated; no partial output is left behind.

    Examples
    --------
    >>> r = process_file("blurred.png", "sharp.png", kernel_path="k.png")  # doctest: +SKIP
    >>> r["status"], r["error"]  # doctest: +SKIP
    ('ok', None)
    """
    from .io import (DEFAULT_MAX_PIXELS, atomic_path, check_output_path, read_image, write_image,
                     write_kernel)

    t0 = time.perf_counter()
    inp = os.fspath(input_path)
    out = os.fspath(output_path)
    kout = None if kernel_path is None else os.fspath(kernel_path)
    row = {"input": inp, "output": out, "kernel": kout, "status": "failed", "seconds": 0.0,
           "error": None, "notes": []}
    settings = dict(settings or {})
    try:
        targets = [out] if kout is None else [out, kout]
        if kout is not None and os.path.abspath(kout) == os.path.abspath(out):
            raise OutputError(f"{out}: the kernel output must differ from the image output.")
        present = [not check_output_path(p, [inp], overwrite=overwrite, skip_existing=skip_existing)
                   for p in targets]
        if all(present):
            row["status"] = "skipped"
            return row
        # a half-finished earlier run: redo it and replace what it left
        replace = overwrite or any(present)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            image, info = read_image(inp, max_pixels=settings.get("max_pixels", DEFAULT_MAX_PIXELS))
        row["notes"] += [_one_line(w.message, inp) for w in caught]
        if info.had_alpha:
            row["notes"].append(f"{inp}: alpha channel dropped; the output has no alpha.")

        from .deblur import deblur

        kwargs = _deblur_kwargs(settings)
        if progress is not None and kwargs["method"] == "tv":
            kwargs["progress"] = progress
        work = image.astype(_npy_dtype(info)) if info.format == "npy" else image
        x, k = deblur(work, **kwargs)

        out_is_npy = out.lower().endswith(".npy")
        if out_is_npy:
            x = np.asarray(x, dtype=_npy_dtype(info))
        # kernel first, image last: with both renamed into place only after
        # both were encoded, a failure leaves neither (or just the kernel,
        # which skip_existing then redoes)
        with atomic_path(out, overwrite=replace) as tmp_out:
            write_image(tmp_out, x, bit_depth=_bit_depth(info, out), overwrite=True)
            if kout is not None:
                with atomic_path(kout, overwrite=replace) as tmp_k:
                    write_kernel(tmp_k, k, overwrite=True)
        row["status"] = "ok"
    except _FAILURES as exc:
        row["error"] = _failure_message(exc, inp)
    finally:
        row["seconds"] = round(time.perf_counter() - t0, 4)
    return row


def _has_magic(s):
    return any(c in s for c in "*?[")


def _images_in(folder):
    names = sorted(os.listdir(folder))
    return [os.path.join(folder, n) for n in names
            if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)
            and os.path.isfile(os.path.join(folder, n))]


def expand_inputs(items):
    """Expand files, folders and glob patterns into a list of image files.

    Parameters
    ----------
    items : str, os.PathLike or sequence of them
        A file is kept as is (even if missing: processing it then reports
        the error); a folder gives the images directly inside it, sorted by
        name (hidden files skipped); a glob pattern (``*``, ``?``, ``[``)
        gives its matches, sorted (folders among them are expanded).

    Returns
    -------
    list of str
        Without duplicates, in order of first appearance.

    Raises
    ------
    InputError
        A glob pattern or a folder that yields no image.

    Example
    -------
    >>> expand_inputs(["a.png", "b.png", "a.png"])
    ['a.png', 'b.png']
    """
    if isinstance(items, (str, bytes, os.PathLike)):
        items = [items]
    found = []
    for item in items:
        item = os.fsdecode(os.fspath(item))
        if os.path.isdir(item):
            files = _images_in(item)
            if not files:
                raise InputError(f"{item}: folder holds no image (.png, .jpg, .tif, .npy).")
        elif not os.path.lexists(item) and _has_magic(item):
            files = []
            for m in sorted(glob.glob(item)):
                files += _images_in(m) if os.path.isdir(m) else [m]
            if not files:
                raise InputError(f"{item}: no file matches this pattern.")
        else:
            files = [item]
        found += files
    return list(dict.fromkeys(found))


def _output_name(path, out_dir, ext):
    name = os.path.basename(path)
    if ext:
        name = os.path.splitext(name)[0] + "." + ext.lstrip(".")
    return os.path.join(out_dir, name)


def _kernel_name(output, kernel_dir, suffix):
    stem, ext = os.path.splitext(os.path.basename(output))
    if suffix is None:  # the image's format; JPEG is lossy, so PNG instead
        suffix = "_kernel" + (".png" if ext.lower() in (".jpg", ".jpeg") else ext)
    return os.path.join(kernel_dir, stem + suffix)


def _write_report(path, rows):
    from .io import atomic_write

    fields = ["input", "output", "kernel", "status", "seconds", "error", "notes"]
    if os.fspath(path).lower().endswith(".json"):
        with atomic_write(path, overwrite=True, mode="w") as fh:
            json.dump(rows, fh, indent=1)
    else:
        with atomic_write(path, overwrite=True, mode="w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            for r in rows:
                w.writerow({f: "; ".join(r[f]) if f == "notes" else ("" if r.get(f) is None else r[f])
                            for f in fields})


def _run_job(job, settings):
    if job.get("error"):
        return {"input": job["input"], "output": job["output"], "kernel": job["kernel"],
                "status": "failed", "seconds": 0.0, "error": job["error"], "notes": []}
    return process_file(job["input"], job["output"], kernel_path=job["kernel"], settings=settings,
                        overwrite=job["overwrite"], skip_existing=job["skip_existing"])


def _map_on_client(client, jobs, settings, *, progress=True):
    """Fallback when hqsdeblur.distributed is absent: one task per file."""
    futures = client.map(_run_job, jobs, settings=settings, pure=False)
    return client.gather(futures)


def run_jobs(jobs, *, settings=None, client=None, progress=True, report=None):
    """Run prepared jobs (dicts with ``input``, ``output``, ``kernel``,
    ``overwrite``, ``skip_existing`` and optionally ``error``: a job known to
    fail) and return one result row per job,
    in order. See :func:`deblur_files`."""
    rows = []
    if client is not None:
        try:
            from .distributed import map_files
        except ImportError:
            map_files = _map_on_client
        rows = list(map_files(client, jobs, settings, progress=progress))
    else:
        from tqdm import tqdm

        bar = tqdm(jobs, file=sys.stderr, disable=not progress or not jobs, unit="file",
                   desc="deblur", delay=1.0, dynamic_ncols=True)
        with bar:
            for job in bar:
                bar.set_postfix_str(os.path.basename(job["input"]), refresh=False)
                rows.append(_run_job(job, settings))
    if report is not None:
        _write_report(report, rows)
    return rows


def deblur_files(inputs, out_dir, *, settings=None, kernel_dir=None, kernel_suffix=None,
                 ext=None, overwrite=False, skip_existing=False, client=None, progress=True,
                 report=None):
    """Deblur many files into a folder.

    Parameters
    ----------
    inputs : sequence of str or os.PathLike
        Files, folders and glob patterns (see :func:`expand_inputs`).
    out_dir : str or os.PathLike
        Output folder (created if missing); ``out_dir/<input name>``.
    settings : dict, optional
        As in :func:`process_file`.
    kernel_dir : str or os.PathLike, optional
        Also write each kernel as ``kernel_dir/<output stem><kernel_suffix>``.
    kernel_suffix : str, optional
        E.g. ``'_kernel.png'``. Default: ``'_kernel'`` plus the output's
        extension (``.png`` for JPEG), so ``.npy`` images get exact ``.npy``
        kernels.
    ext : str, optional
        Force the output format (e.g. ``'png'``); default: the input's.
    overwrite, skip_existing : bool, optional
        As in :func:`process_file`.
    client : dask.distributed.Client, optional
        Run the files on this Dask client instead of in this process.
    progress : bool, optional
        A per-file progress bar on stderr (shown after a second).
    report : str or os.PathLike, optional
        Write one row per file to this ``.csv`` or ``.json`` file (atomically).

    Returns
    -------
    list of dict
        One row per file, as returned by :func:`process_file`, in input order.

    Raises
    ------
    InputError
        An input pattern or folder gives no file.
    OutputError
        The output folder cannot be created.
    """
    files = expand_inputs(inputs)
    for d in (out_dir, kernel_dir):
        if d is not None:
            try:
                os.makedirs(d, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"Cannot create the output folder {os.fspath(d)}: "
                                  f"{exc.strerror or exc}.") from None
    jobs, seen = [], {}
    for f in files:
        out = _output_name(f, os.fspath(out_dir), ext)
        key = os.path.normcase(os.path.abspath(out))
        job = {"input": f, "output": out, "overwrite": overwrite, "skip_existing": skip_existing,
               "kernel": None if kernel_dir is None else _kernel_name(out, os.fspath(kernel_dir), kernel_suffix)}
        if key in seen:  # two inputs with the same name: the later one fails
            job["error"] = f"{f}: same output name as {seen[key]} ({out})."
        seen.setdefault(key, f)
        jobs.append(job)
    return run_jobs(jobs, settings=settings, client=client, progress=progress, report=report)
