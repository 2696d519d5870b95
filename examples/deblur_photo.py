"""Deblur the bundled example photograph from Python and write the results.

Usage::

    python examples/deblur_photo.py [OUTPUT_DIR]

Writes ``deblurred.png`` (8-bit, like the input) and ``kernel.png`` (the
estimated blur kernel, scaled to its maximum) into OUTPUT_DIR (default
``./deblur-photo-out``) and prints the PSNR before and after.
"""

import os
import sys

import hqsdeblur
from hqsdeblur.batch import default_method
from hqsdeblur.deblur import deblur
from hqsdeblur.io import read_image, write_image, write_kernel
from hqsdeblur.metrics import aligned_compare

EXAMPLE = os.path.join(os.path.dirname(hqsdeblur.__file__), "data_files")


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    blurred, info = read_image(os.path.join(EXAMPLE, "example_blurred.png"))
    sharp, _ = read_image(os.path.join(EXAMPLE, "example_sharp.png"))

    method, model = default_method()  # the shipped network if there is one, else TV
    if method == "tv":
        image, kernel = deblur(blurred, method="tv", kernel_size=21)  # blur is ~17 px
    else:
        image, kernel = deblur(blurred, method="unrolled", model=model)

    write_image(os.path.join(out_dir, "deblurred.png"), image, bit_depth=info.bit_depth, overwrite=True)
    write_kernel(os.path.join(out_dir, "kernel.png"), kernel, overwrite=True)
    before = aligned_compare(blurred, sharp)["psnr"]
    after = aligned_compare(image, sharp)["psnr"]
    print(f"{method}: PSNR {before:.2f} dB -> {after:.2f} dB; kernel {kernel.shape}; "
          f"results in {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "deblur-photo-out")
