"""``python -m hqsdeblur``: the same as the ``hqsdeblur`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
