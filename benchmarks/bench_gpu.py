"""GPU benchmark: the CuPy backend against the NumPy backend on the same machine.

Cases (float32, times in ms, best of N after a warm-up; GPU times end with a
device synchronisation):

* unrolled inference of 290x450 gray images, per image, with the published
  architecture (16 channels x 10 layers: ``../shared/reference``'s weights
  when present, else an untrained model of that shape) -- 16 different
  images one by one (``model.forward`` on device arrays) and as one stack
  (``model.forward_batch``), also in FFT-equivalents of one
  ``cupy.fft.rfft2`` of the 384x576 grid -- and the shipped model through
  :func:`hqsdeblur.deblur` (host arrays in and out);
* one training step (forward with tape + backward) on a batch of 16 patches
  of 256x256, with the GPU memory the step needed (CuPy pool high-water mark);
* classical TV blind deblurring of a 255x255 image (27-pixel kernel window);
* non-blind hyper-Laplacian deconvolution of a 1024x1024 image.

Prints a Markdown table and, with ``--json PATH``, writes the numbers.
Run ``python benchmarks/bench_gpu.py [--quick] [--json out.json] [--cases unrolled tv ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

try:
    import hqsdeblur  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hqsdeblur import data, model_io  # noqa: E402
from hqsdeblur.backend import get_backend, use_backend  # noqa: E402
from hqsdeblur.deblur import deblur  # noqa: E402
from hqsdeblur.nonblind import deconvolve  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "hqsdeblur", "models", "hqsdeblur_unrolled.npz")
PUBLISHED = os.path.join(ROOT, "..", "shared", "reference", "dublid_linear_16c10l.npz")
CASES = ("unrolled", "train_step", "tv", "nonblind")


def _published_model():
    """The published architecture: its weights where ../shared has them,
    else the same shape untrained (the same work per image)."""
    if os.path.exists(PUBLISHED):
        return model_io.load_model(PUBLISHED), "published weights"
    from hqsdeblur.unrolled import UnrolledConfig, UnrolledModel, init_params

    cfg = UnrolledConfig(channels=16, layers=10, kernel_size=45)
    return UnrolledModel(cfg, init_params(cfg, dtype=np.float32)), "published shape, untrained"


def _scene(shape, seed):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.random(shape), 3) > 0.5
    return (0.2 + 0.6 * x + 0.1 * gaussian_filter(rng.random(shape), 1)).astype(np.float32)


def _blurred(shape, seed, length=15):
    from scipy.ndimage import convolve

    x = _scene(shape, seed)
    k = data.linear_kernel(length, 30.0 + 7 * seed)
    return convolve(x, k, mode="wrap").astype(np.float32), x, k


def _sync():
    import cupy

    cupy.cuda.Device().synchronize()


def _time(fn, repeat, gpu):
    fn()  # warm-up: plans, kernel compilation
    if gpu:
        _sync()
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if gpu:
            _sync()
        best = min(best, time.perf_counter() - t)
    return best


def _fft_unit(gpu, shape=(384, 576)):
    if gpu:
        import cupy

        a = cupy.random.random(shape, dtype=cupy.float32)
        return _time(lambda: [cupy.fft.rfft2(a) for _ in range(50)], 5, True) / 50
    import scipy.fft

    a = np.random.default_rng(0).random(shape, dtype=np.float32)
    return _time(lambda: [scipy.fft.rfft2(a, workers=os.cpu_count()) for _ in range(20)], 5, False) / 20


class _Batch:
    def __init__(self, blurred, sharp, kernel):
        self.blurred, self.sharp, self.kernel, self.k0 = blurred, sharp, kernel, None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batches of 4, one repeat")
    ap.add_argument("--json")
    ap.add_argument("--cpu-backend", default="numpy")
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    args = ap.parse_args(argv)
    import cupy

    B = 4 if args.quick else 16
    rep = 1 if args.quick else 3
    model = model_io.load_model(MODEL)
    cpu = args.cpu_backend
    info = {"gpu": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), "cupy": cupy.__version__,
            "cpu_cores": os.cpu_count(), "python": platform.python_version(), "batch": B}
    res = {}
    rows = []

    def row(case, t_gpu, t_cpu, per=""):
        res[case] = {"gpu_ms": t_gpu * 1e3, "cpu_ms": None if t_cpu is None else t_cpu * 1e3}
        ratio = "-" if t_cpu is None else f"{t_cpu / t_gpu:.1f}x"
        cpu_ms = "-" if t_cpu is None else f"{t_cpu * 1e3:.1f}"
        rows.append(f"| {case} | {t_gpu * 1e3:.2f} | {cpu_ms} | {ratio} |{per}")
        print(rows[-1], flush=True)

    print(f"# {info}")
    print(f"| case | GPU ms (cupy) | CPU ms ({cpu}, {os.cpu_count()} cores) | speed-up |")
    print("|---|---:|---:|---:|")

    def case(fn):
        if fn.__name__ not in args.cases:
            return
        try:
            fn()
        except Exception as exc:  # report and go on: one broken case must not hide the others
            import traceback

            traceback.print_exc()
            rows.append(f"| {fn.__name__} | failed: {type(exc).__name__}: {str(exc)[:120]} | | |")
            print(rows[-1], flush=True)

    @case
    def unrolled():
        published, what = _published_model()
        print(f"# unrolled rows: {what} (16 channels x 10 layers); deblur() row: the shipped model")
        _unrolled(published, model, B, rep, cpu, res, row)

    @case
    def train_step():
        _train_step(model, B, rep, cpu, res, row)

    @case
    def tv():
        y, _, _ = _blurred((255, 255), 7, length=21)
        t_gpu = _time(lambda: deblur(y, method="tv", kernel_size=27, backend="cupy"), rep, True)
        t_cpu = _time(lambda: deblur(y, method="tv", kernel_size=27, backend=cpu), 1, False)
        row("TV blind deblur 255x255, kernel 27", t_gpu, t_cpu)

    @case
    def nonblind():
        y, _, k = _blurred((1024, 1024), 3)
        t_gpu = _time(lambda: deconvolve(y, k, backend="cupy"), rep, True)
        t_cpu = _time(lambda: deconvolve(y, k, backend=cpu), 1, False)
        row("non-blind hyper-Laplacian 1024x1024", t_gpu, t_cpu)

    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"info": info, "results": res, "rows": rows}, fh, indent=1)
    return 0


def _unrolled(model, shipped, B, rep, cpu, res, row):
    import cupy

    # a batch of B different images, per image
    ys = [_blurred((290, 450), s)[0] for s in range(B)]
    yd = [cupy.asarray(y) for y in ys]
    with use_backend("cupy"):
        t_gpu = _time(lambda: [model.forward(y) for y in yd], rep, True) / B
    with use_backend(cpu):
        t_cpu = _time(lambda: model.forward(ys[0]), rep, False)
    unit_g, unit_c = _fft_unit(True), _fft_unit(False)
    res["fft_unit_ms"] = {"gpu": unit_g * 1e3, "cpu": unit_c * 1e3}
    row("unrolled 290x450 gray, per image (model.forward on device arrays)", t_gpu, t_cpu,
        f" GPU {t_gpu / unit_g:.0f} FFT-eq; CPU {t_cpu / unit_c:.0f} FFT-eq")
    t_gpu = _time(lambda: [deblur(y, method="unrolled", model=shipped, backend="cupy") for y in ys[:4]], 1, True) / 4
    row("shipped model, 290x450 gray, per image (deblur(), host in/out, 4 images)", t_gpu, None)
    # the whole stack at once: one pass per layer over (B, C, ...)
    stack = cupy.asarray(np.stack(ys))
    t_gpu = _time(lambda: model.forward_batch(stack, max_batch=B), rep, True) / B
    row(f"unrolled 290x450 gray, per image, forward_batch of {B}", t_gpu, t_cpu,
        f" GPU {t_gpu / unit_g:.0f} FFT-eq")
    xb, kb = model.forward_batch(stack, max_batch=B)
    with use_backend("cupy"):
        x0, k0 = model.forward(yd[0])
    res["batch_vs_single_max_abs"] = [float(abs(xb[0] - x0).max()), float(abs(kb[0] - k0).max())]
    print(f"# forward_batch vs forward on the GPU, image 0: max|dx| {res['batch_vs_single_max_abs'][0]:.2e}, "
          f"max|dk| {res['batch_vs_single_max_abs'][1]:.2e}")
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    model._cache.clear()
    model.forward_batch(stack, max_batch=B)
    res["forward_batch_pool_mib"] = pool.total_bytes() / 2**20
    print(f"# forward_batch of {B}: GPU pool {res['forward_batch_pool_mib']:.0f} MiB")


def _train_step(model, B, rep, cpu, res, row):
    import cupy

    from hqsdeblur.train import batch_loss_and_grads

    # one training step, B patches of 256x256
    blurred, sharp, kern = [], [], []
    for s in range(B):
        yb, x, k = _blurred((256, 256), 100 + s)
        blurred.append(yb)
        sharp.append(x)
        kern.append(data.center_kernel(k, model.config.kernel_size))
    batch = _Batch(blurred, sharp, kern)
    pool = cupy.get_default_memory_pool()
    with use_backend("cupy"):
        pool.free_all_blocks()
        batch_loss_and_grads(model, batch, image_shift=2)
        peak = pool.total_bytes()
        t_gpu = _time(lambda: batch_loss_and_grads(model, batch, image_shift=2), rep, True)
    one = _Batch(blurred[:1], sharp[:1], kern[:1])
    with use_backend(cpu):
        t_cpu = _time(lambda: batch_loss_and_grads(model, one, image_shift=2), 1, False) * B
    res["train_step_gpu_pool_mib"] = peak / 2**20
    row(f"training step, {B} patches 256x256 (CPU: 1 patch x {B})", t_gpu, t_cpu,
        f" GPU pool {peak / 2**20:.0f} MiB")



if __name__ == "__main__":
    sys.exit(main())
