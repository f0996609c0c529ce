"""Scan output files: JSON Lines or Parquet, append-only, flushed per batch, resumable.

``.jsonl``: one record a line (DESIGN.md's schema), appended and flushed as each batch of
results arrives. A line cut short by a kill is dropped on the next run (its input is
analysed again), so the file never holds a half record followed by more data.

``.parquet``: a Parquet file cannot be appended to, so records go to a JSON Lines journal
beside it (``OUT.journal.jsonl``, same rules) while the scan runs; when the scan ends, even
by an exception or Ctrl+C, the journal is merged into ``OUT`` (written to a temporary file,
then renamed over it) and removed. A killed scan leaves the journal, which the next run
reads and merges. The merge keeps one record per path (the journal's when both hold one),
so a kill between the rename and the journal's removal duplicates nothing, and the lock is
held until the journal is gone, so a scan started meanwhile cannot write to a removed file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from mesonet.destinations import OutputError, check_output_file, writing
from mesonet.errors import MesonetError

try:  # advisory lock against two scans appending to one file (POSIX only)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
VIDEO_KEYS = ("frames_analyzed", "duration_s", "aggregation", "tracks", "segments")
VIDEO_FACE_KEYS = ("frame", "time_s", "track")
PARQUET_HINT = "Parquet output needs pyarrow: pip install 'mesonet[ray]' (or pyarrow)"


def output_format(path: str | os.PathLike[str]) -> str:
    """``'jsonl'`` or ``'parquet'`` from the output's extension."""
    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise MesonetError(
            f"cannot tell the output format of {path}: name it .jsonl (JSON Lines) or .parquet"
        )
    return fmt


def journal_path(path: Path) -> Path:
    """Where a Parquet output's records wait until the scan ends."""
    return path.with_name(path.name + ".journal.jsonl")


# --------------------------------------------------------------------------- JSON Lines


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


class RecordWriter(Protocol):
    """Appends result records; ``write`` flushes, ``close`` makes the output final."""

    path: Path

    def write(self, records: Sequence[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class JsonlWriter:
    """Appends records to a JSON Lines file, one flush per :meth:`write`.

    Opening drops an unfinished last line and takes an advisory lock, so a second scan
    writing the same file fails at once instead of interleaving.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = check_output_file(path, "results file", regular_only=True)
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
            return
        raise MesonetError(f"{self.path} keeps being replaced by another scan; try again")

    def _open(self) -> IO[bytes]:
        try:
            return self.path.open("a+b")  # created if missing; r+ semantics below via seek
        except OSError as exc:
            raise OutputError(
                f"cannot write the results file {self.path}: {exc.strerror or exc}"
            ) from None

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


# --------------------------------------------------------------------------- Parquet


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.parquet  # noqa: F401 - the submodules are used through `pyarrow`
    except ImportError as exc:
        raise MesonetError(PARQUET_HINT) from exc
    return pyarrow


def parquet_schema() -> Any:
    """The result record as a Parquet schema (video-only fields null for images)."""
    pa = _pyarrow()
    face = pa.struct(
        [
            ("box", pa.list_(pa.float64())),
            ("confidence", pa.float64()),
            ("fake_probability", pa.float64()),
            ("frame", pa.int64()),
            ("time_s", pa.float64()),
            ("track", pa.int64()),
        ]
    )
    track = pa.struct(
        [
            ("id", pa.int64()),
            ("frames", pa.int64()),
            ("share", pa.float64()),
            ("median_size", pa.float64()),
            ("confidence", pa.float64()),
            ("fake_probability", pa.float64()),
            ("eligible", pa.bool_()),
            ("decisive", pa.bool_()),
        ]
    )
    segment = pa.struct(
        [
            ("start_s", pa.float64()),
            ("end_s", pa.float64()),
            ("fake_probability", pa.float64()),
            ("track", pa.int64()),
        ]
    )
    return pa.schema(
        [
            ("path", pa.string()),
            ("kind", pa.string()),
            ("status", pa.string()),
            ("fake_probability", pa.float64()),
            ("label", pa.string()),
            ("verdict", pa.string()),
            ("model", pa.string()),
            ("faces", pa.list_(face)),
            ("frames_analyzed", pa.int64()),
            ("duration_s", pa.float64()),
            ("aggregation", pa.string()),
            ("tracks", pa.list_(track)),
            ("segments", pa.list_(segment)),
            ("error", pa.string()),
        ]
    )


def _to_row(record: dict[str, Any], schema: Any) -> dict[str, Any]:
    row = {name: record.get(name) for name in schema.names}
    for key in ("faces", "tracks", "segments"):
        fields = [f.name for f in schema.field(key).type.value_type]
        row[key] = [{f: item.get(f) for f in fields} for item in record.get(key) or []]
    return row


def record_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """A Parquet row back in the record's JSON shape (as ``MediaResult.to_dict`` makes it)."""
    video = row.get("kind") == "video"
    record = {
        key: row.get(key)
        for key in ("path", "kind", "status", "fake_probability", "label", "verdict", "model")
    }
    faces = row.get("faces") or []
    record["faces"] = [
        dict(f) if video else {k: v for k, v in f.items() if k not in VIDEO_FACE_KEYS}
        for f in faces
    ]
    if video:
        for key in VIDEO_KEYS:
            record[key] = row.get(key)
        record["tracks"] = [dict(t) for t in row.get("tracks") or []]
        record["segments"] = [dict(s) for s in row.get("segments") or []]
    if row.get("status") == "error":
        record["error"] = row.get("error")
    return record


def records_table(records: Iterable[dict[str, Any]]) -> Any:
    """A pyarrow Table of records in :func:`parquet_schema`."""
    pa = _pyarrow()
    schema = parquet_schema()
    return pa.Table.from_pylist([_to_row(r, schema) for r in records], schema=schema)


def read_parquet(path: Path, columns: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
    """The records of a Parquet output (only ``columns`` when given, as they are stored)."""
    pa = _pyarrow()
    if not _regular_or_missing(path):
        return
    try:
        table = pa.parquet.read_table(path, columns=list(columns) if columns else None)
    except (OSError, pa.ArrowException) as exc:
        raise MesonetError(f"cannot read {path} as Parquet ({exc}); choose another output") from exc
    for batch in table.to_batches():
        for row in batch.to_pylist():
            yield row if columns else record_from_row(row)


def _last_per_path(table: Any) -> Any:
    """``table`` with one row per path, the last (repairs files an older merge duplicated)."""
    paths = table["path"].to_pylist()
    last = {path: i for i, path in enumerate(paths)}
    if len(last) == len(paths):
        return table
    return table.take(sorted(last.values()))


class ParquetWriter:
    """Records to a journal while the scan runs; merged into the Parquet file on close."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        _pyarrow()  # fail before any work when pyarrow is missing
        self.path = check_output_file(path, "results file", regular_only=True)
        self._journal = JsonlWriter(journal_path(self.path))

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        self._journal.write(records)

    def close(self) -> None:
        """Merge the journal into the Parquet file (atomically) and remove it.

        Idempotent: a path the journal holds replaces the Parquet file's record of it. The
        journal's lock is held until the journal is removed.
        """
        try:
            self._merge()
        finally:
            self._journal.close()

    def _merge(self) -> None:
        pa = _pyarrow()
        journal = self._journal.path
        self._journal.sync()
        new = list({r["path"]: r for r in read_jsonl(journal)}.values())  # the last per path
        if new or not self.path.exists():
            table = records_table(new)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            with writing(self.path, "results file"):
                if self.path.exists():
                    old = _last_per_path(pa.parquet.read_table(self.path).cast(table.schema))
                    if new:
                        fresh = pa.array(sorted(r["path"] for r in new), pa.string())
                        keep = pa.compute.invert(pa.compute.is_in(old["path"], value_set=fresh))
                        old = old.filter(keep)
                    table = pa.concat_tables([old, table])
                try:
                    pa.parquet.write_table(table, temporary)
                    os.replace(temporary, self.path)
                except BaseException:
                    temporary.unlink(missing_ok=True)
                    raise
        journal.unlink(missing_ok=True)

    def __enter__(self) -> ParquetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- reading


def open_writer(path: str | os.PathLike[str]) -> JsonlWriter | ParquetWriter:
    """The writer for ``path``'s format (by extension)."""
    path = Path(path)
    return ParquetWriter(path) if output_format(path) == "parquet" else JsonlWriter(path)


def read_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every complete record of a scan output (a Parquet file's journal included)."""
    path = Path(path)
    if output_format(path) == "jsonl":
        yield from read_jsonl(path)
        return
    yield from read_parquet(path)
    yield from read_jsonl(journal_path(path))


def existing_records(path: str | os.PathLike[str]) -> dict[str, tuple[str, str]]:
    """``path -> (status, model)`` of the records already in a scan output."""
    path = Path(path)
    if output_format(path) == "jsonl":
        rows: Iterable[dict[str, Any]] = read_jsonl(path)
    else:
        rows = (
            *read_parquet(path, columns=("path", "status", "model")),
            *read_jsonl(journal_path(path)),
        )
    return {r["path"]: (r.get("status") or "", r.get("model") or "") for r in rows}
