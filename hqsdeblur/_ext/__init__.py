"""Compiled extension modules of :mod:`hqsdeblur`.

``_elementwise`` (Cython + OpenMP) holds the elementwise HQS kernels; it is
optional at run time: import it through :func:`load_elementwise`, which
returns None when the package was used from a source tree without building.
"""

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
