"""``python -m transferkit.cli`` runs the command line, as ``python -m transferkit`` does."""

import sys

from ._main import main

sys.exit(main())
