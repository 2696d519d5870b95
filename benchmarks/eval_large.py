"""Quality cost of the large-image route of ``deblur`` (issue 6).

Usage::

    OMP_NUM_THREADS=1 HQSDEBLUR_FFT_WORKERS=1 PYTHONPATH=. \\
        python benchmarks/eval_large.py [--limit N] [--methods tv unrolled] \\
        [--out docs/results/large_images.json]

Above ``max_direct_pixels`` :func:`hqsdeblur.deblur` estimates the kernel on
one 1024^2 crop (the window with the most edge energy) and reconstructs the
whole image by the tiled non-blind deconvolution. This script measures what
that costs on images where the whole-image estimation still fits in memory:
the five sharp images of Lai et al. (2016) (``lai2016/sharp``, luminance,
upsampled x2 with cubic splines, so 1036x1260 to 1536x2048), blurred with a
Levin-size (``levin09_k1``, 19 px) and a Lai-size (``lai16_uniform_k2``,
51 px) kernel of ``kernels_real``, 'valid' convolution (no wrap-around: the
blurred image is ``kernel - 1`` smaller, and the sharp reference is cropped
to match), plus 1 % Gaussian noise. Per image, kernel and method:

* ``direct``: ``deblur(..., max_direct_pixels=None)``, whole-image
  estimation and the method's own final image (the unrolled network's
  reconstruction for 'unrolled');
* ``large``: ``deblur(..., max_direct_pixels=0)``, the large-image route
  (medoid of the kernels of three 1024^2 crops, tiled non-blind
  deconvolution);
* ``large_1crop``: the same with one crop (``tiling={'crops': 1}``);
* ``direct_k_tiled``: the whole-image kernel of ``direct`` deconvolved by
  the same tiled non-blind step (noise-adapted weight, noise measured on the
  whole image), which separates the cost of the crop (``large`` vs
  ``direct_k_tiled``) from the change of final image for 'unrolled'
  (``direct_k_tiled`` vs ``direct``);
* ``large_r512``: the large route with 512^2 crops, each about 10 % of these
  images, the fraction a 1024^2 crop is of a 10-megapixel photo (on the
  test images a 1024^2 crop covers 40-80 %).

Scores follow hqsdeblur.evaluate: PSNR and SSIM after the best integer shift
(``metrics.aligned_compare``, +-15 px, 15 px border) and the kernel RMSE at
the best shift (``metrics.kernel_rmse``, +-10 px, on a 55 px window here so
that the 51 px kernel is scored too). CPU seconds are ``process_time``.
"""

import argparse
import glob
import json
import os
import statistics
import sys
import time

import numpy as np
os.environ.setdefault("HQSDEBLUR_FFTW", "0")  # scored with pocketfft, as eval_all.py says why

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
KERNELS = {"levin09_k1": None, "lai16_uniform_k2": 55}  # kernel -> kernel_size (None: method default)
WINDOW = 55


def load_pairs(root, limit=None, noise=0.01, seed=0):
    """(name, blurred, sharp, kernel, kernel_size) for every image x kernel."""
    from scipy import ndimage
    from scipy.signal import fftconvolve

    from hqsdeblur.io import read_image
    from hqsdeblur.validate import LUMA

    kernels = np.load(os.path.join(root, "kernels_real", "kernels_real.npz"))
    paths = sorted(glob.glob(os.path.join(root, "lai2016", "sharp", "*.png")))[:limit]
    rng = np.random.default_rng(seed)
    for p in paths:
        rgb, _ = read_image(p)
        x = np.clip(ndimage.zoom(rgb @ LUMA, 2, order=3), 0, 1)
        for kname, ks in KERNELS.items():
            k = kernels[kname] / kernels[kname].sum()
            h = k.shape[0] // 2
            y = fftconvolve(x, k, mode="valid") + noise * rng.standard_normal((x.shape[0] - 2 * h, x.shape[1] - 2 * h))
            yield (f"{os.path.basename(p)[:-4]}_{kname}", np.clip(y, 0, 1).astype(np.float32), x[h:-h, h:-h], k, ks)


def score(img, k, sharp, k_true):
    from hqsdeblur import metrics

    a = metrics.aligned_compare(np.asarray(img, dtype=np.float64), sharp)
    r = metrics.kernel_rmse(k, k_true, window=max(WINDOW, *np.shape(k)), max_shift=10)
    return {"psnr": a["psnr"], "ssim": a["ssim"], "kernel_rmse": None if r is None else r[0]}


def run_one(name, y, x, kt, ks, method):
    from hqsdeblur import deblur
    from hqsdeblur.tiles import deconvolve_tiled

    row = {"name": name, "method": method, "H": int(y.shape[0]), "W": int(y.shape[1]), "kernel_size": ks}
    row["blurred"] = score(y, np.ones((1, 1)), x, kt)["psnr"]
    c = time.process_time()
    xd, kd = deblur(y, method=method, kernel_size=ks, max_direct_pixels=None)
    row["direct"] = dict(score(xd, kd, x, kt), cpu_s=time.process_time() - c)
    del xd
    c = time.process_time()
    xl, kl = deblur(y, method=method, kernel_size=ks, max_direct_pixels=0)
    row["large"] = dict(score(xl, kl, x, kt), cpu_s=time.process_time() - c)
    del xl
    # tiled non-blind step with the whole-image kernel and the options the
    # large route uses: default weight for 'unrolled', for 'tv' the
    # noise-adapted weight of tv.blind_deconvolve
    from hqsdeblur.tv import DEFAULTS, noise_level

    sigma = noise_level(np.asarray(y, dtype=np.float64))
    weight = 3e-4 * sigma / 0.0035 if sigma > DEFAULTS["noisy"] else None
    xt = deconvolve_tiled(y, kd, num_workers=1, weight=weight)
    row["direct_k_tiled"] = dict(score(xt, kd, x, kt))
    del xt
    for route, tiling in (("large_1crop", {"crops": 1}), ("large_r512", {"region": 512})):
        c = time.process_time()
        xs, ks_ = deblur(y, method=method, kernel_size=ks, max_direct_pixels=0, tiling=tiling)
        row[route] = dict(score(xs, ks_, x, kt), cpu_s=time.process_time() - c)
    return row


def summarize(rows):
    out = {}
    for method in sorted({r["method"] for r in rows}):
        for kname in KERNELS:
            rs = [r for r in rows if r["method"] == method and r["name"].endswith(kname)]
            if not rs:
                continue
            s = {"n": len(rs), "blurred_psnr": statistics.mean(r["blurred"] for r in rs)}
            for route in ("direct", "large", "direct_k_tiled", "large_1crop", "large_r512"):
                s[f"{route}_psnr"] = statistics.mean(r[route]["psnr"] for r in rs)
                s[f"{route}_ssim"] = statistics.mean(r[route]["ssim"] for r in rs)
            for route in ("direct", "large", "large_1crop", "large_r512"):
                s[f"{route}_kernel_rmse"] = statistics.mean(r[route]["kernel_rmse"] for r in rs)
                s[f"{route}_cpu_s"] = statistics.mean(r[route]["cpu_s"] for r in rs)
            s["large_minus_direct_psnr"] = s["large_psnr"] - s["direct_psnr"]
            s["min_large_minus_direct_psnr"] = min(r["large"]["psnr"] - r["direct"]["psnr"] for r in rs)
            s["min_large_1crop_minus_direct_psnr"] = min(r["large_1crop"]["psnr"] - r["direct"]["psnr"] for r in rs)
            s["min_large_r512_minus_direct_psnr"] = min(r["large_r512"]["psnr"] - r["direct"]["psnr"] for r in rs)
            out[f"{method}/{kname}"] = s
    return out


def table(summary):
    lines = [
        "| method / kernel | n | blurred | direct | large route (worst vs direct) | one crop (worst) | 512^2 crops (worst) "
        "| direct k + tiled | kernel RMSE x1e3 direct / large / one crop / 512^2 | CPU s direct / large |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, s in summary.items():
        lines.append(
            f"| {key} | {s['n']} | {s['blurred_psnr']:.2f} | {s['direct_psnr']:.2f} | "
            f"{s['large_psnr']:.2f} ({s['min_large_minus_direct_psnr']:+.2f}) | "
            f"{s['large_1crop_psnr']:.2f} ({s['min_large_1crop_minus_direct_psnr']:+.2f}) | "
            f"{s['large_r512_psnr']:.2f} ({s['min_large_r512_minus_direct_psnr']:+.2f}) | {s['direct_k_tiled_psnr']:.2f} | "
            f"{1e3 * s['direct_kernel_rmse']:.2f} / {1e3 * s['large_kernel_rmse']:.2f} / {1e3 * s['large_1crop_kernel_rmse']:.2f} / "
            f"{1e3 * s['large_r512_kernel_rmse']:.2f} | {s['direct_cpu_s']:.0f} / {s['large_cpu_s']:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=SHARED)
    ap.add_argument("--limit", type=int, default=None, help="first N sharp images")
    ap.add_argument("--methods", nargs="+", default=["tv", "unrolled"])
    ap.add_argument("--out", help="write rows and summary to this JSON file")
    args = ap.parse_args(argv)
    rows = []
    for name, y, x, kt, ks in load_pairs(args.root, args.limit):
        for method in args.methods:
            r = run_one(name, y, x, kt, ks, method)
            rows.append(r)
            print(f"{name:32s} {method:8s} {r['H']}x{r['W']} blurred {r['blurred']:.2f}  direct {r['direct']['psnr']:.2f} "
                  f"large {r['large']['psnr']:.2f} direct-k-tiled {r['direct_k_tiled']['psnr']:.2f} 1crop {r['large_1crop']['psnr']:.2f} r512 {r['large_r512']['psnr']:.2f}  "
                  f"k-rmse {1e3 * r['direct']['kernel_rmse']:.2f}/{1e3 * r['large']['kernel_rmse']:.2f}e-3", flush=True)
    summary = summarize(rows)
    print(table(summary))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"protocol": __doc__.split("Scores")[0].strip(), "command": " ".join(["python", "benchmarks/eval_large.py"] + (argv or sys.argv[1:])),
                       "summary": summary, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
