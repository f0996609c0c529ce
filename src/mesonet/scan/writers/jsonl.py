"""JSON Lines scan output: one record a line, appended and flushed per batch; a line cut
short by a kill is dropped on the next run."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from mesonet.destinations import (
    OutputError,
    check_output_file,
    open_append,
    replacing,
    writing,
)
from mesonet.errors import MesonetError

try:  # advisory lock against two scans appending to one file (POSIX only)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

_LOCKED: weakref.WeakSet[JsonlWriter] = weakref.WeakSet()
"""The writers holding their file's lock in this process."""


def _release_in_child() -> None:
    """In a process forked from this one (another library's worker pool, a subprocess
    between fork and exec), let go of every scan output's file: its copy of the descriptor
    would keep the lock held (a flock belongs to the open file, shared by a fork) for as
    long as the child lives, and a later scan of that output would be refused. The
    descriptor is pointed at /dev/null, so the child's file objects stay valid."""
    for writer in list(_LOCKED):
        handle = getattr(writer, "_fh", None)
        if handle is None or handle.closed:
            continue
        with contextlib.suppress(OSError):
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, handle.fileno())
            os.close(null)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_release_in_child)


def _complete_end(fh: IO[bytes]) -> int:
    """Offset just after the file's last newline (0 if none): where complete lines end."""
    end = fh.seek(0, os.SEEK_END)
    position = end
    while position > 0:
        start = max(0, position - 65536)
        fh.seek(start)
        chunk = fh.read(position - start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


def _regular_or_missing(path: Path) -> bool:
    """True for a regular file, False for a missing one; ``OutputError`` for anything else
    (a device or a pipe would be read without end)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise OutputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise OutputError(
            f"{path} is not a regular file (a folder, device, pipe or socket): "
            "give a new file or a regular one"
        )
    return True


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a JSON Lines file; a last line without its newline (a write cut
    short) and lines that are not JSON objects are skipped."""
    if not _regular_or_missing(path):
        return
    with path.open("rb") as fh:
        end = _complete_end(fh)
        fh.seek(0)
        read = 0
        for number, line in enumerate(fh, start=1):
            read += len(line)
            if read > end:
                log.warning("%s: ignoring an unfinished last line (it will be redone)", path)
                return
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict) and isinstance(record.get("path"), str):
                yield record
            elif line.strip():
                log.warning("%s:%d: not a result record, ignored", path, number)


class JsonlWriter:
    """Appends records to a JSON Lines file, one flush per :meth:`write`.

    Opening drops an unfinished last line and takes an advisory lock, so a second scan
    writing the same file fails at once instead of interleaving.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = check_output_file(path, "results file")
        for _ in range(10):
            fh = self._open()
            try:
                if fcntl is not None:
                    try:
                        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError as exc:
                        raise MesonetError(
                            f"{self.path} is being written by another scan; wait for it or "
                            "choose another output"
                        ) from exc
                if not self._still_at_path(fh):
                    fh.close()  # removed (a merged journal) while we waited: open it anew
                    continue
                with writing(self.path, "results file"):
                    end = _complete_end(fh)
                    if end != fh.seek(0, os.SEEK_END):
                        fh.truncate(end)  # the unfinished line of a killed run
            except BaseException:
                fh.close()
                raise
            self._fh = fh
            _LOCKED.add(self)
            return
        raise MesonetError(f"{self.path} keeps being replaced by another scan; try again")

    def _open(self) -> IO[bytes]:
        # created if missing, never through a link or blocking on a pipe; read via seek
        return open_append(self.path, "results file")

    def _still_at_path(self, fh: IO[bytes]) -> bool:
        try:
            return os.path.samestat(os.fstat(fh.fileno()), os.stat(self.path))
        except FileNotFoundError:
            return False

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        """Append ``records`` and flush them to the operating system."""
        if not records:
            return
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        with writing(self.path, "results file"):
            self._fh.write(data.encode("utf-8"))
            self._fh.flush()

    def discard(self) -> None:
        """Remove every record (a scan that starts over), keeping the file and its lock."""
        with writing(self.path, "results file"):
            self._fh.truncate(0)
            self._fh.flush()

    def compact(self) -> None:
        """Keep the last record of each path (a retried input's replaces its error): the
        file is rewritten whole beside and renamed over, then reopened and locked again."""
        self.sync()
        last = {r["path"]: n for n, r in enumerate(read_jsonl(self.path))}  # two passes: only
        keep = set(last.values())  # a number a path is held in memory, not every record
        with replacing(self.path, "results file") as handle:
            for n, record in enumerate(read_jsonl(self.path)):
                if n in keep:
                    handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        old, self._fh = self._fh, self._open()
        with contextlib.suppress(OSError):
            old.close()
        if fcntl is not None:
            with contextlib.suppress(OSError):  # held by a scan started since: it appends
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def sync(self) -> None:
        """Flush to disk, keeping the file (and its lock)."""
        with writing(self.path, "results file"):
            self._fh.flush()
            with contextlib.suppress(OSError):
                os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Flush to disk and release the file (and its lock)."""
        if self._fh.closed:
            return
        try:
            self.sync()
        finally:
            with contextlib.suppress(OSError):
                self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
