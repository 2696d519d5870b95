"""Images per second on 1 and 2 local Dask worker processes.

Usage: ``PYTHONPATH=. python benchmarks/bench_dask.py [--n 16] [--size 256]``

``--large 6000x8000`` instead runs :func:`hqsdeblur.tiles.deblur_large` on
one synthetic gray image of that size and prints its time and peak memory
(``ru_maxrss``, this process and its threads).

Writes n synthetic blurred PNGs to a temporary folder, deblurs them with
method 'tv' through :func:`hqsdeblur.batch.deblur_files` on a local cluster
of 1 and then 2 worker processes (one thread each), and prints images per
second and the speed-up. The first call on a fresh cluster includes no
warm-up: each cluster runs one image before the timed batch.
"""

import argparse
import os
import tempfile
import time

import numpy as np


def _images(folder, n, size):
    from scipy.signal import fftconvolve

    from hqsdeblur.io import write_image

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    k = np.zeros((9, 9))
    k[4, 1:8] = 1 / 7
    paths = []
    for i in range(n):
        x = np.zeros((size, size))
        for _ in range(30):
            y0, x0 = rng.integers(0, size, 2)
            x[y0 : y0 + rng.integers(8, size // 3), x0 : x0 + rng.integers(8, size // 3)] = rng.random()
        y = np.clip(fftconvolve(x, k, mode="same") + 0.01 * rng.standard_normal(x.shape), 0, 1)
        p = os.path.join(folder, f"img{i:03d}.png")
        write_image(p, y)
        paths.append(p)
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--kernel-size", type=int, default=15)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--large", metavar="HxW", help="time deblur_large on one HxW gray image instead")
    ap.add_argument("--tile", type=int, default=1024)
    args = ap.parse_args()
    if args.large:
        return large(args)

    from hqsdeblur.batch import deblur_files
    from hqsdeblur.distributed import local_client

    settings = {"method": "tv", "kernel_size": args.kernel_size, "backend": "numpy"}
    rate = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = _images(os.path.join(tmp, "in"), args.n, args.size)
        for w in args.workers:
            with local_client(w, threads_per_worker=1) as client:
                client.wait_for_workers(w)
                deblur_files(inputs[:w], os.path.join(tmp, f"warm{w}"), settings=settings, client=client, progress=False)
                t = time.perf_counter()
                rows = deblur_files(inputs, os.path.join(tmp, f"out{w}"), settings=settings, client=client, progress=False)
                dt = time.perf_counter() - t
            assert all(r["status"] == "ok" for r in rows), rows
            rate[w] = args.n / dt
            print(f"{w} worker(s): {args.n} images {args.size}x{args.size} in {dt:.2f} s = "
                  f"{rate[w]:.3f} images/s ({dt / args.n:.3f} s/image)", flush=True)
    if 1 in rate and len(rate) > 1:
        for w in rate:
            if w != 1:
                print(f"speed-up 1 -> {w} workers: {rate[w] / rate[1]:.2f}x (cores: {os.cpu_count()})")


def large(args):
    import resource

    from scipy import ndimage

    from hqsdeblur.tiles import deblur_large

    H, W = (int(v) for v in args.large.lower().split("x"))
    rng = np.random.default_rng(0)
    # piecewise-constant scene built at 1/8 scale, upscaled (bounded memory)
    small = np.zeros((H // 8 + 1, W // 8 + 1), dtype=np.float32)
    for _ in range(H * W // 40000):
        y0, x0 = rng.integers(0, small.shape[0]), rng.integers(0, small.shape[1])
        small[y0 : y0 + rng.integers(2, 40), x0 : x0 + rng.integers(2, 40)] = rng.random()
    x = np.repeat(np.repeat(small, 8, 0), 8, 1)[:H, :W]
    k = np.zeros((args.kernel_size,) * 2, dtype=np.float32)
    k[args.kernel_size // 2, 2:-2] = 1
    k /= k.sum()
    y = ndimage.convolve(x, k, mode="reflect")
    y += 0.01 * rng.standard_normal(y.shape, dtype=np.float32)
    np.clip(y, 0, 1, out=y)
    del x, small
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    out, kk = deblur_large(y, kernel_size=args.kernel_size, tile=args.tile, deblur_options={"backend": "numpy"})
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"deblur_large {H}x{W} float32, kernel {args.kernel_size}, tile {args.tile}: {dt:.1f} s, "
          f"peak RSS {peak:.0f} MiB (input image {y.nbytes / 2**20:.0f} MiB, output {out.nbytes / 2**20:.0f} MiB, "
          f"RSS before the call {base:.0f} MiB)")


if __name__ == "__main__":
    main()
