"""Exception hierarchy of hqsdeblur.

Every error the package raises on purpose derives from :class:`HqsdeblurError`,
so a caller can catch them all at once. Each subclass also derives from the
built-in exception a Python user would expect (``ValueError`` for bad input,
``OSError`` for failed output, ...), so code written against the built-ins
keeps working.

Messages are one sentence and name the file involved when there is one.

Example
-------
>>> from hqsdeblur.errors import InputError, HqsdeblurError
>>> try:
...     raise InputError("blurred.png: image contains 3 NaN values.")
... except ValueError as err:
...     isinstance(err, HqsdeblurError)
True
"""

__all__ = [
    "HqsdeblurError",
    "InputError",
    "ModelError",
    "OutputError",
    "BackendError",
]


class HqsdeblurError(Exception):
    """Base class of every error raised on purpose by hqsdeblur."""


class InputError(HqsdeblurError, ValueError):
    """An input image, kernel, file or option is invalid."""


class ModelError(HqsdeblurError, ValueError):
    """A model checkpoint or its configuration is invalid or incompatible."""


class OutputError(HqsdeblurError, OSError):
    """A result could not be written (missing directory, disk full, refusal
    to overwrite, output equal to an input, ...)."""


class BackendError(HqsdeblurError, RuntimeError):
    """A compute backend (numba, dask, GPU, ...) is missing or failed."""
