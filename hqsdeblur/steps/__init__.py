"""The steps of half-quadratic splitting, each with its forward pass and its
adjoint (vector-Jacobian product) side by side.

========================  =====================================================
module                    step
========================  =====================================================
:mod:`.fourier`           FFT grid, padding, embedding, shifts, psf2otf (linear)
:mod:`.filters`           filter banks, cascades of 3x3 filters (linear)
:mod:`.features`          feature update ``g`` (Fourier-domain proximal LS)
:mod:`.shrink`            soft / hard shrinkage ``z = S_b(g)``
:mod:`.kernel`            kernel least squares + simplex / published threshold
:mod:`.reconstruct`       image from features, gray and colour
========================  =====================================================
"""

from . import features, filters, fourier, kernel, reconstruct, shrink  # noqa: F401
