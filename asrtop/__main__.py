"""`python -m asrtop ...`: the same as the `asrtop` command."""

from asrtop.cli import entry

entry()
