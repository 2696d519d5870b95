"""Swap the unrolled forward's border (periodic_extend: mirrored borders, cosine
blend, band Hk-1) for tv.py's (pad_smooth_wrap: blurred border profiles, band
2 (Hk + Hk//2 + 2)). Content stays at (pad, pad), so the crop is unchanged."""
from hqsdeblur import unrolled as U
from hqsdeblur.boundary import pad_smooth_wrap
from hqsdeblur.steps import fourier


def _grid(shape, pad):
    tp = pad + pad // 2 + 3  # = Hk + Hk//2 + 2 for pad = Hk - 1
    return fourier.fft_shape((shape[-2] + 2 * tp, shape[-1] + 2 * tp))


class _BE:
    @staticmethod
    def periodic_extend(y, S, off):
        return pad_smooth_wrap(y, off, shape=S)


def apply():
    U._smooth_grid = _grid
    U.border_ext = _BE
