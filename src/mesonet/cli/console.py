"""Where every command prints (results to stdout, progress and messages to stderr), and the
exit codes it ends with."""

from __future__ import annotations

from rich.console import Console

err = Console(stderr=True)
out = Console()

EXIT_OK, EXIT_FAILED_INPUTS, EXIT_USAGE = 0, 1, 2
