"""`python -m bnexp` is the `bnexp` command."""

from bnexp.cli import main

main()
