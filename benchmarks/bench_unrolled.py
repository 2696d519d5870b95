"""Benchmark: the unrolled network's forward pass (and one training step).

Times a 290x450 gray image through the published model per available
backend, fast and exact mode, float32, and reports milliseconds and
*FFT-equivalents*: the time divided by the time of one ``scipy.fft.rfft2``
of a 384x576 float32 array, measured in the same run (interleaved with the
cases, best of N), so the ratio stays meaningful on a loaded machine. Both
wall time and process CPU time are reported; on shared cores trust the CPU
column (wall time includes waiting for other jobs). With the 'cython' and
'numba' backends the fast forward runs the fused compiled kernels
(:mod:`hqsdeblur._fused_ref`); with 'numpy' the NumPy ufunc sequence.
Where pyFFTW is installed the per-channel 2-D transforms run on FFTW
(:mod:`hqsdeblur._fftw`); a 'pocketfft' row then repeats the fast forward
with ``HQSDEBLUR_FFTW=0`` in the same run.

Run ``python benchmarks/bench_unrolled.py [--quick] [--fast-only] [--backend NAME]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import scipy.fft

# an installed hqsdeblur (with its compiled extension) wins over the source tree
try:
    import hqsdeblur  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import hqsdeblur  # noqa: E402
from hqsdeblur import _fftw, model_io, unrolled  # noqa: E402
from hqsdeblur.backend import get_backend, use_backend  # noqa: E402

SHARED = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
MODEL = os.path.join(SHARED, "reference", "dublid_linear_16c10l.npz")
PARITY = os.path.join(SHARED, "reference", "parity_000_00.npz")
PYTORCH_S = (0.33, 0.40)  # published PyTorch implementation, 290x450 (reference)


def _once(fn):
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def fft_unit(shape=(384, 576), reps=10):
    """(wall, cpu) seconds of one float32 rfft2 of `shape` (best of a few
    blocks of `reps` back-to-back transforms)."""
    a = np.random.default_rng(0).random(shape, dtype=np.float32)
    best = [np.inf, np.inf]
    for _ in range(3):
        w, c = _once(lambda: [scipy.fft.rfft2(a) for _ in range(reps)])
        best = [min(best[0], w / reps), min(best[1], c / reps)]
    return tuple(best)


def measure(cases, *, repeat=3, unit_shape=(384, 576)):
    """Time every ``name -> fn`` in `cases`, interleaved with the FFT unit.

    Returns ``{name: (wall_s, cpu_s)}`` (best of `repeat`) and the unit
    ``(wall_s, cpu_s)``.
    """
    res = {k: [np.inf, np.inf] for k in cases}
    unit = [np.inf, np.inf]
    for fn in cases.values():  # warm-up (plans, caches, JIT)
        fn()
    for _ in range(repeat):
        u = fft_unit(unit_shape)
        unit = [min(unit[0], u[0]), min(unit[1], u[1])]
        for k, fn in cases.items():
            w, c = _once(fn)
            res[k] = [min(res[k][0], w), min(res[k][1], c)]
    return {k: tuple(v) for k, v in res.items()}, tuple(unit)


def row(name, t, unit, extra=""):
    return f"| {name} | {t[0] * 1e3:.0f} | {t[0] / unit[0]:.0f} | {t[1] * 1e3:.0f} | {t[1] / unit[1]:.0f} |{extra}"


HEADER = "| case | wall ms | wall FFT-eq | CPU ms | CPU FFT-eq |"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, no exact mode")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--fast-only", action="store_true", help="only the fast forward (no training step)")
    ap.add_argument("--backend", action="append", default=None,
                    help="time only this backend (repeatable; default: every available host backend)")
    ap.add_argument("--release-memory", action="store_true",
                    help="leave glibc's default of returning freed buffers to the OS (train() keeps them)")
    args = ap.parse_args(argv)
    if not args.release_memory:
        # measure the step as hqsdeblur.train runs it: freed spectra stay in
        # the process, so no step page-faults its buffers in anew (the cases
        # and the FFT unit interleave, and glibc would trim between them)
        from hqsdeblur.train import _keep_freed_memory

        _keep_freed_memory()
    if not os.path.exists(MODEL):
        print(f"reference model not found at {MODEL}; nothing to benchmark")
        return 0
    model = model_io.load_model(MODEL)
    y = np.load(PARITY)["blurred"].astype(np.float32)
    rep = args.repeat or (2 if args.quick else 5)
    cases = {}
    backends = [be for be in hqsdeblur.available_backends() if be != "cupy"]  # host arrays only here
    if args.backend:
        missing = sorted(set(args.backend) - set(backends))
        if missing:
            ap.error(f"backend(s) not available here: {', '.join(missing)}")
        backends = [be for be in backends if be in args.backend]
    fftw_env = os.environ.get("HQSDEBLUR_FFTW")  # restored as found (unset stays unset)
    for be in backends:

        def fast(be=be):
            with use_backend(be):
                model.forward(y)

        def general(be=be):
            unrolled._FAST_PATH = False
            try:
                with use_backend(be):
                    model.forward(y)
            finally:
                unrolled._FAST_PATH = True

        def fast_cold(be=be):
            # as a training step meets it: the parameters have just changed,
            # so the parameter-only spectra (filters, reconstruction) are
            # computed again
            model._cache.clear()
            with use_backend(be):
                model.forward(y)

        def train_step(be=be):
            with use_backend(be):
                x, k, T = model.forward(y, tape=True)
                model.backward(T, x - y)

        cases[f"{be} fast"] = fast
        if _fftw.enabled():

            def fast_pocket(be=be):
                # the same forward with scipy.fft (pocketfft) for every transform
                os.environ["HQSDEBLUR_FFTW"] = "0"
                try:
                    with use_backend(be):
                        model.forward(y)
                finally:
                    if fftw_env is None:
                        del os.environ["HQSDEBLUR_FFTW"]
                    else:
                        os.environ["HQSDEBLUR_FFTW"] = fftw_env

            cases[f"{be} fast, pocketfft (HQSDEBLUR_FFTW=0)"] = fast_pocket
        if args.fast_only:
            continue
        if not args.quick:
            cases[f"{be} fast, general path (tape-capable)"] = general
        cases[f"{be} fast, parameter spectra recomputed"] = fast_cold
        cases[f"{be} training step (fwd+bwd, tape)"] = train_step
        if not args.quick:

            def exact(be=be):
                with use_backend(be):
                    model.forward(y, exact=True)

            cases[f"{be} exact"] = exact
    res, unit = measure(cases, repeat=rep)
    print("freed memory: " + ("returned to the OS (glibc default)" if args.release_memory
                              else "kept in the process, as train() does (--release-memory: glibc default)"))
    print(f"Unrolled forward, 290x450 gray, float32, 16 channels x 10 layers; FFT unit = rfft2 384x576 float32: "
          f"{unit[0] * 1e3:.3f} ms wall, {unit[1] * 1e3:.3f} ms CPU (best of {rep})\n")
    print(HEADER + " vs PyTorch (wall) |")
    print("|---|---:|---:|---:|---:|---:|")
    for k, t in res.items():
        lo, hi = PYTORCH_S
        print(row(k, t, unit, f" {lo / t[0]:.1f}-{hi / t[0]:.1f}x |"))
    for be in backends:
        a, b = res.get(f"{be} training step (fwd+bwd, tape)"), res.get(f"{be} fast")
        if a and b:
            print(f"\n{be}: training step / fast forward = {a[0] / b[0]:.1f} (wall), {a[1] / b[1]:.1f} (CPU)")
        c = res.get(f"{be} fast, parameter spectra recomputed")
        if a and c:
            print(f"{be}: training step / forward with the parameter spectra recomputed (new parameters, as in "
                  f"training) = {a[0] / c[0]:.1f} (wall), {a[1] / c[1]:.1f} (CPU)")
    for be in backends:
        fk = unrolled._fused_kernels(get_backend(be))
        how = f"fused kernels ({fk.__name__})" if fk is not None else "NumPy ufunc sequence"
        print(f"\n{be} fast path elementwise steps: {how}")
    print("\nper-channel 2-D transforms: " + ("FFTW (pyFFTW), pocketfft rows for comparison" if _fftw.enabled()
                                               else "scipy.fft (pocketfft); pip install pyfftw for FFTW"))
    print(f"\nPublished PyTorch: {PYTORCH_S[0] * 1e3:.0f}-{PYTORCH_S[1] * 1e3:.0f} ms (reference machine).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
