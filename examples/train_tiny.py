"""Train a tiny unrolled DUBLID network (about a minute on one core) and
deblur an image with it.

Usage::

    python examples/train_tiny.py [IMAGE_FOLDER] [--steps 300] [--out DIR]

A few images are taken from IMAGE_FOLDER (falling back to scikit-image's
sample images when none is given or found). The network is small (4
channels, 3 layers, 15x15 kernels) and trains on 40x40 patches blurred by
straight motion kernels; afterwards a held-out sample image is blurred by a
motion kernel and deblurred, and the PSNRs are printed. Outputs (run folder,
blurred/deblurred PNGs, the model file) go to --out (default: a temporary
folder).
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from hqsdeblur.data import blur_valid, degrade, linear_kernel, list_images, load_gray, center_kernel
from hqsdeblur.train import export_model, train
from hqsdeblur.model_io import load_model


def _skimage_images():
    from skimage import color, data

    out = []
    for name in ("camera", "astronaut", "coffee", "chelsea", "rocket"):
        im = getattr(data, name)()
        im = im.astype(np.float64) / 255.0
        if im.ndim == 3:
            im = color.rgb2gray(im)
        out.append(im)
    return out


def _training_images(folder, n=4):
    if folder:
        try:
            paths = list_images(folder)[:n]
        except Exception:
            paths = []
        if paths:
            return [load_gray(p) for p in paths]
        print(f"no images found in {folder}; using scikit-image sample images", file=sys.stderr)
    return _skimage_images()[:n]


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a - b) ** 2))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", help="folder of training images (optional)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--out", help="output folder (default: a temporary folder)")
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--init", choices=("xavier", "tv"), default="xavier")
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--patch", type=int, default=40)
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    out = Path(a.out or tempfile.mkdtemp(prefix="hqsdeblur_tiny_"))
    out.mkdir(parents=True, exist_ok=True)
    run = out / "run"

    images = _training_images(a.folder)
    K = 15
    summary = train(images, run, steps=a.steps, batch=4, patch=a.patch, channels=a.channels, layers=a.layers,
                    kernel_size=K, kernels="linear", lr=a.lr, init=a.init, val_every=max(1, a.steps // 3), val_patches=4,
                    val_patch=64, ckpt_every=max(1, a.steps // 3), resume=(run / "checkpoint.npz").exists(),
                    progress=not a.quiet)
    model_path = out / "tiny_model.npz"
    export_model(run, model_path, which="latest")
    model = load_model(model_path)

    # Deblur a sample image that was not trained on.
    from skimage import data

    sharp_full = data.moon().astype(np.float64) / 255.0 if a.folder else data.text().astype(np.float64) / 255.0
    k = center_kernel(linear_kernel(9, 30), K)
    blurred, sharp = blur_valid(sharp_full[:200, :200], k)
    blurred = degrade(blurred, np.random.default_rng(0), noise_sigma=0.005)
    x, k_est = model.forward(blurred.astype(np.float32))
    x = np.clip(np.asarray(x, dtype=np.float64), 0, 1)
    b = K // 2
    inner = (slice(b, -b), slice(b, -b))
    p_blur, p_out = _psnr(blurred[inner], sharp[inner]), _psnr(x[inner], sharp[inner])
    from hqsdeblur.io import write_image

    write_image(out / "blurred.png", blurred, overwrite=True)
    write_image(out / "deblurred.png", x, overwrite=True)
    print(f"trained {summary['step']} steps ({summary['seconds_per_step'] or 0:.3f} s/step); "
          f"validation PSNR {summary['latest_val_psnr']:.2f} dB (blurred {summary['val_psnr_blurred']:.2f} dB)")
    print(f"test image: blurred {p_blur:.2f} dB -> deblurred {p_out:.2f} dB; outputs in {out}")
    return {"psnr_blurred": p_blur, "psnr_deblurred": p_out, "out": str(out), "summary": summary}


if __name__ == "__main__":
    main()
