"""``python -m mesonet.cli``: the `mesonet` command."""

from mesonet.cli import main

main()
