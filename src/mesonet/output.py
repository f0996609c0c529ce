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

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from mesonet.destinations import check_output_file, replacing
from mesonet.errors import InputError
from mesonet.inputs import Limits, discover, media_only_below
from mesonet.pipeline import Detector
from mesonet.results import MediaResult, csv_header, json_record, safe_text, to_csv_line

_STATUS_STYLE = {"ok": "", "no_face": "yellow", "error": "red"}
RESULTS = "results file"
ELLIPSIS = "…"
_VERDICT_STYLE = {"likely real": "green", "uncertain": "yellow", "likely forged": "bold red"}


def shorten_path(path: str, width: int) -> str:
    """``path`` in at most ``width`` characters, keeping its distinctive end: the file name
    and as many of its parent folders as fit, after an ellipsis (``…/df/df00204.jpg``)."""
    if len(path) <= width:
        return path
    parts = path.replace(os.sep, "/").split("/")
    kept = parts[-1]
    if len(kept) + 2 > width:  # the name alone is too long: keep its end (the extension)
        return ELLIPSIS + kept[-(width - 1) :] if width > 1 else ELLIPSIS
    for part in reversed(parts[:-1]):
        if len(part) + 1 + len(kept) + 2 > width:
            break
        kept = f"{part}/{kept}"
    return f"{ELLIPSIS}/{kept}"


def path_column_width(
    total: int, other_columns: Iterable[int], *, floor: int = 24, per_column: int = 3
) -> int:
    """Room for a path column in a table ``total`` characters wide whose other columns need
    ``other_columns`` characters each: what the others and the borders (``per_column``
    characters a column: 3 for rich's boxed tables, 2 for :func:`plain_table`) leave, at
    least ``floor`` (a narrower terminal then wraps the other columns instead)."""
    others = list(other_columns)
    return max(floor, total - per_column * (len(others) + 1) - 1 - sum(others))


def plain_table(**kwargs) -> Table:
    """A table with a rule under its header and no other lines: two characters between
    columns instead of three, so more of a path or a name fits in 80 columns."""
    return Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, **kwargs)


def common_folder(paths: list[str]) -> str | None:
    """The folder every path lies in, when there is one worth naming (not ``.`` or ``/``)."""
    try:
        folder = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
    except ValueError:  # absolute and relative paths mixed
        return None
    return folder if folder not in ("", ".", os.sep, "..") else None


def _summary_table(results: list[MediaResult], threshold: float, width: int) -> Group:
    """One row per result. File paths are given relative to the folder they share (named
    above the table) and shortened from the left to fit ``width`` columns, keeping their
    ends."""
    names = [safe_text(r.path) for r in results]
    heading = [Text(f"threshold {threshold:.3f} (fake when p >= threshold)")]
    folder = common_folder(names)
    if folder is not None:
        names = [os.path.relpath(n, folder) for n in names]
        heading.append(Text(f"files in {shorten_path(folder, width - 10)}{os.sep}"))
    table = plain_table()
    rows = [_summary_row(r) for r in results]
    headers: tuple[str, ...] = ("file", "kind", "verdict", "p(fake)", "faces", "detail")
    if not any(row[5] for row in rows):  # images only, all fine: no detail to show
        headers, rows = headers[:5], [row[:5] for row in rows]
    natural = [
        max(
            [
                len(h),
                *(Text.from_markup(row[i]).cell_len if i == 2 else len(row[i]) for row in rows),
            ]
        )
        for i, h in enumerate(headers)
    ]
    # the detail column wraps at words; give it up to 16 characters before squeezing paths
    room = path_column_width(
        width, [*natural[1:5], *(min(n, 16) for n in natural[5:])], per_column=2
    )
    paths = [shorten_path(n, room) for n in names]
    for column in headers:
        if column == "file":
            longest = max((len(p) for p in paths), default=4)
            table.add_column(column, no_wrap=True, min_width=min(longest, room))
        else:
            table.add_column(column, justify="right" if column == "p(fake)" else "left")
    for path, row in zip(paths, rows, strict=True):
        # file names and messages are shown as they are, never read as rich markup
        table.add_row(Text(path), *row[1:5], *(Text(cell) for cell in row[5:]))
    return Group(*heading, table)


def _summary_row(r: MediaResult) -> tuple[str, ...]:
    """The cells of one result: file, kind, verdict (markup), p(fake), faces, detail.

    The verdict in words (``likely forged`` in bold red when the label is fake, ``likely
    real`` in green, ``uncertain`` in yellow); the label itself is p(fake) against the
    threshold in the table's title."""
    if r.status == "ok":
        words = r.verdict or ("likely forged" if r.label == "fake" else "likely real")
        verdict = f"[{_VERDICT_STYLE.get(words, '')}]{words}[/]"
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
    faces = str(len(r.faces))
    if r.kind == "video" and r.tracks:
        deciding = sum(t.eligible for t in r.tracks)
        faces = f"{len(r.tracks)} track" + ("" if len(r.tracks) == 1 else "s")
        faces += f", {deciding} can decide"
        decisive = r.decisive_track
        if decisive is not None:
            detail += f"; track {decisive.id} ({decisive.share:.0%} of frames) decides"
    return (r.path, r.kind or "?", verdict, p, faces, safe_text(detail))


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

    ``output`` is checked and opened before any input is analysed (and the annotated copies'
    names, when the detector writes them): an unusable one, or one of the inputs, raises
    :class:`~mesonet.destinations.OutputError` (exit code 2), a failure while writing one
    with exit code 1. It is written beside and renamed over ``output`` once complete.

    Raises :class:`InputError` when nothing was found because the media of a folder sit in
    its sub-folders and ``recursive`` is off: an empty result would hide the mistake.
    """
    paths = list(paths)
    if output is not None:  # a bad name fails before the folders are listed
        check_output_file(output, RESULTS)
    items = list(discover(paths, recursive=recursive, limits=limits))
    if output is not None:  # never one of the inputs (`predict vic -o vic/a.jpg`)
        check_output_file(output, RESULTS, inputs=[*paths, *(item.path for item in items)])
    annotate_dir = getattr(detector, "annotate_dir", None)
    if annotate_dir is not None:
        from mesonet.annotate import check_annotated_outputs

        check_annotated_outputs(annotate_dir, [item.path for item in items])
    if not items:
        below = [] if recursive else [p for p in map(Path, paths) if media_only_below(p)]
        if below:
            shown = ", ".join(safe_text(str(p)) for p in below)
            raise InputError(
                f"no images or videos in {shown} itself, but its sub-folders have some: "
                "add --recursive (-r) to analyse them"
            )
        err.print("[yellow]no images or videos found in the given paths[/]")
    failed = 0
    collected: list[MediaResult] = []
    with ExitStack() as stack:
        stream: TextIO | None = None
        target: TextIO | None = None
        if output is not None:  # written beside, renamed over `output` when complete
            target = stack.enter_context(replacing(output, RESULTS, text=True, newline=""))
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
                record = json_record(result.to_dict(), level=1)
                stream.write(("\n  " if n == 0 else ",\n  ") + record)
            else:
                collected.append(result)
            progress.advance(task)
        if fmt == "json" and stream is not None:
            stream.write("\n]\n" if items else "]\n")
        if fmt == "table" and target is not None:
            table = _summary_table(collected, detector.threshold, 160)
            Console(file=target, width=160, no_color=True).print(table)
    if fmt == "table" and output is None:
        out.print(_summary_table(collected, detector.threshold, out.width))
    if failed:
        err.print(f"[red]{failed} of {len(items)} inputs failed[/] (see their records)")
    return failed
