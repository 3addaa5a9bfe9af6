"""``python -m everstore``: the ``everstore`` command."""

import sys

from .cli import main

sys.exit(main())
