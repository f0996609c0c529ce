"""Running a Detector over many inputs and writing the records: table, JSON, JSON Lines, CSV.

Shared by ``mesonet predict`` and other batch front ends; the library never prints, this
module writes only to the streams it is given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from mesonet.destinations import GuardedFile, open_output
from mesonet.inputs import Limits, discover
from mesonet.pipeline import Detector
from mesonet.results import MediaResult, csv_header, safe_text, to_csv_line

_STATUS_STYLE = {"ok": "", "no_face": "yellow", "error": "red"}


def _summary_table(results: list[MediaResult], threshold: float) -> Table:
    table = Table(
        title=f"threshold {threshold:.3f} (fake when p >= threshold)", title_justify="left"
    )
    for column in ("file", "kind", "verdict", "p(fake)", "faces", "detail"):
        table.add_column(
            column, overflow="fold", justify="right" if column == "p(fake)" else "left"
        )
    for r in results:
        if r.status == "ok":
            verdict = "[bold red]FAKE[/]" if r.label == "fake" else "[green]real[/]"
            p = f"{r.fake_probability:.3f}"
        else:
            verdict = f"[{_STATUS_STYLE[r.status]}]{r.status.replace('_', ' ')}[/]"
            p = "-"
        detail = r.error or ""
        if r.kind == "video" and r.status != "error":
            detail = f"{r.frames_analyzed} frames, {r.duration_s:.1f}s"
            if r.segments:
                spans = ", ".join(f"{s.start_s:.1f}-{s.end_s:.1f}s" for s in r.segments[:3])
                more = f" +{len(r.segments) - 3}" if len(r.segments) > 3 else ""
                detail += f"; flagged {spans}{more}"
        tracks = {f.track for f in r.faces} if r.kind == "video" else None
        faces = str(len(r.faces))
        if tracks:
            faces = f"{len(tracks)} track" + ("" if len(tracks) == 1 else "s")
        # file names and messages are shown as they are, never read as rich markup
        table.add_row(
            Text(safe_text(r.path)), r.kind or "?", verdict, p, faces, Text(safe_text(detail))
        )
    return table


def write_results(
    detector: Detector,
    paths: Iterable[str | os.PathLike[str]],
    fmt: str,
    output: Path | None,
    recursive: bool,
    limits: Limits,
    out: Console,
    err: Console,
) -> int:
    """Analyse every input, stream its record in ``fmt`` and return how many failed.

    ``output`` is opened before any input is analysed: an unusable one raises
    :class:`~mesonet.destinations.OutputError` (exit code 2), a failure while writing one
    with exit code 1.
    """
    items = list(discover(paths, recursive=recursive, limits=limits))
    if not items:
        err.print("[yellow]no images or videos found in the given paths[/]")
    failed = 0
    collected: list[MediaResult] = []
    with ExitStack() as stack:
        stream: TextIO | None = None
        target: GuardedFile | None = None
        if output is not None:
            handle = open_output(output, "w", "results file", encoding="utf-8", newline="")
            target = stack.enter_context(GuardedFile(handle, output, "results file"))
        if fmt != "table":
            stream = target if target is not None else out.file
        progress = stack.enter_context(
            Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err,
                transient=True,
                disable=len(items) < 2,
            )
        )
        task = progress.add_task("analysing", total=len(items))
        if fmt == "csv" and stream is not None:
            stream.write(csv_header())
        if fmt == "json" and stream is not None:
            stream.write("[")
        for n, result in enumerate(detector.predict_items(items)):
            name = escape(safe_text(Path(result.path).name[:40]))
            progress.update(task, description=f"analysed {name}")
            failed += result.status == "error"
            if fmt == "jsonl" and stream is not None:
                stream.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
                stream.flush()
            elif fmt == "csv" and stream is not None:
                stream.write(to_csv_line(result))
                stream.flush()
            elif fmt == "json" and stream is not None:
                record = json.dumps(result.to_dict(), ensure_ascii=False, indent=2)
                stream.write(("\n" if n == 0 else ",\n") + record)
            else:
                collected.append(result)
            progress.advance(task)
        if fmt == "json" and stream is not None:
            stream.write("\n]\n" if items else "]\n")
        if fmt == "table" and target is not None:
            table = _summary_table(collected, detector.threshold)
            Console(file=target, width=160, no_color=True).print(table)
    if fmt == "table" and output is None:
        out.print(_summary_table(collected, detector.threshold))
    if failed:
        err.print(f"[red]{failed} of {len(items)} inputs failed[/] (see their records)")
    return failed
