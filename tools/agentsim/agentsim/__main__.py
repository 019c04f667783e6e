"""`python -m agentsim`: the command line (see agentsim.cli)."""

import sys

from agentsim.cli import main

sys.exit(main())
