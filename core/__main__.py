"""``python -m anyxp`` runs the command line."""

import sys

from anyxp.cli import main

sys.exit(main())
