"""The one backend switch: array module, FFTs and the fused elementwise kernels.

A backend is chosen by argument, by the ``HQSDEBLUR_BACKEND`` environment
variable, or automatically (the compiled Cython kernels when they are built,
else NumPy). Every step asks :func:`backend_for` which backend owns its arrays,
so CuPy arrays always run on the CuPy backend and the same step code serves
NumPy and CuPy (SigPy's ``get_array_module`` idea).

Backends
--------
numpy
    Pure NumPy/SciPy (``scipy.fft`` with one worker per core): the readable
    reference every other backend is tested against.
cython
    NumPy arrays, with the elementwise Fourier-domain kernels compiled ahead
    of time in :mod:`hqsdeblur._ext` (OpenMP where available): no JIT warm-up.
numba
    NumPy arrays, the same kernels JIT-compiled with ``parallel=True`` and
    cached on disk.
cupy
    CuPy arrays on the GPU, ``cupy.fft`` (plans cached by CuPy).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import threading

import numpy as np
import scipy.fft

from .errors import BackendError

__all__ = [
    "Backend",
    "available_backends",
    "get_backend",
    "use_backend",
    "backend_for",
    "get_array_module",
    "to_numpy",
]

_NAMES = ("numpy", "cython", "numba", "cupy")
_KERNELS = (
    "soft_shrink",
    "soft_shrink_vjp",
    "feature_update",
    "feature_update_vjp",
    "kernel_ls",
    "kernel_ls_vjp",
    "reconstruct_gray",
)


class Backend:
    """Array namespace, FFTs and elementwise kernels of one backend.

    Attributes
    ----------
    name : str
    xp : module
        ``numpy`` or ``cupy``.
    kernels : dict
        Name -> callable for the fused elementwise kernels; the NumPy
        references fill whatever a compiled backend does not provide.
    """

    def __init__(self, name, xp, kernels, fft=None):
        self.name = name
        self.xp = xp
        self.kernels = kernels
        self._fft = fft

    def __repr__(self):
        return f"Backend({self.name!r})"

    # FFTs: real transforms only (every array in the method is real), all
    # unnormalised forward / 1/N inverse, over the last two axes.
    def rfft2(self, a, s=None):
        if self.xp is np:
            return scipy.fft.rfft2(a, s=s, workers=_workers())
        return self._fft.rfft2(a, s=s)

    def irfft2(self, a, s):
        if self.xp is np:
            return scipy.fft.irfft2(a, s=s, workers=_workers())
        return self._fft.irfft2(a, s=s)

    def asarray(self, a, dtype=None):
        return self.xp.asarray(a, dtype=dtype)

    def __getattr__(self, item):
        kernels = self.__dict__.get("kernels", {})
        if item in kernels:
            return kernels[item]
        raise AttributeError(item)


def _workers():
    # HQSDEBLUR_FFT_WORKERS caps the threads of the FFTs (and of the
    # unrolled network's channel groups), e.g. on shared cores.
    env = os.environ.get("HQSDEBLUR_FFT_WORKERS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    return _CPUS


_CPUS = os.cpu_count() or 1  # read once: os.cpu_count() took ~20 us a call here (400 calls a training step)

_THREAD = threading.local()


def _serial_kernels_here():
    """Make the compiled kernels called from this thread run on it alone.

    For the worker threads that already split a stack's channels over the
    cores (:func:`hqsdeblur.steps.fourier._over_slices`): a kernel called
    there would otherwise open a team of one thread per core inside each of
    them (2 channel threads x 2 OpenMP threads on 2 cores: a training step
    gained nothing from the second core). Both settings are per thread, and
    set once per thread and module.
    """
    done = getattr(_THREAD, "serial", None)
    if done is None:
        done = _THREAD.serial = set()
    for name in ("hqsdeblur._ext._elementwise", "hqsdeblur._numba_kernels"):
        if name in done or name not in sys.modules:
            continue  # a kernel module loaded later is set at the next call
        done.add(name)
        if name.endswith("_elementwise"):
            sys.modules[name].set_thread_team(1)
        else:
            import numba

            numba.set_num_threads(1)


_BLAS = []
_BLAS_LOCK = threading.Lock()
_BLAS_STATE = {"depth": 0, "limiter": None}


def _blas_controller():
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController

            # made at first use, after NumPy's and SciPy's BLAS loaded
            _BLAS.append(ThreadpoolController())
        except ImportError:  # pragma: no cover - a declared dependency
            _BLAS.append(None)
    return _BLAS[0]


def _release_blas_thread():
    # threadpoolctl (>= 3.6) lets only the thread that first set OpenBLAS's
    # limit change it again (OpenBLAS's setter is not thread-safe); the
    # counter above already serialises the set and the restore, which may
    # run on different threads, so the ownership is dropped after each.
    try:
        from threadpoolctl import OpenBLASController
    except ImportError:  # pragma: no cover - older threadpoolctl: no ownership
        return
    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


def blas_single_thread(fn):
    """Decorator: run `fn` with BLAS on one thread (restored afterwards).

    The matrix products here are small (the DFT of a kernel-sized support,
    3x3 channel mixes) and gain nothing from BLAS threads, and OpenBLAS
    keeps its threads spinning for a while after each call, taking the
    cores from the FFT channel threads that run next: one training step of
    the published network took 1.1 s on 2 cores instead of 0.69 s.

    The BLAS setting is process-wide, so the limit is counted over every
    thread: the first call to enter sets it, the last to leave restores the
    user's setting (two threads deblurring at once, e.g. Dask workers,
    leave it as they found it). Nested calls cost a lock and a counter.
    """
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctl = _blas_controller()
        if ctl is None:
            return fn(*args, **kwargs)
        with _BLAS_LOCK:
            if _BLAS_STATE["depth"] == 0:
                _BLAS_STATE["limiter"] = ctl.limit(limits=1, user_api="blas")
                _release_blas_thread()
            _BLAS_STATE["depth"] += 1
        try:
            return fn(*args, **kwargs)
        finally:
            with _BLAS_LOCK:
                _BLAS_STATE["depth"] -= 1
                if _BLAS_STATE["depth"] == 0:
                    _BLAS_STATE["limiter"].restore_original_limits()
                    _release_blas_thread()
                    _BLAS_STATE["limiter"] = None

    return wrapper


def _reference_kernels():
    # The readable NumPy references live next to their step; they use only
    # the array API shared by NumPy and CuPy.
    from .steps import features, kernel, reconstruct, shrink

    return {
        "soft_shrink": shrink.soft_shrink_ref,
        "soft_shrink_vjp": shrink.soft_shrink_vjp_ref,
        "feature_update": features.feature_update_ref,
        "feature_update_vjp": features.feature_update_vjp_ref,
        "kernel_ls": kernel.kernel_ls_ref,
        "kernel_ls_vjp": kernel.kernel_ls_vjp_ref,
        "reconstruct_gray": reconstruct.reconstruct_gray_ref,
    }


def _make(name):
    ref = _reference_kernels()
    if name == "numpy":
        return Backend("numpy", np, ref)
    if name == "cython":
        try:
            from ._ext import _elementwise as mod
        except ImportError as exc:  # not built (e.g. running from a source tree)
            raise BackendError(
                "the 'cython' backend is not available: the compiled extension "
                f"hqsdeblur._ext._elementwise could not be imported ({exc})"
            ) from None
        return Backend("cython", np, {**ref, **_pick(mod)})
    if name == "numba":
        try:
            from . import _numba_kernels as mod
        except ImportError as exc:
            raise BackendError(f"the 'numba' backend is not available ({exc})") from None
        return Backend("numba", np, {**ref, **_pick(mod)})
    if name == "cupy":
        try:
            import cupy
            import cupy.fft

            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("no CUDA device")
        except Exception as exc:  # ImportError, CUDA driver errors
            raise BackendError(f"the 'cupy' backend is not available ({exc})") from None
        # The reference kernels are written against the array API shared by
        # NumPy and CuPy, so they run on the GPU as they are.
        try:
            from . import _cupy_kernels as mod

            ref = {**ref, **_pick(mod)}
        except ImportError:
            pass
        return Backend("cupy", cupy, ref, fft=cupy.fft)
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(_NAMES)}")


def _pick(mod):
    out = {name: getattr(mod, name) for name in _KERNELS if hasattr(mod, name)}
    # The compiled shrinkage kernels take (C, H, W); the steps allow any
    # number of trailing axes after the channel axis: fold them into two.
    if "soft_shrink" in out:
        out["soft_shrink"] = _as_3d(out["soft_shrink"])
    if "soft_shrink_vjp" in out:
        out["soft_shrink_vjp"] = _as_3d_vjp(out["soft_shrink_vjp"])
    return out


def _fold(x):
    return x.reshape(x.shape[0], -1, x.shape[-1]) if x.ndim >= 2 else x.reshape(x.shape[0], 1, 1)


def _as_3d(f):
    def soft_shrink(x, b):
        if x.ndim == 3:
            return f(x, b)
        return f(_fold(x), b).reshape(x.shape)

    return soft_shrink


def _as_3d_vjp(f):
    def soft_shrink_vjp(x, b, gbar):
        if x.ndim == 3:
            return f(x, b, gbar)
        xbar, bbar = f(_fold(x), b, _fold(gbar))
        return xbar.reshape(x.shape), bbar

    return soft_shrink_vjp


_cache: dict[str, Backend] = {}
_unavailable: dict[str, str] = {}


def get_backend(name: str | None = None) -> Backend:
    """Return the backend called `name` (default: the active one).

    Parameters
    ----------
    name : {'numpy', 'cython', 'numba', 'cupy', 'auto'}, optional
        ``None`` returns the backend made active by :func:`use_backend`, or the
        ``HQSDEBLUR_BACKEND`` environment variable, or ``'auto'``.

    Examples
    --------
    >>> from hqsdeblur.backend import get_backend
    >>> get_backend("numpy").name
    'numpy'
    """
    if isinstance(name, Backend):
        return name
    if name is None:
        active = _active.get()
        if active is not None:
            return active
        name = os.environ.get("HQSDEBLUR_BACKEND", "auto") or "auto"
    name = name.lower()
    if name == "auto":
        name = _auto()
    if name not in _cache:
        if name in _unavailable:  # a failed import is not retried on every call
            raise BackendError(_unavailable[name])
        try:
            _cache[name] = _make(name)
        except BackendError as exc:
            if name in _NAMES:
                _unavailable[name] = str(exc)
            raise
    return _cache[name]


def _auto():
    # Cython first: compiled ahead of time, so no JIT warm-up on the first
    # image; NumPy when the extension is not built (a source checkout).
    for name in ("cython", "numpy"):
        try:
            get_backend(name)
            return name
        except BackendError:
            continue
    return "numpy"


def available_backends() -> list[str]:
    """Names of the backends that work on this machine.

    Examples
    --------
    >>> import hqsdeblur
    >>> "numpy" in hqsdeblur.available_backends()
    True
    """
    out = []
    for name in _NAMES:
        try:
            get_backend(name)
            out.append(name)
        except BackendError:
            pass
    return out


_active: contextvars.ContextVar = contextvars.ContextVar("hqsdeblur_backend", default=None)


@contextlib.contextmanager
def use_backend(name):
    """Context manager making `name` the active backend.

    Examples
    --------
    >>> from hqsdeblur.backend import use_backend, get_backend
    >>> with use_backend("numpy"):
    ...     get_backend().name
    'numpy'
    """
    token = _active.set(get_backend(name))
    try:
        yield _active.get()
    finally:
        _active.reset(token)


def get_array_module(*arrays):
    """``cupy`` if any argument is a CuPy array, else ``numpy``."""
    for a in arrays:
        mod = type(a).__module__
        if mod.startswith("cupy"):
            import cupy

            return cupy
    return np


def backend_for(*arrays) -> Backend:
    """The backend that owns `arrays`: CuPy arrays force 'cupy'; otherwise
    the active CPU backend."""
    if get_array_module(*arrays) is not np:
        return get_backend("cupy")
    be = get_backend()
    if be.xp is not np:  # active backend is cupy but the data is on the host
        return get_backend("numpy")
    return be


def to_numpy(a):
    """Copy `a` to the host if it lives on a GPU."""
    if get_array_module(a) is np:
        return np.asarray(a)
    return a.get()
