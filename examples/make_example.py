"""Regenerate the bundled example in ``hqsdeblur/data_files/``.

The sharp image is scikit-image's ``camera`` photograph (CC0, Lav Varshney),
halved to 256 x 256 by 2 x 2 averaging. It is blurred by a true 'valid'
convolution with a seeded camera-shake kernel (about 17 px across, 21 x 21
window), then 1 % Gaussian noise is added and the result is quantised to
8 bits. The true kernel is stored as a 16-bit PNG scaled to its maximum.

Run from the repository root (not run by the tests)::

    python examples/make_example.py
"""

import os

import numpy as np
import skimage.data

from hqsdeblur.data import blur_valid, degrade, shake_kernel
from hqsdeblur.io import write_image, write_kernel

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "hqsdeblur", "data_files")
SIZE, WINDOW, SEED = 256, 21, 7


def main():
    cam = skimage.data.camera().astype(np.float64) / 255.0  # (512, 512)
    half = cam.reshape(256, 2, 256, 2).mean(axis=(1, 3))
    rng = np.random.default_rng(SEED)
    kernel = shake_kernel(rng, size=WINDOW, min_extent=15, max_extent=17)
    # pad by reflection so 'valid' blurring gives back a SIZE x SIZE image
    # whose border is a real blur of real content (no wrap-around seam)
    r = WINDOW // 2
    padded = np.pad(half, r, mode="reflect")
    blurred, sharp = blur_valid(padded, kernel)
    blurred = degrade(blurred, rng, noise_sigma=0.01, quantize=True)
    assert blurred.shape == sharp.shape == (SIZE, SIZE)
    write_image(os.path.join(OUT, "example_sharp.png"), sharp, overwrite=True)
    write_image(os.path.join(OUT, "example_blurred.png"), blurred, overwrite=True)
    write_kernel(os.path.join(OUT, "example_kernel.png"), kernel, overwrite=True)
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
