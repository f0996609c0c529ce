"""Scan output files: JSON Lines or Parquet, append-only, flushed per batch, resumable.

``.jsonl``: one record a line (DESIGN.md's schema), appended and flushed as each batch of
results arrives. A line cut short by a kill is dropped on the next run (its input is
analysed again), so the file never holds a half record followed by more data.

``.parquet``: a Parquet file cannot be appended to, so records go to a JSON Lines journal
beside it (``OUT.journal.jsonl``, same rules) while the scan runs; when the scan ends, even
by an exception or Ctrl+C, the journal is merged into ``OUT`` (written to a temporary file,
then renamed over it) and removed. A killed scan leaves the journal, which the next run
reads and merges.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from mesonet.errors import MesonetError

try:  # advisory lock against two scans appending to one file (POSIX only)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
VIDEO_KEYS = ("frames_analyzed", "duration_s", "aggregation", "segments")
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


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a JSON Lines file; a last line without its newline (a write cut
    short) and lines that are not JSON objects are skipped."""
    if not path.exists():
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
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+b")  # created if missing; r+ semantics below via seek
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    raise MesonetError(
                        f"{self.path} is being written by another scan; wait for it or "
                        "choose another output"
                    ) from exc
            end = _complete_end(fh)
            if end != fh.seek(0, os.SEEK_END):
                fh.truncate(end)  # the unfinished line of a killed run
        except BaseException:
            fh.close()
            raise
        self._fh = fh

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        """Append ``records`` and flush them to the operating system."""
        if not records:
            return
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        self._fh.write(data.encode("utf-8"))
        self._fh.flush()

    def close(self) -> None:
        """Flush to disk and release the file."""
        if self._fh.closed:
            return
        self._fh.flush()
        with contextlib.suppress(OSError):
            os.fsync(self._fh.fileno())
        self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- Parquet


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401 - the submodule is used through `pyarrow`
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
            ("model", pa.string()),
            ("faces", pa.list_(face)),
            ("frames_analyzed", pa.int64()),
            ("duration_s", pa.float64()),
            ("aggregation", pa.string()),
            ("segments", pa.list_(segment)),
            ("error", pa.string()),
        ]
    )


def _to_row(record: dict[str, Any], schema: Any) -> dict[str, Any]:
    row = {name: record.get(name) for name in schema.names}
    for key in ("faces", "segments"):
        fields = [f.name for f in schema.field(key).type.value_type]
        row[key] = [{f: item.get(f) for f in fields} for item in record.get(key) or []]
    return row


def record_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """A Parquet row back in the record's JSON shape (as ``MediaResult.to_dict`` makes it)."""
    video = row.get("kind") == "video"
    record = {
        key: row.get(key)
        for key in ("path", "kind", "status", "fake_probability", "label", "model")
    }
    faces = row.get("faces") or []
    record["faces"] = [
        dict(f) if video else {k: v for k, v in f.items() if k not in VIDEO_FACE_KEYS}
        for f in faces
    ]
    if video:
        for key in VIDEO_KEYS:
            record[key] = row.get(key)
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
    if not path.exists():
        return
    try:
        table = pa.parquet.read_table(path, columns=list(columns) if columns else None)
    except (OSError, pa.ArrowException) as exc:
        raise MesonetError(f"cannot read {path} as Parquet ({exc}); choose another output") from exc
    for batch in table.to_batches():
        for row in batch.to_pylist():
            yield row if columns else record_from_row(row)


class ParquetWriter:
    """Records to a journal while the scan runs; merged into the Parquet file on close."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        _pyarrow()  # fail before any work when pyarrow is missing
        self.path = Path(path)
        self._journal = JsonlWriter(journal_path(self.path))

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        self._journal.write(records)

    def close(self) -> None:
        """Merge the journal into the Parquet file (atomically) and remove it."""
        pa = _pyarrow()
        self._journal.close()
        journal = self._journal.path
        new = list(read_jsonl(journal))
        if new or not self.path.exists():
            table = records_table(new)
            if self.path.exists():
                old = pa.parquet.read_table(self.path).cast(table.schema)
                table = pa.concat_tables([old, table])
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            pa.parquet.write_table(table, temporary)
            os.replace(temporary, self.path)
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
