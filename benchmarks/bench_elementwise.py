"""Time the elementwise HQS kernels: NumPy reference vs Numba vs Cython/OpenMP.

Runs every kernel on a 16 x 384 x 289 complex64 half spectrum (the rfft2 of
a 384 x 576 image; 16 feature channels) and prints the best-of-N time of
each implementation and the speed-up over NumPy.  Each implementation is
called once before timing (JIT compilation, page faults).  The Cython
column is omitted when the extension is not built.

A second table times the fused kernels of the unrolled network's fast path
(:mod:`hqsdeblur._fused_ref`: feature update, soft shrink with one or two
thresholds, kernel least-squares sums) on the same grid against the unfused
NumPy ufunc sequence that the fast path runs with the NumPy backend, in two
layouts: channel by channel on 2-D arrays, serial (what the fast path does
on each of its threads), and one call on the 16-channel stack (parallel
where the kernel finds it pays).  It reports best-of-N process CPU time
(wall time too), so the ratios stay meaningful on a loaded machine.

Usage::

    python benchmarks/bench_elementwise.py [--repeat 7] [--dtype complex64] [--fused-only]

Thread counts follow ``OMP_NUM_THREADS`` (Cython) and
``NUMBA_NUM_THREADS`` (Numba).
"""

import argparse
import os
import time
import timeit

import numba
import numpy as np

from hqsdeblur import _fused_ref as fref
from hqsdeblur import _kernels_ref as ref
from hqsdeblur import _numba_kernels as nbk

try:
    from hqsdeblur._ext import _elementwise as cyk
except ImportError:  # extension not built: benchmark NumPy and Numba only
    cyk = None
try:
    from hqsdeblur._ext import _fused as cyf
except ImportError:
    cyf = None


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


# ---------------------------------------------------------------------------
# fused kernels of the unrolled fast path vs the unfused NumPy sequence
# ---------------------------------------------------------------------------

def make_fused_problem(C=16, H=384, W=576, dtype=np.complex64, seed=0):
    rng = np.random.default_rng(seed)
    rdt = np.float32 if dtype == np.complex64 else np.float64
    F2 = W // 2 + 1

    def crandn(*shape):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)

    K = crandn(H, F2)
    q = dict(
        E=crandn(C, H, F2), Z=crandn(C, H, F2), P=crandn(H, F2),
        K2=(K.real**2 + K.imag**2).astype(rdt), zeta=rng.uniform(0.5, 2.0, C).astype(rdt),
        g=rng.standard_normal((C, H, W)).astype(rdt), b=rng.uniform(0.0, 1.0, C).astype(rdt),
        b2=rng.uniform(0.0, 1.0, C).astype(rdt), rdt=rdt, cdt=np.dtype(dtype),
    )
    # work buffers, as in the fast path (2-D, reused over the channels)
    q.update(
        out=np.empty_like(q["Z"]), sout=np.empty_like(q["g"]), sout2=np.empty_like(q["g"]),
        buf=np.empty((H, F2), dtype), d=np.empty((H, F2), rdt), dc=np.zeros((H, F2), dtype),
        sq=np.empty((H, 2 * F2), rdt), num=np.zeros((H, F2), dtype), sqsum=np.zeros((H, F2), rdt),
        sqsum2=np.zeros((H, 2 * F2), rdt), tmpr=np.empty((H, W), rdt),
    )
    return q


def unfused_numpy(q):
    """The NumPy ufunc sequences of ``UnrolledModel._forward_fast`` (NumPy
    backend), channel by channel on 2-D buffers."""
    C = q["E"].shape[0]

    def feature_update():
        buf, d, dc = q["buf"], q["d"], q["dc"]
        for c in range(C):
            np.multiply(q["E"][c], q["P"], out=buf)
            buf *= q["zeta"][c]
            buf += q["Z"][c]
            np.multiply(q["K2"], q["zeta"][c], out=d)
            d += 1
            np.reciprocal(d, out=d)
            dc.real[...] = d
            buf *= dc
            q["out"][c] = buf  # the fast path feeds buf to the inverse FFT

    def shrink(two):
        def run():
            for c in range(C):
                for bb, out in ((q["b"], q["sout"]), (q["b2"], q["sout2"]))[: 1 + two]:
                    np.clip(q["g"][c], -bb[c], bb[c], out=out[c])
                    np.subtract(q["g"][c], out[c], out=out[c])
        return run

    def kls():
        buf, sq, num, sqsum = q["buf"], q["sq"], q["num"], q["sqsum2"]
        for c in range(C):
            np.conj(q["Z"][c], out=buf)
            buf *= q["E"][c]
            num += buf
            v = q["Z"][c].view(q["rdt"])
            np.multiply(v, v, out=sq)
            sqsum += sq

    return {"feature_update": feature_update, "soft_shrink": shrink(False),
            "soft_shrink x2": shrink(True), "kernel_ls_sums": kls}


def fused_calls(m, q, *, per_channel):
    """The fused kernels of module `m`, channel by channel (serial) or on the
    whole stack (parallel allowed)."""
    C = q["E"].shape[0]
    if per_channel:
        def feature_update():
            for c in range(C):
                m.fused_feature_update(q["E"][c], q["P"], q["Z"][c], q["K2"], q["zeta"][c],
                                       out=q["out"][c], parallel=False)

        def shrink(two):
            def run():
                for c in range(C):
                    if two:
                        m.fused_soft_shrink(q["g"][c], q["b"][c], q["sout"][c], b2=q["b2"][c],
                                            out2=q["sout2"][c], parallel=False)
                    else:
                        m.fused_soft_shrink(q["g"][c], q["b"][c], q["sout"][c], parallel=False)
            return run

        def kls():
            for c in range(C):
                m.fused_kernel_ls_sums(q["Z"][c], q["E"][c], q["num"], q["sqsum"], parallel=False)
    else:
        def feature_update():
            m.fused_feature_update(q["E"], q["P"], q["Z"], q["K2"], q["zeta"], out=q["out"])

        def shrink(two):
            if two:
                return lambda: m.fused_soft_shrink(q["g"], q["b"], q["sout"], b2=q["b2"], out2=q["sout2"])
            return lambda: m.fused_soft_shrink(q["g"], q["b"], q["sout"])

        def kls():
            m.fused_kernel_ls_sums(q["Z"], q["E"], q["num"], q["sqsum"])

    return {"feature_update": feature_update, "soft_shrink": shrink(False),
            "soft_shrink x2": shrink(True), "kernel_ls_sums": kls}


def best_cpu(fn, repeat):
    """Best-of-`repeat` (cpu_s, wall_s) of one call, after a warm-up call."""
    fn()
    best = [np.inf, np.inf]
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        best = [min(best[0], time.process_time() - c), min(best[1], time.perf_counter() - w)]
    return best


def fused_table(dtype, repeat):
    q = make_fused_problem(dtype=dtype)
    impls = [("numpy ref", fref), ("numba", nbk)] + ([("cython", cyf)] if cyf is not None else [])
    base = unfused_numpy(q)
    C, H, F2 = q["E"].shape
    print(f"\nFused fast-path kernels, {C} x {H} x {F2} {np.dtype(dtype).name} spectra "
          f"(image {q['g'].shape}); best of {repeat}, CPU ms (wall ms); x = unfused NumPy CPU / CPU; "
          f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"Numba {numba.get_num_threads()} (stack layout only)")
    if cyf is None:
        print("(Cython extension hqsdeblur._ext._fused not built: cython rows omitted)")
    print("| kernel | layout | unfused NumPy | " + " | ".join(n for n, _ in impls) + " | "
          + " | ".join(f"{n} x" for n, _ in impls) + " |")
    print("|---|---|" + "---:|" * (1 + 2 * len(impls)))
    def line(kname, layout, t0, ts):
        cells = [f"{t0[0] * 1e3:.2f} ({t0[1] * 1e3:.2f})"] + [f"{t[0] * 1e3:.2f} ({t[1] * 1e3:.2f})" for t in ts]
        print(f"| {kname} | {layout} | " + " | ".join(cells) + " | "
              + " | ".join(f"{t0[0] / t[0]:.1f}" for t in ts) + " |")

    for layout, per_channel in (("per channel, serial", True), ("16-channel stack", False)):
        calls = {n: fused_calls(m, q, per_channel=per_channel) for n, m in impls}
        tot0, tots = np.zeros(2), np.zeros((len(impls), 2))
        for kname, fn in base.items():
            t0 = np.array(best_cpu(fn, repeat))
            ts = np.array([best_cpu(calls[n][kname], repeat) for n, _ in impls])
            line(kname, layout, t0, ts)
            if kname != "soft_shrink x2":  # one layer: update, shrink, sums
                tot0, tots = tot0 + t0, tots + ts
        line("**one layer** (update + shrink + sums)", layout, tot0, tots)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="best of N (default 7)")
    ap.add_argument("--dtype", default="complex64", choices=["complex64", "complex128"])
    ap.add_argument("--fused-only", action="store_true", help="only the fused fast-path kernels")
    args = ap.parse_args(argv)
    if args.fused_only:
        fused_table(np.dtype(args.dtype).type, args.repeat)
        return
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
    fused_table(np.dtype(args.dtype).type, args.repeat)


if __name__ == "__main__":
    main()
