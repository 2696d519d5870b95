"""Contact sheets for the README: ``docs/contact_levin.png`` and ``docs/contact_lai_real.png``.

* ``contact_levin.png``: four Levin et al. images (one per sharp image, each
  with a different kernel): blurred / tv / published weights /
  ours (shipped model) / sharp. The estimated kernel is
  inset in the top-right corner of each result, the true kernel in the
  blurred and sharp panels; titles give the aligned PSNR of the protocol.
  Both networks run as ``deblur(method='unrolled')`` runs them (coarse to
  fine, wrap border).
* ``contact_lai_real.png``: four of Lai et al.'s real camera-shake photos
  (colour, downscaled to at most 800 px on the long side), blurred vs the
  classical ``deblur(img, method='tv')`` colour result with its kernel.

Usage::

    PYTHONPATH=. python benchmarks/make_figures.py [--only levin|lai]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DATA = REPO.parent / "shared" / "data"
DOCS = REPO / "docs"
LEVIN_ITEMS = ("im1_k2", "im2_k4", "im3_k6", "im4_k8")
LAI_REAL = ("bird", "boat1", "book1", "family")
LAI_MAX_SIDE = 800
LAI_KERNEL_SIZE = 41  # Lai's real kernels reach ~51 px at full size (<= 1200 px)


def _common_window(k, size):
    """The kernel centred (centre of mass) in a ``size`` window, so every inset has one scale."""
    from hqsdeblur.data import center_kernel
    from hqsdeblur.errors import InputError

    k = np.maximum(np.asarray(k, dtype=float), 0)
    try:
        return center_kernel(k, size)
    except InputError:  # support wider than the window: show it whole
        n = max(k.shape) + 1 - max(k.shape) % 2
        return center_kernel(k, max(n, size) + 2 * (n - 1))


def _inset_kernel(ax, k, *, frac=0.3, label=None, window=None):
    """Kernel, normalised to its maximum, in the top-right corner of ``ax``."""
    k = np.asarray(k, dtype=float)
    if window is not None:
        k = _common_window(k, window)
    k = k / k.max() if k.max() > 0 else k
    ins = ax.inset_axes([1 - frac - 0.01, 1 - frac - 0.01, frac, frac])
    ins.imshow(k, cmap="gray", interpolation="nearest", vmin=0, vmax=1)
    ins.set_xticks([])
    ins.set_yticks([])
    for s in ins.spines.values():
        s.set_edgecolor("yellow")
        s.set_linewidth(1.0)
    if label:
        ins.set_title(label, fontsize=6, color="yellow", pad=1)
    return ins


def _off(ax):
    ax.set_xticks([])
    ax.set_yticks([])


def levin_figure(path=DOCS / "contact_levin.png"):
    from eval_all import make_method
    from hqsdeblur.evaluate import load_dataset
    from hqsdeblur.metrics import aligned_compare

    items = {it.name: it for it in load_dataset(DATA, "levin")}
    # the network as deblur(method='unrolled') runs it: coarse to fine
    methods = [("tv", "tv"), ("published", "published_c2f"), ("ours", "ours_c2f")]
    funcs = {label: make_method(m, "levin") for label, m in methods}
    fig, axes = plt.subplots(len(LEVIN_ITEMS), 5, figsize=(10, 2.1 * len(LEVIN_ITEMS)), dpi=110)
    for r, name in enumerate(LEVIN_ITEMS):
        it = items[name]
        panels = [("blurred", it.blurred, it.kernel)]
        for label, _ in methods:
            t0 = time.perf_counter()
            x, k = funcs[label](it.blurred)
            print(f"{name} {label}: {time.perf_counter() - t0:.1f}s", flush=True)
            panels.append((label, np.clip(x, 0, 1), k))
        panels.append(("sharp", it.sharp, it.kernel))
        for c, (label, img, k) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            _off(ax)
            if label == "sharp":
                title = f"sharp ({name})"
            else:
                title = f"{label} {aligned_compare(img, it.sharp, compute_ssim=False)['psnr']:.2f} dB"
            ax.set_title(title, fontsize=8)
            _inset_kernel(ax, k, window=31)
    fig.suptitle("Levin et al. 2009: aligned PSNR (dB). Insets: estimated kernel; true kernel on the blurred "
                 "and sharp panels (all shown in a 31x31 window, centred)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def _load_rgb(path, max_side=LAI_MAX_SIDE):
    from PIL import Image

    im = Image.open(path).convert("RGB")
    s = max_side / max(im.size)
    if s < 1:
        im = im.resize((round(im.size[0] * s), round(im.size[1] * s)), Image.LANCZOS)
    return np.asarray(im, dtype=np.float64) / 255.0


def lai_real_figure(path=DOCS / "contact_lai_real.png"):
    from hqsdeblur import deblur

    folder = DATA / "lai2016" / "real_blurry"
    fig, axes = plt.subplots(len(LAI_REAL), 2, figsize=(9, 3.4 * len(LAI_REAL)), dpi=88)
    for r, name in enumerate(LAI_REAL):
        y = _load_rgb(folder / f"{name}.jpg")
        t0 = time.perf_counter()
        x, k = deblur(y, method="tv", kernel_size=LAI_KERNEL_SIZE)
        dt = time.perf_counter() - t0
        print(f"{name} {y.shape}: {dt:.1f}s", flush=True)
        for c, (img, title) in enumerate(((y, f"{name}: blurred ({y.shape[1]}x{y.shape[0]})"),
                                          (x, f"tv, kernel window {LAI_KERNEL_SIZE} ({dt:.0f} s)"))):
            ax = axes[r, c]
            ax.imshow(np.clip(img, 0, 1), interpolation="lanczos")
            _off(ax)
            ax.set_title(title, fontsize=8)
        _inset_kernel(axes[r, 1], k, frac=0.25)
    fig.suptitle("Lai et al. 2016 real camera-shake photos (no ground truth): classical tv, colour; "
                 "inset: estimated kernel",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("levin", "lai"), default=None)
    args = ap.parse_args(argv)
    DOCS.mkdir(exist_ok=True)
    if args.only in (None, "levin"):
        levin_figure()
    if args.only in (None, "lai"):
        lai_real_figure()


if __name__ == "__main__":
    main()
