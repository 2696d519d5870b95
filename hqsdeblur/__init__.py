"""hqsdeblur: blind image deblurring by half-quadratic splitting, classical and
unrolled (DUBLID), with hand-written adjoints and NumPy / Cython / Numba /
CuPy backends."""

__version__ = "0.1.0"

from .backend import available_backends, get_backend, use_backend  # noqa: F401
from .deblur import deblur  # noqa: F401
from .nonblind import deconvolve  # noqa: F401
from .tv import blind_deconvolve  # noqa: F401
from .errors import (  # noqa: F401
    BackendError,
    HqsdeblurError,
    InputError,
    ModelError,
    OutputError,
)
