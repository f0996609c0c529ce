"""Parquet scan output: records go to a JSON Lines journal while the scan runs and are
merged into the Parquet file when it ends (see :mod:`mesonet.scan.writers`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from mesonet.destinations import check_output_file, replacing, writing
from mesonet.errors import MesonetError
from mesonet.results import TRACK_VIDEO_MODEL_KEYS, VIDEO_MODEL_KEYS
from mesonet.scan.writers.jsonl import JsonlWriter, _regular_or_missing, read_jsonl

VIDEO_KEYS = ("frames_analyzed", "duration_s", "aggregation", "tracks", "segments")
VIDEO_FACE_KEYS = ("frame", "time_s", "track")
OPTIONAL_FACE_KEYS = ("sharpness", "not_judged")  # absent from a face's JSON when None
PARQUET_HINT = "Parquet output needs pyarrow: pip install 'mesonet[ray]' (or pyarrow)"


def journal_path(path: Path) -> Path:
    """Where a Parquet output's records wait until the scan ends."""
    return path.with_name(path.name + ".journal.jsonl")


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.parquet  # noqa: F401 - the submodules are used through `pyarrow`
    except ImportError as exc:
        raise MesonetError(PARQUET_HINT) from exc
    return pyarrow


def parquet_schema() -> Any:
    """The result record as a Parquet schema (video-only fields null for images, the video
    model's fields null without one)."""
    pa = _pyarrow()
    face = pa.struct(
        [
            ("box", pa.list_(pa.float64())),
            ("confidence", pa.float64()),
            ("fake_probability", pa.float64()),
            ("frame", pa.int64()),
            ("time_s", pa.float64()),
            ("track", pa.int64()),
            ("sharpness", pa.float64()),  # this and below: can the face be judged
            ("judged", pa.bool_()),
            ("not_judged", pa.string()),
        ]
    )
    window = pa.struct(
        [
            ("start_s", pa.float64()),
            ("end_s", pa.float64()),
            ("temporal_probability", pa.float64()),
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
            ("frame_probability", pa.float64()),  # this and below: with a video model
            ("temporal_probability", pa.float64()),
            ("temporal_windows", pa.int64()),
            ("evidence", pa.string()),
            ("windows", pa.list_(window)),
            ("not_judged", pa.string()),
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
            ("backend", pa.string()),  # the engine that scored it
            ("faces", pa.list_(face)),
            ("frames_analyzed", pa.int64()),
            ("duration_s", pa.float64()),
            ("aggregation", pa.string()),
            ("tracks", pa.list_(track)),
            ("video_model", pa.string()),  # this and the next two: with a video model
            ("video_rule", pa.string()),
            ("evidence", pa.string()),
            ("segments", pa.list_(segment)),
            ("note", pa.string()),  # why the verdict is uncertain: no face could be judged
            ("error", pa.string()),
        ]
    )


def _to_row(record: dict[str, Any], schema: Any) -> dict[str, Any]:
    row = {name: record.get(name) for name in schema.names}
    for key in ("faces", "tracks", "segments"):
        fields = [f.name for f in schema.field(key).type.value_type]
        row[key] = [{f: item.get(f) for f in fields} for item in record.get(key) or []]
    return row


def _track(row: dict[str, Any]) -> dict[str, Any]:
    """A track as in the JSON record: the video model's keys only where they have a value."""
    optional = (*TRACK_VIDEO_MODEL_KEYS, "not_judged")
    track = {k: v for k, v in row.items() if v is not None or k not in optional}
    if track.get("windows") is not None:
        track["windows"] = [dict(w) for w in track["windows"]]
    return track


def record_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """A Parquet row back in the record's JSON shape (as ``MediaResult.to_dict`` makes it)."""
    video = row.get("kind") == "video"
    record = {
        key: row.get(key)
        for key in ("path", "kind", "status", "fake_probability", "label", "verdict", "model")
    }
    record["backend"] = row.get("backend")
    faces = row.get("faces") or []
    record["faces"] = [
        {
            k: v
            for k, v in f.items()
            if (video or k not in VIDEO_FACE_KEYS) and not (v is None and k in OPTIONAL_FACE_KEYS)
        }
        for f in faces
    ]
    if video:
        for key in VIDEO_KEYS:
            record[key] = row.get(key)
        record["tracks"] = [_track(t) for t in row.get("tracks") or []]
        if row.get("video_model") is not None:  # keys in the place MediaResult.to_dict puts them
            record.pop("segments")
            record.update({key: row.get(key) for key in VIDEO_MODEL_KEYS})
        record["segments"] = [dict(s) for s in row.get("segments") or []]
    if row.get("note") is not None:
        record["note"] = row.get("note")
    if row.get("status") in ("error", "no_face"):  # what failed, or why there is no face
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


def _in_schema(table: Any, schema: Any) -> Any:
    """``table`` in ``schema``; a file written before some fields existed (the video model's)
    gains them, null."""
    pa = _pyarrow()
    if table.schema.equals(schema):
        return table
    try:
        return table.cast(schema)
    except (ValueError, pa.ArrowException):  # other fields: row by row, missing ones null
        return pa.Table.from_pylist([_to_row(r, schema) for r in table.to_pylist()], schema=schema)


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
        self.path = check_output_file(path, "results file")
        self._journal = JsonlWriter(journal_path(self.path))

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        self._journal.write(records)

    def discard(self) -> None:
        """Remove every record (a scan that starts over): the journal's and the file."""
        self._journal.discard()
        with writing(self.path, "results file"):
            self.path.unlink(missing_ok=True)

    def compact(self) -> None:
        """Nothing to do: the merge keeps one record per path, the journal's last."""

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
            with writing(self.path, "results file"):
                if self.path.exists():
                    old = _last_per_path(_in_schema(pa.parquet.read_table(self.path), table.schema))
                    if new:
                        fresh = pa.array(sorted(r["path"] for r in new), pa.string())
                        keep = pa.compute.invert(pa.compute.is_in(old["path"], value_set=fresh))
                        old = old.filter(keep)
                    table = pa.concat_tables([old, table])
            with replacing(self.path, "results file") as handle:  # whole, or the old file
                pa.parquet.write_table(table, handle)
        journal.unlink(missing_ok=True)

    def __enter__(self) -> ParquetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
