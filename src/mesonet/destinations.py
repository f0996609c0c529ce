"""Where results go: outputs checked before any work, write failures as one-line errors.

A bad output (a folder named as a file, a device, a read-only place, a full disk) must not
cost a whole run and then end in a traceback: it is refused before the first input is
analysed (exit code 2, a usage error), and a failure while writing (exit code 1, an I/O
error) says which file and why.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from mesonet.errors import MesonetError

EXIT_USAGE, EXIT_IO = 2, 1


class OutputError(MesonetError):
    """An output that cannot be written; ``exit_code`` 2 when refused before any work,
    1 when writing failed part way."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def check_output_file(
    path: str | os.PathLike[str], what: str = "output", *, regular_only: bool = False
) -> Path:
    """Refuse (``OutputError``, exit 2) an output file that is a folder, a broken link or,
    with ``regular_only``, anything but a regular file or a new one (a device or a pipe
    would be read without end); create its folder. Returns the path."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise OutputError(f"the {what} {path} is a broken symbolic link") from None
        st = None
    except OSError as exc:
        raise OutputError(f"cannot use {path} as the {what}: {_reason(exc)}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputError(f"the {what} {path} is a folder: give a file name")
    if st is not None and regular_only and not stat.S_ISREG(st.st_mode):
        raise OutputError(
            f"the {what} {path} is not a regular file (a device, pipe or socket): "
            "give a new file or a regular one"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create the folder of the {what} {path}: {_reason(exc)}"
        ) from None
    return path


def check_output_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Create folder ``path`` and prove it writable, or raise ``OutputError`` (exit 2)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"the {what} {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to the {what} {path}: {_reason(exc)}") from None
    return path


def open_output(
    path: str | os.PathLike[str], mode: str = "w", what: str = "output", **kwargs: Any
) -> IO[Any]:
    """:func:`check_output_file`, then open it; failures are ``OutputError`` (exit 2)."""
    path = check_output_file(path, what)
    try:
        return path.open(mode, **kwargs)
    except OSError as exc:
        raise OutputError(f"cannot write the {what} {path}: {_reason(exc)}") from None


@contextlib.contextmanager
def writing(path: str | os.PathLike[str], what: str = "output") -> Iterator[None]:
    """Turn an ``OSError`` raised inside into ``OutputError`` (exit 1) naming ``path``."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"could not write the {what} {path}: {_reason(exc)}", EXIT_IO) from None


class GuardedFile:
    """A text file whose write, flush and close raise ``OutputError`` (exit 1), not OSError."""

    def __init__(self, handle: IO[str], path: Path, what: str = "output") -> None:
        self._handle = handle
        self.path = path
        self.what = what

    def write(self, text: str) -> int:
        with writing(self.path, self.what):
            return self._handle.write(text)

    def flush(self) -> None:
        with writing(self.path, self.what):
            self._handle.flush()

    def close(self) -> None:
        if self._handle.closed:
            return
        try:
            with writing(self.path, self.what):
                self._handle.close()
        finally:
            with contextlib.suppress(OSError):
                self._handle.close()  # a failed close leaves the descriptor open

    def isatty(self) -> bool:
        return False

    def __enter__(self) -> GuardedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
