"""Ray's own notices kept off a scan's terminal; every other line of Ray's still shown.

Two lines came on every ``mesonet scan --engine ray`` and said nothing about the scan:

- a Python warning that token authentication is enabled for the local cluster (the safe
  default; its opposite, a warning that it is *disabled*, is kept), filtered by
  :func:`quiet_auth_notice` on Ray's logger;
- an error-level line of Ray's C++ core worker, written straight to file descriptor 2, that
  Ray Data's own actors have "constructor arguments in the object store and max_restarts
  > 0" (ray-project/ray#57733: Ray Data passes its context that way to every actor it
  starts). No setting silences that line alone (``RAY_BACKEND_LOG_LEVEL=fatal`` would hide
  every C++ error, in Ray's log files too), so :func:`without_notices` passes descriptor 2
  through a pipe for the scan's run and drops the lines matching :data:`NOTICES`, writing
  everything else through at once (a partial line, such as a progress bar, included).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator

AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
NOTICES = re.compile(
    rb"^\[[^\]]*\] core_worker\.cc:\d+: Actor with class name: .* has constructor arguments "
    rb"in the object store and max_restarts > 0\."
)
"""Lines of Ray's that :func:`without_notices` drops (a C++ log line starts with ``[``)."""


class _AuthEnabledNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


def quiet_auth_notice() -> None:
    """Drop Ray's notice that token authentication is on (once per process)."""
    logger = logging.getLogger(AUTH_LOGGER)
    if not any(isinstance(f, _AuthEnabledNotice) for f in logger.filters):
        logger.addFilter(_AuthEnabledNotice())


class _Pump:
    """Copies what is written to a pipe onto ``target`` (a file descriptor), line by line,
    without the lines matching ``drop``. A line that cannot be one of them (it does not
    start with ``[``) is written as it comes, before its end."""

    def __init__(self, source: int, target: int, drop: re.Pattern[bytes]) -> None:
        self.source, self.target, self.drop = source, target, drop
        self.held = b""  # the start of a line that may be dropped
        self.passing = False  # the current line has been written in part: write the rest

    def run(self) -> None:
        while chunk := os.read(self.source, 65536):
            self.feed(chunk)
        self.write(self.held)

    def write(self, data: bytes) -> None:
        # stderr gone: keep reading all the same, so no writer ever blocks on the pipe
        with contextlib.suppress(OSError):
            os.write(self.target, data)

    def feed(self, chunk: bytes) -> None:
        data, self.held = self.held + chunk, b""
        while data:
            end = data.find(b"\n") + 1
            piece, data = (data[:end], data[end:]) if end else (data, b"")
            if self.passing or not piece.startswith(b"["):
                self.write(piece)
                self.passing = not end
            elif not end:
                self.held = piece  # wait for the line's end to judge it
            elif not self.drop.search(piece):
                self.write(piece)


@contextlib.contextmanager
def without_notices(drop: re.Pattern[bytes] = NOTICES, fd: int = 2) -> Iterator[None]:
    """File descriptor ``fd`` (stderr) through a pipe that drops the lines matching
    ``drop`` while the block runs. Writes of this process only: processes started before
    (Ray's raylet and workers) keep their own stderr."""
    sys.stderr.flush()
    saved = os.dup(fd)
    read, write = os.pipe()
    os.dup2(write, fd)
    os.close(write)
    pump = threading.Thread(target=_Pump(read, saved, drop).run, daemon=True)
    pump.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)  # closes the pipe's last writer: the pump reads its end
        pump.join(timeout=5)
        if not pump.is_alive():  # else a child holds the pipe: leave the pump to drain it
            os.close(read)
            os.close(saved)
