"""FFTW plans for the 2-D real transforms of one slice (optional: pyFFTW).

``scipy.fft`` (pocketfft) is the reference and the default. Where pyFFTW is
installed (``pip install "hqsdeblur[fftw]"``), the one-thread 2-D transforms
of single channels -- the bulk of the unrolled network's work -- run through
FFTW plans made once per grid, dtype and thread: a transform round trip of a
336 x 500 float32 channel costs 15-30 % less here (benchmarks/README.md).

* Plans are FFTW_MEASURE: the first use of a grid times candidate
  algorithms (~0.2 s per grid and direction). The wisdom is kept in
  ``$HQSDEBLUR_CACHE_DIR`` (default ``~/.cache/hqsdeblur``) so that later
  processes skip it; a missing, unwritable or corrupt file only costs the
  planning again.
* FFTW runs at full speed only on SIMD-aligned arrays:
  :func:`empty_aligned` allocates them; other arrays go through the plan's
  own aligned scratch arrays (one copy).
* Results agree with pocketfft to round-off, not bitwise, and the measured
  plan may differ between machines.
* ``HQSDEBLUR_FFTW=0`` turns it off (pocketfft everywhere).

FFTW itself is GPL-licensed; it is an optional extra for that reason.
"""

from __future__ import annotations

import collections
import json
import os
import threading

import numpy as np

__all__ = ["enabled", "empty_aligned", "rfft2", "irfft2"]

_LOCK = threading.Lock()  # planning (FFTW's planner is not thread-safe) and the wisdom file
_LOCAL = threading.local()
_MOD = []  # [pyfftw or None] once imported
_WISDOM = {"loaded": False, "saved": None}
_PLANS_PER_THREAD = 24  # kept per thread, least recently used dropped


def _pyfftw():
    if not _MOD:
        try:
            import pyfftw
        except ImportError:
            pyfftw = None
        _MOD.append(pyfftw)
    return _MOD[0]


def enabled():
    """True when the per-slice transforms use FFTW (pyFFTW importable and
    ``HQSDEBLUR_FFTW`` not set to 0/off)."""
    if os.environ.get("HQSDEBLUR_FFTW", "1").strip().lower() in ("0", "off", "no", "false"):
        return False
    return _pyfftw() is not None


def empty_aligned(shape, dtype):
    """``np.empty`` aligned for FFTW's SIMD code (plain ``np.empty`` without FFTW)."""
    if not enabled():
        return np.empty(shape, dtype)
    return _pyfftw().empty_aligned(shape, dtype=dtype)


def _wisdom_path():
    base = os.environ.get("HQSDEBLUR_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "hqsdeblur")
    return os.path.join(base, "fftw_wisdom.json")


def _load_wisdom(pyfftw):
    _WISDOM["loaded"] = True
    try:
        with open(_wisdom_path(), encoding="ascii") as f:
            parts = json.load(f)
        pyfftw.import_wisdom(tuple(p.encode("ascii") for p in parts))
    except (OSError, ValueError, TypeError, AttributeError, UnicodeError):
        return  # no file yet, or one we cannot use: plan again
    _WISDOM["saved"] = pyfftw.export_wisdom()


def _save_wisdom(pyfftw):
    w = pyfftw.export_wisdom()
    if w == _WISDOM["saved"]:
        return
    path = _wisdom_path()
    try:
        from .io import atomic_write

        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_write(path, overwrite=True, mode="w", encoding="ascii") as f:
            json.dump([p.decode("ascii") for p in w], f)
    except Exception:  # noqa: BLE001 - a cache: never fail a transform over it
        return
    _WISDOM["saved"] = w


class _Plan:
    """One FFTW plan with its own aligned scratch arrays (used for arrays
    the plan cannot take as they are)."""

    def __init__(self, pyfftw, kind, shape, dtype):
        real = np.dtype(dtype)
        cplx = np.result_type(real, np.complex64)
        half = (shape[0], shape[1] // 2 + 1)
        self.a = pyfftw.empty_aligned(shape, dtype=real)
        self.b = pyfftw.empty_aligned(half, dtype=cplx)
        if kind == "r2c":
            self.fftw = pyfftw.FFTW(self.a, self.b, axes=(0, 1), direction="FFTW_FORWARD",
                                    flags=("FFTW_MEASURE",), threads=1)
            self.src, self.dst = self.a, self.b
        else:  # a multi-dimensional c2r destroys its input in any case
            self.fftw = pyfftw.FFTW(self.b, self.a, axes=(0, 1), direction="FFTW_BACKWARD",
                                    flags=("FFTW_MEASURE", "FFTW_DESTROY_INPUT"), threads=1)
            self.src, self.dst = self.b, self.a
        self.scale = 1.0 / (shape[0] * shape[1])

    def run(self, x, out):
        f = self.fftw
        src = x if _fits(x, self.src, f.input_alignment) else self.src
        if src is not x:
            src[...] = x
        if out is None:
            out = _pyfftw().empty_aligned(self.dst.shape, dtype=self.dst.dtype)
        dst = out if _fits(out, self.dst, f.output_alignment) else self.dst
        f.update_arrays(src, dst)
        f.execute()
        if src is not self.src or dst is not self.dst:
            f.update_arrays(self.src, self.dst)  # never keep the caller's arrays alive
        if dst is not out:
            out[...] = dst
        return out


def _fits(arr, like, alignment):
    return (arr.dtype == like.dtype and arr.shape == like.shape and arr.flags.c_contiguous
            and arr.ctypes.data % alignment == 0)


def _plan(kind, shape, dtype):
    plans = getattr(_LOCAL, "plans", None)
    if plans is None:
        plans = _LOCAL.plans = collections.OrderedDict()
    key = (kind, tuple(shape), np.dtype(dtype).char)
    p = plans.get(key)
    if p is not None:
        plans.move_to_end(key)
        return p
    pyfftw = _pyfftw()
    with _LOCK:
        if not _WISDOM["loaded"]:
            _load_wisdom(pyfftw)
        p = _Plan(pyfftw, kind, key[1], dtype)
        _save_wisdom(pyfftw)
    plans[key] = p
    if len(plans) > _PLANS_PER_THREAD:
        plans.popitem(last=False)
    return p


def rfft2(x, out=None):
    """Half spectrum of a 2-D real float32/float64 array `x` (not modified),
    written into `out` when given; one thread, FFTW. Call only where
    :func:`enabled` is true."""
    return _plan("r2c", x.shape, x.dtype).run(x, out)


def irfft2(X, s, out=None):
    """Real array of shape `s` from its 2-D half spectrum `X`, which is
    **destroyed**; written into `out` when given; 1/N normalised like
    ``scipy.fft.irfft2``; one thread, FFTW."""
    s = tuple(s)
    if X.shape != (s[0], s[1] // 2 + 1):
        raise ValueError(f"half spectrum of shape {X.shape} does not match the grid {s}")
    p = _plan("c2r", s, np.finfo(X.dtype).dtype)
    res = p.run(X, out)
    res *= res.dtype.type(p.scale)
    return res
