"""Benchmark suite: unrolled inference, one training step, classical TV
deblurring and non-blind deconvolution, gray and colour, several sizes, per
backend, with peak memory.

Every case runs in its own subprocess (so ``ru_maxrss`` is that case's peak
resident memory); times are the best of N, in ms and in FFT-equivalents (one
float32 ``rfft2`` of the case's own grid: the image size rounded up to a
5-smooth size, measured in the same subprocess). ``--quick`` runs only the
small sizes (256^2 and 290x450).

Run ``python benchmarks/bench_suite.py [--quick] [--backend NAME]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
# an installed hqsdeblur (with its compiled extension) wins over the source tree
try:
    import hqsdeblur  # noqa: F401
except ImportError:
    sys.path.insert(0, ROOT)

SIZES = [(256, 256), (290, 450), (1024, 1024), (2048, 2048)]
QUICK = [(256, 256), (290, 450)]
TASKS = ["unrolled", "train_step", "tv", "nonblind"]


def _image(shape, colour, seed=0):
    # A smooth random scene with edges, blurred by a small motion-like kernel.
    from scipy.ndimage import convolve, gaussian_filter

    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.random(shape), 3) > 0.5
    x = 0.2 + 0.6 * x + 0.1 * gaussian_filter(rng.random(shape), 1)
    k = np.zeros((9, 9))
    k[4, 1:8] = 1
    k /= k.sum()
    y = convolve(x, k, mode="wrap").astype(np.float32)
    if colour:
        y = np.stack([y, 0.9 * y, 0.8 * y], axis=-1)
    return y, k.astype(np.float32)


def run_case(task, shape, colour, backend, repeat):
    """Run one case in this process; return a dict of results."""
    import scipy.fft

    from bench_unrolled import MODEL, measure
    from hqsdeblur.backend import use_backend

    y, k = _image(shape, colour)
    grid = tuple(scipy.fft.next_fast_len(n, real=True) for n in shape)
    if task in ("unrolled", "train_step"):
        from hqsdeblur.model_io import load_model

        if not os.path.exists(MODEL):
            return {"skipped": "reference model absent"}
        model = load_model(MODEL)
    if task == "unrolled":
        from hqsdeblur.deblur import deblur

        fn = (lambda: deblur(y, method="unrolled", model=model, backend=backend)) if colour else (
            lambda: model.forward(y, backend=backend))
    elif task == "train_step":
        if colour:
            return {"skipped": "gray model"}

        def fn():
            with use_backend(backend):
                x, kk, T = model.forward(y, tape=True)
                model.backward(T, x - y)
    elif task == "tv":
        from hqsdeblur.deblur import deblur

        fn = lambda: deblur(y, method="tv", backend=backend)  # noqa: E731
    elif task == "nonblind":
        from hqsdeblur.nonblind import deconvolve

        fn = lambda: deconvolve(y, k, backend=backend)  # noqa: E731
    else:
        raise ValueError(task)
    res, unit = measure({"case": fn}, repeat=repeat, unit_shape=grid)
    t = res["case"]
    return {
        "wall_ms": t[0] * 1e3, "cpu_ms": t[1] * 1e3, "fft_eq_wall": t[0] / unit[0], "fft_eq_cpu": t[1] / unit[1],
        "grid": grid, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only 256^2 and 290x450")
    ap.add_argument("--backend", action="append", help="backend(s) (default: all available)")
    ap.add_argument("--task", action="append", choices=TASKS)
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=600, help="seconds per case")
    ap.add_argument("--case", nargs=4, metavar=("TASK", "HxW", "COLOUR", "BACKEND"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        task, hw, colour, backend = args.case
        shape = tuple(int(v) for v in hw.split("x"))
        print(json.dumps(run_case(task, shape, colour == "1", backend, args.repeat or 2)))
        return 0
    import hqsdeblur

    backends = args.backend or [b for b in hqsdeblur.available_backends() if b != "cupy"]
    sizes = QUICK if args.quick else SIZES
    tasks = args.task or TASKS
    repeat = args.repeat or (1 if args.quick else 3)
    print("| task | size | colour | backend | wall ms | CPU ms | FFT-eq (wall) | FFT-eq (CPU) | peak MiB |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for task in tasks:
        for shape in sizes:
            for colour in (False, True):
                for be in backends:
                    cmd = [sys.executable, os.path.abspath(__file__), "--repeat", str(repeat),
                           "--case", task, f"{shape[0]}x{shape[1]}", "1" if colour else "0", be]
                    name = f"| {task} | {shape[0]}x{shape[1]} | {'rgb' if colour else 'gray'} | {be} |"
                    try:
                        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
                        r = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else {
                            "skipped": (p.stderr.strip().splitlines() or ["failed"])[-1][:80]}
                    except subprocess.TimeoutExpired:
                        r = {"skipped": f"over {args.timeout:.0f} s"}
                    if "skipped" in r:
                        print(f"{name} - | - | - | - | - ({r['skipped']}) |")
                    else:
                        print(f"{name} {r['wall_ms']:.0f} | {r['cpu_ms']:.0f} | {r['fft_eq_wall']:.0f} | "
                              f"{r['fft_eq_cpu']:.0f} | {r['peak_mib']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
