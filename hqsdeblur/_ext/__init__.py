"""Compiled extension modules of :mod:`hqsdeblur`.

``_elementwise`` (Cython + OpenMP) holds the elementwise HQS kernels; it is
optional at run time: import it through :func:`load_elementwise`, which
returns None when the package was used from a source tree without building.
"""

import os

# OpenMP threads that spin after a parallel region (libgomp's default) take
# the core from the FFT that runs next: a training step ran 1.8x slower on 2
# cores (2.35 s wall, 4.4 s CPU) than with sleeping threads (1.32 s). Set
# before the extensions load libgomp; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["load_elementwise"]


def load_elementwise():
    """Return the compiled kernel module, or None if it is not built.

    Example
    -------
    >>> mod = load_elementwise()
    >>> mod is None or hasattr(mod, "soft_shrink")
    True
    """
    try:
        from hqsdeblur._ext import _elementwise
    except ImportError:
        return None
    return _elementwise
