"""Colour reconstruction with a gray unrolled model: which mode is better?

The kernel is estimated on luminance; then the colour image is recovered
(a) by the network's own reconstruction solved jointly for the 3 channels
('joint'), (b) channel by channel with the same features ('per-channel'),
(c) by a non-blind hyper-Laplacian deconvolution of each channel
('nonblind'). Scored on Lai's synthetic colour images whose kernel fits the
45 px window (kernel_01, 31 px): colour PSNR on the aligned interior (shift
found on luminance, protocol border 15, shifts +-15).

    PYTHONPATH=. python benchmarks/eval_colour.py [--model PATH] [--limit N]
"""

import argparse
import json
import os
import time

import numpy as np

from hqsdeblur.deblur import unrolled_deblur
from hqsdeblur.io import read_image
from hqsdeblur.metrics import aligned_compare
os.environ.setdefault("HQSDEBLUR_FFTW", "0")  # scored with pocketfft, as eval_all.py says why

LUMA = np.array([0.2125, 0.7154, 0.0721])


def colour_psnr(x, gt, shift, border=15):
    dy, dx = shift
    H, W = gt.shape[:2]
    a = np.clip(x, 0, 1)[border + dy : H - border + dy, border + dx : W - border + dx]
    b = gt[border : H - border, border : W - border]
    return 10 * np.log10(1.0 / np.mean((a - b) ** 2))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--model", default=None, help="model file (default: the published archive in ../shared)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    model = a.model or os.path.join(a.root, "..", "reference", "dublid_linear_16c10l.npz")
    lai = os.path.join(a.root, "lai2016")
    names = sorted(f for f in os.listdir(os.path.join(lai, "blurred")) if f.endswith("_kernel_01.png"))[: a.limit]
    modes = ("nonblind", "joint", "per-channel")
    res = {m: [] for m in modes}
    res["blurred"] = []
    for f in names:
        y, _ = read_image(os.path.join(lai, "blurred", f))
        gt, _ = read_image(os.path.join(lai, "sharp", f.replace("_kernel_01", "")))
        sh = aligned_compare(y @ LUMA, gt @ LUMA, compute_ssim=False)["shift"]
        res["blurred"].append(colour_psnr(y, gt, sh))
        for m in modes:
            t = time.perf_counter()
            x, _ = unrolled_deblur(y, model=model, colour=m)
            sec = time.perf_counter() - t
            sh = aligned_compare(np.clip(x, 0, 1) @ LUMA, gt @ LUMA, compute_ssim=False)["shift"]
            res[m].append(colour_psnr(x, gt, sh))
            print(f"{f:32s} {m:12s} {res[m][-1]:6.2f} dB  ({sec:.1f} s)", flush=True)
    print("\n| mode | mean colour PSNR (aligned) |\n| --- | --- |")
    for m in ("blurred",) + modes:
        print(f"| {m} | {np.mean(res[m]):.2f} dB |")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({m: list(map(float, v)) for m, v in res.items()} | {"images": names}, fh, indent=1)


if __name__ == "__main__":
    main()
