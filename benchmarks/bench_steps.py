"""Benchmark: every HQS step, forward and adjoint, per available backend.

384x576 grid, 16 channels, float32 (complex64 spectra): milliseconds and
FFT-equivalents (the time of one float32 ``rfft2`` of the 384x576 grid,
measured interleaved in the same run; see ``bench_unrolled.py``).

Run ``python benchmarks/bench_steps.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import scipy.fft

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# an installed hqsdeblur (with its compiled extension) wins over the source tree
try:
    import hqsdeblur  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import hqsdeblur  # noqa: E402
from hqsdeblur.backend import get_backend  # noqa: E402
from hqsdeblur.steps import features, filters, fourier, kernel, reconstruct, shrink  # noqa: E402

from bench_unrolled import HEADER, measure, row  # noqa: E402

S = (384, 576)
C = 16
HK = 45


def cases_for(be_name, rng):
    be = get_backend(be_name)
    f32, c64 = np.float32, np.complex64
    H, W = S

    def spec(*shape):
        a = rng.standard_normal(shape + (H, W)).astype(f32)
        return scipy.fft.rfft2(a).astype(c64)

    Y, Z, G, Gbar = spec(C), spec(C), spec(C), spec(C)
    K = spec()
    zeta = rng.random(C).astype(f32) * 10
    b = np.full(C, 0.02, f32)
    g = rng.standard_normal((C, H, W)).astype(f32) * 0.05
    kt = rng.standard_normal((H, W)).astype(f32) * 1e-3
    k = rng.random((HK, HK)).astype(f32)
    k /= k.sum()
    eta = rng.random(C).astype(f32)
    Wf = spec(C)
    y1 = rng.random((1, 290, 450)).astype(f32)
    ws = [rng.standard_normal((C, 1, 3, 3)).astype(f32)] + [rng.standard_normal((C, C, 3, 3)).astype(f32) * 0.1 for _ in range(9)]
    kern = be.kernels
    Gf = kern["feature_update"](Y, Z, K, zeta)
    Kt = kern["kernel_ls"](Z, Y, K, np.float32(1.0))
    out = {
        "feature update": lambda: kern["feature_update"](Y, Z, K, zeta),
        "feature update VJP": lambda: kern["feature_update_vjp"](Y, Z, K, zeta, Gf, Gbar, S),
        "soft shrink (16 ch)": lambda: kern["soft_shrink"](g, b),
        "soft shrink VJP": lambda: kern["soft_shrink_vjp"](g, b, g),
        "kernel LS": lambda: kern["kernel_ls"](Z, Y, K, np.float32(1.0)),
        "kernel LS VJP": lambda: kern["kernel_ls_vjp"](Z, Y, K, np.float32(1.0), Kt, K, S),
        "simplex projection 45x45": lambda: kernel.project_simplex(kt[:HK, :HK]),
        "published threshold": lambda: kernel.soft_threshold_normalize(kt, 0.1, (HK, HK)),
        "published threshold VJP": lambda: kernel.soft_threshold_normalize_vjp(
            kt, 0.1, (HK, HK), k, np.float32(0.01), k),
        "reconstruct (gray)": lambda: kern["reconstruct_gray"](K, K, Wf, G, eta),
        "reconstruct VJP": lambda: reconstruct.reconstruct_vjp(K, K, Wf, G, eta, K, K, S),
        "filter bank 16x16x3x3 on 290x450": lambda: filters.correlate_bank(np.repeat(y1, C, 0), ws[1]),
        "cascade (10 banks) on 290x450": lambda: filters.cascade(y1, ws),
        "compose cascade": lambda: filters.compose_cascade(ws),
        "psf2otf 45x45": lambda: fourier.psf2otf(k, S, centre=(0, 0)),
        "psf2otf adjoint": lambda: fourier.psf2otf_adjoint(K, (HK, HK), S, centre=(0, 0)),
        "rfft2 x16": lambda: be.rfft2(g),
        "irfft2 x16": lambda: be.irfft2(Y, s=S),
    }
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    for be in hqsdeblur.available_backends():
        if be == "cupy":
            continue
        cases = cases_for(be, rng)
        if args.quick:
            cases = {k: v for k, v in cases.items() if "cascade (10" not in k}
        res, unit = measure(cases, repeat=2 if args.quick else 5, unit_shape=S)
        print(f"\n### backend {be}: 384x576 grid, 16 channels, float32 "
              f"(FFT unit {unit[0] * 1e3:.3f} ms wall, {unit[1] * 1e3:.3f} ms CPU)\n")
        print(HEADER)
        print("|---|---:|---:|---:|---:|")
        for k, t in res.items():
            print(row(k, t, unit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
