"""``python -m entra_guard.cli``: the same as the ``entra-guard`` command."""

import sys

from entra_guard.cli import main

sys.exit(main())
