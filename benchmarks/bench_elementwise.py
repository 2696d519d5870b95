"""Time the elementwise HQS kernels: NumPy reference vs Numba vs Cython/OpenMP.

Runs every kernel on a 16 x 384 x 289 complex64 half spectrum (the rfft2 of
a 384 x 576 image; 16 feature channels) and prints the best-of-N time of
each implementation and the speed-up over NumPy.  Each implementation is
called once before timing (JIT compilation, page faults).  The Cython
column is omitted when the extension is not built.

Usage::

    python benchmarks/bench_elementwise.py [--repeat 7] [--dtype complex64]

Thread counts follow ``OMP_NUM_THREADS`` (Cython) and
``NUMBA_NUM_THREADS`` (Numba).
"""

import argparse
import timeit

import numpy as np

from hqsdeblur import _kernels_ref as ref
from hqsdeblur import _numba_kernels as nbk

try:
    from hqsdeblur._ext import _elementwise as cyk
except ImportError:  # extension not built: benchmark NumPy and Numba only
    cyk = None


def make_problem(C=16, H=384, W=576, dtype=np.complex64, seed=0):
    rng = np.random.default_rng(seed)
    rdt = np.float32 if dtype == np.complex64 else np.float64
    F2 = W // 2 + 1

    def crandn(*shape):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)

    p = dict(
        fs=(H, W), Y=crandn(C, H, F2), Z=crandn(C, H, F2), K=crandn(H, F2),
        P=crandn(H, F2), Gbar=crandn(C, H, F2), Ktbar=crandn(H, F2), Y0=crandn(H, F2),
        zeta=rng.uniform(0.5, 2.0, C).astype(rdt), rho=0.7,
        x=rng.standard_normal((C, H, W)).astype(rdt),
        b=rng.uniform(0.0, 1.0, C).astype(rdt),
        gbar=rng.standard_normal((C, H, W)).astype(rdt),
    )
    p["G"] = ref.feature_update(p["Y"], p["Z"], p["K"], p["zeta"])
    p["Kt"] = ref.kernel_ls(p["Z"], p["Y"], p["P"], p["rho"])
    return p


def kernels(p):
    return {
        "soft_shrink": lambda m: m.soft_shrink(p["x"], p["b"]),
        "soft_shrink_vjp": lambda m: m.soft_shrink_vjp(p["x"], p["b"], p["gbar"]),
        "feature_update": lambda m: m.feature_update(p["Y"], p["Z"], p["K"], p["zeta"]),
        "feature_update_vjp": lambda m: m.feature_update_vjp(
            p["Y"], p["Z"], p["K"], p["zeta"], p["G"], p["Gbar"], p["fs"]),
        "kernel_ls": lambda m: m.kernel_ls(p["Z"], p["Y"], p["P"], p["rho"]),
        "kernel_ls_vjp": lambda m: m.kernel_ls_vjp(
            p["Z"], p["Y"], p["P"], p["rho"], p["Kt"], p["Ktbar"], p["fs"]),
        "reconstruct_gray": lambda m: m.reconstruct_gray(
            p["Y0"], p["K"], p["Y"], p["Z"], p["zeta"]),
    }


def best_time(fn, repeat):
    fn()  # warm-up (JIT compile, first-touch allocation)
    return min(timeit.repeat(fn, number=1, repeat=repeat))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="best of N (default 7)")
    ap.add_argument("--dtype", default="complex64", choices=["complex64", "complex128"])
    args = ap.parse_args(argv)
    p = make_problem(dtype=np.dtype(args.dtype).type)
    impls = [("numpy", ref), ("numba", nbk)] + ([("cython", cyk)] if cyk is not None else [])

    print(f"spectrum {p['Y'].shape} {args.dtype}, image {p['x'].shape}; best of {args.repeat}")
    if cyk is None:
        print("(Cython extension not built: cython column omitted)")
    else:
        print(f"(Cython built with OpenMP: {cyk.have_openmp()})")
    head = f"{'kernel':<20}" + "".join(f"{name + ' ms':>12}" for name, _ in impls)
    head += "".join(f"{name + ' x':>10}" for name, _ in impls[1:])
    print(head)
    for kname, call in kernels(p).items():
        times = [best_time(lambda m=m: call(m), args.repeat) for _, m in impls]
        row = f"{kname:<20}" + "".join(f"{t * 1e3:12.2f}" for t in times)
        row += "".join(f"{times[0] / t:10.1f}" for t in times[1:])
        print(row)


if __name__ == "__main__":
    main()
