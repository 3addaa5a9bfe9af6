"""``python -m everstore.cli``: the ``everstore`` command."""

import sys

from . import main

sys.exit(main())
