"""Scan output files: JSON Lines or Parquet, append-only, flushed per batch, resumable.

``.jsonl``: one record a line (the schema in docs/architecture.md), appended and flushed as
each batch of results arrives. A line cut short by a kill is dropped on the next run (its input is
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

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from mesonet.errors import MesonetError
from mesonet.scan.writers.jsonl import JsonlWriter, read_jsonl
from mesonet.scan.writers.parquet import (
    PARQUET_HINT,
    VIDEO_FACE_KEYS,
    VIDEO_KEYS,
    ParquetWriter,
    journal_path,
    parquet_schema,
    read_parquet,
    record_from_row,
    records_table,
)

__all__ = [
    "OUTPUT_FORMATS",
    "PARQUET_HINT",
    "VIDEO_FACE_KEYS",
    "VIDEO_KEYS",
    "JsonlWriter",
    "ParquetWriter",
    "RecordWriter",
    "existing_records",
    "journal_path",
    "open_writer",
    "output_format",
    "parquet_schema",
    "read_jsonl",
    "read_parquet",
    "read_records",
    "record_from_row",
    "records_table",
]

OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def output_format(path: str | os.PathLike[str]) -> str:
    """``'jsonl'`` or ``'parquet'`` from the output's extension."""
    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise MesonetError(
            f"cannot tell the output format of {path}: name it .jsonl (JSON Lines) or .parquet"
        )
    return fmt


class RecordWriter(Protocol):
    """Appends result records; ``write`` flushes, ``discard`` empties the output (a scan
    that starts over), ``compact`` keeps the last record of each path, ``close`` makes the
    output final."""

    path: Path

    def write(self, records: Sequence[dict[str, Any]]) -> None: ...

    def discard(self) -> None: ...

    def compact(self) -> None: ...

    def close(self) -> None: ...


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
