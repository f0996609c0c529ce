"""Scanning a whole media collection into one results file: resumable, locally or on Ray.

::

    from mesonet.scan import scan
    summary = scan("collection/", "results.jsonl", recursive=True, faces="none")
    summary = scan("files.csv", "results.parquet", engine="ray", address="auto", workers=8)

The output holds one record per input (the schema in docs/architecture.md), appended and
flushed as work finishes; a rerun skips the inputs it already holds, so an interrupted scan
resumes where it stopped and a finished one is left as it is. The settings the records were
made with (model weights and card, faces, threshold, frames...) are kept beside the output
(:mod:`mesonet.scan.state`): a rerun with other ones is refused unless it restarts, and
``retry_errors`` analyses the inputs whose record is an error again. The local engine never
imports Ray.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesonet.destinations import OutputError, check_output_file
from mesonet.errors import MesonetError
from mesonet.scan.analyse import DetectorSpec, analyse
from mesonet.scan.sources import (
    absolute,
    list_source,
    pending,
    read_manifest,
    record_path,
    work_units,
)
from mesonet.scan.state import check_resume, scan_settings, settings_path, write_settings
from mesonet.scan.writers import (
    existing_records,
    open_writer,
    output_format,
    read_records,
)

__all__ = [
    "ENGINES",
    "DetectorSpec",
    "ScanSummary",
    "analyse",
    "list_source",
    "read_manifest",
    "read_records",
    "scan",
]

ENGINES = ("local", "ray")

Progress = Callable[[int, int], None]
"""Called with (records written by this run, inputs this run has to analyse)."""


@dataclass
class ScanSummary:
    """What a scan did."""

    output: Path
    engine: str
    listed: int  # inputs in the source
    skipped: int  # inputs that already had a record in the output
    written: int  # records this run wrote
    statuses: dict[str, int] = field(default_factory=dict)  # this run's records by status
    failed: int = 0  # inputs of the source whose record (old or new) is an error
    lost: list[str] = field(default_factory=list)  # inputs left without a record: rerun
    retried: int = 0  # inputs whose error record this run analysed again (retry_errors)
    seconds: float = 0.0
    first_record_s: float | None = None  # start-up: seconds until the first record arrived

    @property
    def files_per_s(self) -> float:
        """Records written per second of this run."""
        return self.written / self.seconds if self.seconds > 0 else 0.0


def scan(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    engine: str = "local",
    model: str | os.PathLike[str] | None = None,
    recursive: bool = False,
    root: str | os.PathLike[str] | None = None,
    address: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    restart: bool = False,
    retry_errors: bool = False,
    **detector_options: Any,
) -> ScanSummary:
    """Analyse every input of ``source`` that ``output`` has no record of yet.

    Args:
        source: a folder (media files in it; ``recursive`` descends) or a manifest: a
            ``.csv`` with a ``path`` column, or a text file with one path a line (relative
            paths start from ``root``, default the manifest's folder).
        output: ``.jsonl`` or ``.parquet``; created, or resumed when it exists.
        engine: ``"local"`` (this process) or ``"ray"`` (a Ray Data pipeline, one machine or
            a cluster; needs ``mesonet[ray]``).
        model: bundled model name or ``.safetensors`` path (default: the bundled default).
        address: the Ray cluster to join (ray engine; default: start one on this machine).
        workers: Ray actors analysing files (ray engine; default: one per cluster CPU).
        progress: called after each write with (written, to do).
        restart: discard the records ``output`` holds and scan everything again (needed to
            scan into an output made with other settings).
        retry_errors: analyse again the inputs whose record is an error (the new record
            replaces it).
        detector_options: passed to :class:`~mesonet.pipeline.Detector` (``faces``,
            ``frames``, ``fps``, ``aggregate``, ``threshold``, ``batch_size``, ...).

    Raises:
        MesonetError: an unusable source, output, engine or option (before any work), or an
            output holding results made with another model or other settings.
    """
    if engine not in ENGINES:
        raise MesonetError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if workers is not None and workers < 1:
        raise MesonetError(f"workers must be at least 1, not {workers}")
    if engine == "local" and (workers or 1) > 1:
        raise MesonetError("workers is for the ray engine; the local engine is one process")
    if address is not None and engine != "ray":
        raise MesonetError("address is for the ray engine (a Ray cluster to join)")
    output = Path(output)
    output_format(output)
    check_output_file(output, "results file", inputs=[source])
    check_output_file(settings_path(output), "scan settings", inputs=[source])
    if root is not None and not Path(root).is_dir():
        raise MesonetError(f"root {root} is not an existing folder")
    if "annotate_dir" in detector_options:
        raise MesonetError("a scan writes records only; use `mesonet predict --annotate`")
    spec = DetectorSpec.create(model, **detector_options)
    detector = spec.build()  # checks the model and options here, before any work
    items = list_source(source, recursive=recursive, root=root)
    _refuse_inputs_as_output(output, items)
    settings = scan_settings(detector)
    writer = open_writer(output)  # locks the output first: no other scan appends meanwhile
    statuses: Counter[str] = Counter()
    seen: set[str] = set()
    first: list[float] = []  # when the first record arrived
    try:
        existing = existing_records(output)
        if existing:
            models = {m for _, m in existing.values() if m}
            check_resume(output, models, settings, restart=restart)
        if restart and existing:
            writer.discard()
            existing = {}
        write_settings(output, settings)  # before the first record
        retry = {p for p, (status, _) in existing.items() if retry_errors and status == "error"}
        todo = pending(items, set(existing) - retry)
        start = time.perf_counter()

        def emit(records: list[dict[str, Any]]) -> None:
            if not first:
                first.append(time.perf_counter())
            writer.write(records)
            for record in records:
                statuses[record["status"]] += 1
                seen.add(record["path"])
            if progress is not None:
                progress(len(seen), len(todo))

        if progress is not None:
            progress(0, len(todo))
        if engine == "ray":
            from mesonet.scan.ray_engine import run_ray

            units = list(work_units(todo, detector.batch_size))
            run_ray(spec, units, emit, address=address, workers=workers)
        else:
            from mesonet.scan.local import run_local

            run_local(detector, todo, emit)
        if retry:
            writer.compact()  # one record per input: the retried ones replace their errors
    finally:
        writer.close()
    earlier_errors = sum(
        1
        for item in items
        if existing.get(key := record_path(item.path), ("", ""))[0] == "error" and key not in retry
    )
    return ScanSummary(
        output=output,
        engine=engine,
        listed=len(items),
        skipped=len(items) - len(todo),
        written=sum(statuses.values()),
        statuses=dict(statuses),
        failed=earlier_errors + statuses.get("error", 0),
        lost=[path for item in todo if (path := record_path(item.path)) not in seen],
        seconds=time.perf_counter() - start,
        first_record_s=first[0] - start if first else None,
        retried=len(retry & {record_path(item.path) for item in items}),
    )


def _refuse_inputs_as_output(output: Path, items: list[Any]) -> None:
    """Refuse (exit 2) an output, or its Parquet journal, that the source lists as an input."""
    from mesonet.scan.writers import journal_path

    listed = {item.path for item in items}
    for target in (output, journal_path(output)):
        if absolute(target) in listed:
            raise OutputError(
                f"the results file {target} is one of the scan's inputs: writing it would "
                "destroy it; give another name"
            )
