"""Deblur many files on a Dask cluster: one task per file.

:func:`map_files` is what :func:`hqsdeblur.batch.deblur_files` calls when it is
given a ``client``. Each file is one task running
:func:`hqsdeblur.batch.process_file` on a worker, so the workers read and
write the files themselves (all machines must see the same paths, e.g. a
shared file system). The settings travel to each worker once (scattered with
``broadcast=True``); a model given as a path is loaded once per worker
process by a worker plugin, and again by a worker that replaces a dead one.

Failures:

* a file that cannot be deblurred gives a row with ``status='failed'`` and its
  reason; the other files go on;
* an exception that escapes a task is retried ``retries`` times, then reported
  as failed;
* a worker process that dies loses its tasks; the scheduler runs them again
  elsewhere (up to ``distributed.scheduler.allowed-failures`` deaths, then the
  file is reported as failed). Outputs are written atomically, so a dead
  worker leaves no partial file, and a rerun that finds the outputs a lost
  attempt finished reports them as ``'ok'``, not as skipped or failed.

Example
-------
>>> from hqsdeblur.distributed import local_client
>>> from hqsdeblur.batch import deblur_files
>>> with local_client(2) as client:  # doctest: +SKIP
...     rows = deblur_files(["photos/"], "sharp/", client=client, skip_existing=True)
"""

from __future__ import annotations

import os
import sys
import uuid

__all__ = ["map_files", "local_client", "connect", "PreloadModel"]

#: Models loaded on this (worker) process, by absolute path.
_WORKER_MODELS: dict = {}

# Test-only fault injection, see _maybe_die.
KILL_ON_ENV = "HQSDEBLUR_TEST_KILL_ON"
KILL_MARKER_ENV = "HQSDEBLUR_TEST_KILL_MARKER"


def _import_distributed():
    try:
        import distributed
    except ImportError:
        from .errors import BackendError

        raise BackendError("running on a cluster needs Dask: pip install 'dask[distributed]'") from None
    return distributed


def _model_key(path):
    return os.path.abspath(os.fspath(path))


def _load_model_cached(path):
    key = _model_key(path)
    if key not in _WORKER_MODELS:
        from .model_io import load_model

        _WORKER_MODELS[key] = load_model(key)
    return _WORKER_MODELS[key]


try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # Dask is optional; map_files says so when called
    _WorkerPlugin = object


class PreloadModel(_WorkerPlugin):
    """Worker plugin: load the model file once when a worker starts.

    Registered by :func:`map_files` when ``settings['model']`` is a path; a
    worker that joins later (or replaces a dead one) loads it on start.
    A model that fails to load is left to the tasks, which then report the
    error per file.
    """

    name = "hqsdeblur-preload-model"

    def __init__(self, path):
        self.path = os.fspath(path)

    def setup(self, worker=None):
        try:
            _load_model_cached(self.path)
        except Exception:  # reported by each task instead
            pass

    def teardown(self, worker=None):
        _WORKER_MODELS.pop(_model_key(self.path), None)


def _maybe_die(job):
    """TEST ONLY: die on the first attempt at a chosen file.

    If ``HQSDEBLUR_TEST_KILL_ON`` (a file basename) is set in the worker's
    environment, the job's input has that basename, and the marker file named
    by ``HQSDEBLUR_TEST_KILL_MARKER`` does not exist yet, create the marker
    and end the worker process at once (``os._exit(1)``), as a crash or an
    out-of-memory kill would. Never set these variables in production.
    """
    name = os.environ.get(KILL_ON_ENV)
    marker = os.environ.get(KILL_MARKER_ENV)
    if not name or not marker or os.path.basename(os.fspath(job["input"])) != name:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(1)


def _targets(job):
    return [job["output"]] + ([job["kernel"]] if job.get("kernel") else [])


def _match_fft_threads():
    # A worker owns `nthreads` cores, not the whole machine: size the FFT
    # thread pool to it so that N workers do not fight over the cores.
    if "HQSDEBLUR_FFT_WORKERS" in os.environ:
        return
    try:
        from distributed import get_worker

        os.environ["HQSDEBLUR_FFT_WORKERS"] = str(max(1, int(get_worker().state.nthreads)))
    except Exception:  # not on a worker (in-process run)
        pass


def _run_job(job, settings):
    """One file on a worker: ``process_file`` with the worker's model."""
    from .batch import process_file

    _maybe_die(job)
    _match_fft_threads()
    inp, out, kout = os.fspath(job["input"]), os.fspath(job["output"]), job.get("kernel")
    if job.get("error"):  # known to fail before it started (e.g. duplicate name)
        return {"input": inp, "output": out, "kernel": kout, "status": "failed", "seconds": 0.0,
                "error": job["error"], "notes": []}
    if not job.get("overwrite") and job.get("_absent") and all(os.path.exists(p) for p in _targets(job)):
        # The outputs did not exist when the batch started and now all do: an
        # earlier attempt of this task finished them (atomically) before its
        # worker was lost. That is a success, not a skip or a refusal.
        return {"input": inp, "output": out, "kernel": kout, "status": "ok", "seconds": 0.0,
                "error": None, "notes": [f"{inp}: finished by an earlier attempt on a lost worker."]}
    settings = dict(settings or {})
    model = settings.get("model")
    if isinstance(model, (str, os.PathLike)):
        try:
            settings["model"] = _load_model_cached(model)
        except Exception:
            pass  # process_file reports the error for this file
    return process_file(inp, out, kernel_path=kout, settings=settings,
                        overwrite=bool(job.get("overwrite")), skip_existing=bool(job.get("skip_existing")))


def _failed_row(job, message):
    inp = os.fspath(job["input"])
    msg = " ".join(str(message).split()) or "unknown error"
    if inp not in msg:
        msg = f"{inp}: {msg}"
    return {"input": inp, "output": os.fspath(job["output"]), "kernel": job.get("kernel"), "status": "failed",
            "seconds": 0.0, "error": msg, "notes": []}


def _task_key(i, job, token):
    base = os.path.basename(os.fspath(job["input"]))
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in base)[:60]
    return f"hqsdeblur-{safe}-{i}-{token}"


def map_files(client, jobs, settings, *, retries=2, progress=True):
    """Deblur files on a Dask cluster, one task per file.

    Parameters
    ----------
    client : distributed.Client
        Connected client. Workers must see the input and output paths.
    jobs : sequence of dict
        ``input``, ``output``, ``kernel`` (path or None), ``overwrite``,
        ``skip_existing`` and optionally ``error`` (a job known to fail),
        as built by :func:`hqsdeblur.batch.deblur_files`.
    settings : dict or None
        As in :func:`hqsdeblur.batch.process_file`; sent to every worker
        once. A ``model`` given as a path is loaded once per worker.
    retries : int, optional
        Extra attempts for a task whose code raised (a lost worker is
        handled by the scheduler independently).
    progress : bool, optional
        A progress bar over files on stderr.

    Returns
    -------
    list of dict
        One row per job, in the order of `jobs`, as returned by
        :func:`hqsdeblur.batch.process_file` (``status`` 'ok', 'skipped' or
        'failed' with ``error``).

    Examples
    --------
    >>> client = local_client(2)  # doctest: +SKIP
    >>> jobs = [{"input": "a.png", "output": "out/a.png", "kernel": None,
    ...          "overwrite": False, "skip_existing": True}]
    >>> map_files(client, jobs, {"method": "tv", "kernel_size": 15})[0]["status"]  # doctest: +SKIP
    'ok'
    """
    distributed = _import_distributed()
    from tqdm import tqdm

    jobs = [dict(j) for j in jobs]
    if not jobs:
        return []
    for j in jobs:
        # recorded here, before anything runs, to recognise a lost attempt's output
        j["_absent"] = not any(os.path.exists(p) for p in _targets(j))
    settings = dict(settings or {})
    model = settings.get("model")
    if isinstance(model, (str, os.PathLike)):
        settings["model"] = os.path.abspath(os.fspath(model))
        client.register_plugin(PreloadModel(settings["model"]), name=f"{PreloadModel.name}-{uuid.uuid5(uuid.NAMESPACE_URL, settings['model']).hex[:8]}")
    [settings_future] = client.scatter([settings], broadcast=True, hash=False)
    token = uuid.uuid4().hex[:8]
    futures, index = [], {}
    for i, job in enumerate(jobs):
        key = _task_key(i, job, token)
        fut = client.submit(_run_job, job, settings_future, key=key, retries=retries, pure=False)
        index[fut.key] = i
        futures.append(fut)
    rows = [None] * len(jobs)
    bar = tqdm(total=len(jobs), file=sys.stderr, disable=not progress, unit="file", desc="deblur", dynamic_ncols=True)
    try:
        with bar:
            for fut in distributed.as_completed(futures):
                i = index[fut.key]
                if fut.status == "finished":
                    rows[i] = fut.result()
                else:
                    rows[i] = _failed_row(jobs[i], _describe(fut.exception()))
                bar.set_postfix_str(os.path.basename(os.fspath(jobs[i]["input"])), refresh=False)
                bar.update(1)
                fut.release()
    finally:
        for fut in futures:
            if rows[index[fut.key]] is None:
                fut.cancel()
        settings_future.release()
    return rows


def _describe(exc):
    name = type(exc).__name__
    if name == "KilledWorker":
        return "the worker process died every time it ran this file (out of memory or a crash?)"
    if name == "CancelledError":
        return "the task was cancelled"
    return f"{name}: {exc}"


def local_client(n_workers, *, threads_per_worker=1, **cluster_options):
    """A client of a new local cluster of worker processes.

    Closing the client (or leaving its ``with`` block) shuts the cluster down.

    Parameters
    ----------
    n_workers : int
        Worker processes.
    threads_per_worker : int, optional
        Threads in each worker (default 1: deblurring is compute-bound and
        uses its own FFT threads).
    **cluster_options
        Passed to :class:`distributed.LocalCluster` (``memory_limit``,
        ``dashboard_address``, ...).

    Returns
    -------
    distributed.Client

    Examples
    --------
    >>> with local_client(2) as client:  # doctest: +SKIP
    ...     len(client.scheduler_info()["workers"])
    2
    """
    distributed = _import_distributed()
    cluster_options.setdefault("dashboard_address", None)
    return distributed.Client(n_workers=int(n_workers), threads_per_worker=int(threads_per_worker), processes=True, **cluster_options)


def connect(address, *, timeout=30):
    """Connect to a running Dask scheduler, e.g. ``'tcp://10.0.0.1:8786'``.

    Raises
    ------
    BackendError
        Dask is missing or the scheduler cannot be reached.

    Examples
    --------
    >>> client = connect("tcp://127.0.0.1:8786")  # doctest: +SKIP
    """
    distributed = _import_distributed()
    from .errors import BackendError

    try:
        return distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise BackendError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
