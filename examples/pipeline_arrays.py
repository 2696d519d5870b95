"""NumPy arrays in, NumPy arrays out: deblurring inside a pipeline, no files.

Shows the three layouts :func:`hqsdeblur.deblur.deblur` accepts: a gray
float64 image, a colour image (channel last) and a float32 array such as one
loaded from a ``.npy`` file (float32 stays float32).

Usage::

    python examples/pipeline_arrays.py
"""

import numpy as np
from scipy.signal import fftconvolve

from hqsdeblur.data import linear_kernel
from hqsdeblur.deblur import deblur


def blur(sharp, kernel, rng, noise=0.005):
    """Convolve each channel ('same' size, reflected border) and add noise."""
    r = kernel.shape[0] // 2
    chans = sharp[..., None] if sharp.ndim == 2 else sharp
    out = np.stack([fftconvolve(np.pad(c, r, mode="reflect"), kernel, mode="valid")
                    for c in np.moveaxis(chans, -1, 0)], axis=-1)
    out = out[..., 0] if sharp.ndim == 2 else out
    return np.clip(out + noise * rng.standard_normal(out.shape), 0, 1)


def scene(rng, size=96):
    """A synthetic sharp scene: rectangles and a disc on a gradient."""
    yy, xx = np.mgrid[:size, :size] / size
    img = 0.2 + 0.3 * xx
    for _ in range(6):
        y0, x0 = rng.integers(0, size - 20, 2)
        img[y0:y0 + rng.integers(8, 20), x0:x0 + rng.integers(8, 20)] = rng.uniform(0.1, 0.9)
    img[(yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.02] = 0.95
    return np.clip(img, 0, 1)


def main():
    rng = np.random.default_rng(0)
    kernel = linear_kernel(7, 30, size=9)  # 7 px motion at 30 degrees
    gray = scene(rng)
    colour = np.stack([gray, np.roll(gray, 5, axis=1), gray[::-1]], axis=-1)

    x, k = deblur(blur(gray, kernel, rng), kernel_size=11)
    print("gray:", x.shape, x.dtype, "kernel", k.shape, f"sum {k.sum():.3f}")

    x, k = deblur(blur(colour, kernel, rng), kernel_size=11)
    print("colour:", x.shape, x.dtype, "kernel", k.shape)

    y32 = blur(gray, kernel, rng).astype(np.float32)  # e.g. np.load("blurred.npy")
    x, k = deblur(y32, kernel_size=11)
    assert x.dtype == np.float32 and np.isfinite(x).all()
    print("float32:", x.shape, x.dtype, f"range [{x.min():.3f}, {x.max():.3f}]")


if __name__ == "__main__":
    main()
