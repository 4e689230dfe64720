"""``python -m fastdeberta`` runs the command line interface."""

from __future__ import annotations

import sys

from fastdeberta.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
