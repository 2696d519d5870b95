"""Peak memory of ``hqsdeblur.deblur`` on large photos (issue 6).

Usage::

    PYTHONPATH=. python benchmarks/bench_memory.py --quick   # 2048^2 only
    PYTHONPATH=. python benchmarks/bench_memory.py           # 2048^2 and 4096^2
    PYTHONPATH=. python benchmarks/bench_memory.py --sizes 2048 --direct  # the direct route ("before")
    PYTHONPATH=. python benchmarks/bench_memory.py --sizes 4096 --cli     # also `hqsdeblur deblur` on a PNG

Every case (size, gray/RGB, method) runs in a fresh subprocess, one at a
time, that imports everything, loads the blurred test image (float32 ``.npy``,
so the input itself is counted), calls ``deblur`` and reports its peak
resident memory (``ru_maxrss``), the resident memory before the call
(interpreter + libraries + input) and its CPU time. ``--cli`` runs the command
line on an 8-bit PNG of the same image under the same measurement (the CLI
reads it as float64). The test image is synthetic (random rectangles and
smooth texture, 19 px motion blur, 1 % noise), written once to a temporary
folder. Threads: ``OMP_NUM_THREADS=1``, ``HQSDEBLUR_FFT_WORKERS=1``; the tiles
use deblur's default number of threads (at most 4).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _kernel():
    from scipy import ndimage

    k = np.zeros((19, 19))
    t = np.linspace(0, 1, 200)
    k[np.round(9 + 7 * np.sin(3 * t)).astype(int), np.round(2 + 14 * t).astype(int)] = 1
    k = ndimage.gaussian_filter(k, 0.6)
    return k / k.sum()


def make_image(path, size, colour, seed=0):
    """Synthetic blurred photo, float32 (size, size[, 3]), saved to `path`."""
    from scipy import ndimage
    from scipy.signal import oaconvolve

    rng = np.random.default_rng(seed)
    nc = 3 if colour else 1
    # texture at 1/4 resolution, upsampled: cheap on memory and smooth
    small = ndimage.gaussian_filter(rng.random((size // 4, size // 4, nc)).astype(np.float32), (2, 2, 0))
    out = np.empty((size, size, nc), np.float32)
    k = _kernel().astype(np.float32)
    for c in range(nc):
        x = ndimage.zoom(small[..., c], 4, order=1)
        x -= x.min()
        x /= x.max()
        for _ in range(size // 8):  # edges: rectangles of random grey
            y0, x0 = rng.integers(0, size, 2)
            h, w = rng.integers(8, size // 16, 2)
            x[y0 : y0 + h, x0 : x0 + w] = rng.random()
        out[..., c] = oaconvolve(x, k, mode="same")
        del x
    out += 0.01 * rng.standard_normal(out.shape, dtype=np.float32)
    np.clip(out, 0, 1, out=out)
    np.save(path, out[..., 0] if nc == 1 else out)


def child(args):
    """One case, in this process; prints a JSON line."""
    import resource
    import time

    import dask.array  # noqa: F401  (imported by the tiles; counted in the baseline)

    from hqsdeblur import deblur
    from hqsdeblur.deblur import load_default_model

    if args.method == "unrolled":
        load_default_model()
    y = np.load(args.image)
    rss0 = _rss_now()
    t0, c0 = time.perf_counter(), time.process_time()
    kw = {} if args.max_direct is None else {"max_direct_pixels": None if args.max_direct == 0 else args.max_direct}
    x, k = deblur(y, method=args.method, **kw)
    row = {
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "before_call_mib": rss0,
        "cpu_s": time.process_time() - c0,
        "wall_s": time.perf_counter() - t0,
        "out_dtype": str(x.dtype),
        "kernel_sum": float(k.sum()),
    }
    print(json.dumps(row))


def _rss_now():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", HQSDEBLUR_FFT_WORKERS="1")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_case(image, method, max_direct):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--image", image, "--method", method]
    if max_direct is not None:
        cmd += ["--max-direct", str(max_direct)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_cli(image, method, tmp):
    """`hqsdeblur deblur in.png -o out.png` under /usr/bin/time -v (or
    ru_maxrss of the child)."""
    import resource
    import time

    from hqsdeblur.io import write_image

    png = os.path.join(tmp, os.path.basename(image).replace(".npy", ".png"))
    if not os.path.exists(png):
        write_image(png, np.load(image), bit_depth=8)
    out = os.path.join(tmp, "out.png")
    cmd = [sys.executable, "-m", "hqsdeblur", "deblur", png, "-o", out, "--overwrite", "--method", method, "-q"]
    if method == "unrolled":  # the CLI asks for the model unless it is the default method
        from hqsdeblur.deblur import default_model_path

        cmd += ["--model", default_model_path()]
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    if os.path.exists("/usr/bin/time"):
        p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=_env())
        peak = [float(line.split(":")[1]) / 1024 for line in p.stderr.splitlines() if "Maximum resident set size" in line]
        peak = peak[0] if peak else float("nan")
    else:  # pragma: no cover
        p = subprocess.run(cmd, capture_output=True, text=True, env=_env())
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # max over children so far
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    return {"peak_mib": peak, "before_call_mib": float("nan"), "cpu_s": (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime),
            "wall_s": time.perf_counter() - t0, "out_dtype": "png", "kernel_sum": float("nan")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2048^2 only")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="square sizes (default 2048 4096)")
    ap.add_argument("--methods", nargs="+", default=["tv", "unrolled"])
    ap.add_argument("--gray-only", action="store_true")
    ap.add_argument("--direct", action="store_true", help="the direct route (max_direct_pixels=None) instead")
    ap.add_argument("--cli", action="store_true", help="also the CLI on a PNG")
    ap.add_argument("--tmp", default=os.path.join(tempfile.gettempdir(), "hqsdeblur_bench_memory"))
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--image", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--max-direct", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    sizes = args.sizes or ([2048] if args.quick else [2048, 4096])
    os.makedirs(args.tmp, exist_ok=True)
    rows = []
    print(f"route: {'direct (max_direct_pixels=None)' if args.direct else 'deblur() default'}; peak RSS of a fresh process per case")
    print("| size | channels | method | entry | peak MiB | before call MiB | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for size in sizes:
        for colour in (False,) if args.gray_only else (False, True):
            image = os.path.join(args.tmp, f"blur_{size}_{'rgb' if colour else 'gray'}.npy")
            if not os.path.exists(image):
                make_image(image, size, colour)
            for method in args.methods:
                entries = [("deblur()", lambda: run_case(image, method, 0 if args.direct else None))]
                if args.cli:
                    entries.append(("CLI", lambda: run_cli(image, method, args.tmp)))
                for entry, fn in entries:
                    r = fn()
                    r.update(size=size, channels=3 if colour else 1, method=method, entry=entry, direct=args.direct)
                    rows.append(r)
                    if "error" in r:
                        print(f"| {size}^2 | {r['channels']} | {method} | {entry} | failed: {r['error']} | | |", flush=True)
                    else:
                        print(f"| {size}^2 | {r['channels']} | {method} | {entry} | {r['peak_mib']:.0f} | {r['before_call_mib']:.0f} | {r['cpu_s']:.1f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
