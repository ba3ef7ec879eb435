"""`python -m asrtop ...`: the same as the `asrtop` command."""

import sys

from asrtop.cli import main

sys.exit(main())
