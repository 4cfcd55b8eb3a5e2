"""`python -m easyphoto_core ...`: the command-line interface (see cli.py)."""

from __future__ import annotations

import sys

from easyphoto_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
