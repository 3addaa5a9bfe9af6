"""``python -m everstore.cli``: the ``everstore`` command."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
