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
from rich.padding import Padding
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from mesonet.backends import EXACT_BACKENDS
from mesonet.destinations import check_output_file, replacing
from mesonet.errors import InputError
from mesonet.inputs import Limits, discover, media_only_below, media_subfolders
from mesonet.pipeline import Detector
from mesonet.results import MediaResult, csv_header, json_record, safe_text, to_csv_line

_STATUS_STYLE = {"ok": "", "no_face": "yellow", "error": "red"}
RESULTS = "results file"
ELLIPSIS = "…"
_VERDICT_STYLE = {"likely real": "green", "uncertain": "yellow", "likely forged": "bold red"}


def plural(n: int, word: str) -> str:
    """``1 input``, ``2 inputs``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def check_paths_exist(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse (:class:`InputError`, exit 2, before any work) a path that names nothing: a
    mistyped name is a usage error, not a file that failed. A broken link or an unreadable
    file still gets its error record."""
    missing = [os.fspath(p) for p in paths if not os.path.lexists(p)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"no such file or folder: {safe_text(missing[0])}{more}")


def _tell_skipped_subfolders(paths: list, err: Console) -> None:
    """One line on stderr for each folder given whose sub-folders with media are skipped
    (no ``--recursive``), naming them."""
    for folder in map(Path, paths):
        skipped = media_subfolders(folder)
        if skipped:
            names = ", ".join(safe_text(p.name) + os.sep for p in skipped[:3])
            names += " ..." if len(skipped) > 3 else ""
            it = "it" if len(skipped) == 1 else "them"
            err.print(
                f"[yellow]skipped {plural(len(skipped), 'sub-folder')} of "
                f"{escape(safe_text(str(folder)))} with images or videos[/] "
                f"({escape(names)}): add --recursive (-r) to analyse {it}",
                highlight=False,
                soft_wrap=True,
            )


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


def _summary_table(
    results: list[MediaResult], threshold: float, width: int, model: str | None = None
) -> Group:
    """One row per result under a line naming the model and its threshold. File paths are
    given relative to the folder they share (named above the table); the verdict, p(fake)
    and faces never wrap. When a row with its detail (a video's frames, why there is no
    face, an error) fits ``width`` columns, the detail is a column; otherwise (a pipe or a
    small terminal) each detail is an indented paragraph under its row, as wide as the
    terminal, and file names wrap instead of being cut."""
    names = [safe_text(r.path) for r in results]
    model = model or next((r.model for r in results if r.model), None)
    rule = f"threshold {threshold:.2f} (fake when p(fake) >= threshold)"
    heading = [Text(f"model {safe_text(model)}, {rule}" if model else rule)]
    folder = common_folder(names)
    if folder is not None:
        names = [os.path.relpath(n, folder) for n in names]
        heading.append(Text(f"files in {shorten_path(folder, width - 10)}{os.sep}"))
    table = plain_table(show_edge=False)
    rows = [_summary_row(r) for r in results]
    headers: tuple[str, ...] = ("file", "verdict", "p(fake)", "faces", "detail")
    if not any(row[4] for row in rows):  # all fine and nothing to add: no detail column
        headers, rows = headers[:4], [row[:4] for row in rows]
    natural = [
        max(
            [
                len(h),
                *(Text.from_markup(row[i]).cell_len if i == 1 else len(row[i]) for row in rows),
            ]
        )
        for i, h in enumerate(headers)
    ]
    if sum(natural) + 2 * (len(natural) - 1) > width:  # too wide for one line a file
        return Group(*heading, *_rows_with_details_under(names, rows, natural, width))
    table.add_column("file", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("p(fake)", no_wrap=True, justify="right")
    table.add_column("faces", no_wrap=True)
    if len(headers) > 4:
        table.add_column("detail", overflow="fold")
    for name, row in zip(names, rows, strict=True):
        # file names and messages are shown as they are, never read as rich markup
        table.add_row(Text(name), *row[1:4], *(Text(cell) for cell in row[4:]))
    return Group(*heading, table)


def _rows_with_details_under(
    names: list[str], rows: list[tuple[str, ...]], natural: list[int], width: int
) -> list:
    """The summary where a row and its detail do not fit one line: each file's row (its
    folders shortened from the left, a name too long for the room the other columns leave
    wrapping, never cut), then its detail as an
    indented paragraph as wide as the terminal. One table a row, all of the same widths."""
    fixed = natural[1:4]
    room = max(12, width - sum(fixed) - 2 * len(fixed))
    # folders shortened from the left (…/df/df00204.jpg); a file name itself is never cut
    names = [n if len(os.path.basename(n)) + 2 > room else shorten_path(n, room) for n in names]
    widths = [min(room, max(map(len, names), default=4)), *fixed]
    parts: list = []
    for i, (name, row) in enumerate(zip(names, rows, strict=True)):
        table = plain_table(show_edge=False, show_header=i == 0)
        for header, w in zip(("file", "verdict", "p(fake)", "faces"), widths, strict=True):
            justify = "right" if header == "p(fake)" else "left"
            table.add_column(header, width=w, overflow="fold", justify=justify)
        table.add_row(Text(name), *row[1:4])  # never read as rich markup
        parts.append(table)
        if len(row) > 4 and row[4]:
            parts.append(Padding(Text(row[4], style="dim"), (0, 0, 0, 2)))
    return parts


def _summary_row(r: MediaResult) -> tuple[str, ...]:
    """The cells of one result: file, verdict (markup), p(fake), faces, detail.

    The verdict in words (``likely forged`` in bold red, ``likely real`` in green,
    ``uncertain`` in yellow), else the status (``no face``, ``error``); the detail: a
    video's frames and length, the deciding track when there are several, its frame and
    temporal evidence (with a video model), its flagged spans, and why there is no face or
    the error."""
    if r.status == "ok":
        words = r.verdict or ("likely forged" if r.label == "fake" else "likely real")
        verdict = f"[{_VERDICT_STYLE.get(words, '')}]{words}[/]"
        p = f"{r.fake_probability:.3f}"
    else:
        verdict = f"[{_STATUS_STYLE[r.status]}]{r.status.replace('_', ' ')}[/]"
        p = "-"
    faces, details = str(len(r.faces)), []
    if r.kind == "video" and r.status != "error":
        details.append(f"{r.frames_analyzed} frames, {r.duration_s:.1f}s")
        if r.tracks:
            faces = f"{len(r.tracks)} track" + ("" if len(r.tracks) == 1 else "s")
        decisive = r.decisive_track
        if decisive is not None and len(r.tracks) > 1:
            deciding = sum(t.eligible for t in r.tracks)
            details.append(
                f"track {decisive.id} decides ({decisive.share:.0%} of frames); "
                f"{deciding} of {len(r.tracks)} can decide"
            )
        if decisive is not None and decisive.temporal_probability is not None:
            details.append(
                f"frames {decisive.frame_probability:.3f}, temporal "
                f"{decisive.temporal_probability:.3f} ({r.evidence})"
            )
        if r.segments:
            spans = ", ".join(f"{s.start_s:.1f}-{s.end_s:.1f}s" for s in r.segments[:3])
            more = f" +{len(r.segments) - 3}" if len(r.segments) > 3 else ""
            if r.label == "fake":
                details.append(f"flagged {spans}{more}")
            else:  # frames over the threshold in a video that is not called fake
                details.append(f"frames over the threshold at {spans}{more}, too few to flag it")
    if r.error:
        details.append(r.error)
    return (r.path, verdict, p, faces, safe_text("; ".join(details)))


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

    Raises :class:`InputError` (exit 2) when a path names nothing, or nothing was found
    (the folders hold no media, or only in sub-folders while ``recursive`` is off): an
    empty result would hide the mistake. Sub-folders with media skipped beside media are
    told on ``err``, and so is what was written to ``output``.
    """
    paths = list(paths)
    check_paths_exist(paths)
    if output is not None:  # a bad name fails before the folders are listed
        check_output_file(output, RESULTS)
    items = list(discover(paths, recursive=recursive, limits=limits))
    if output is not None:  # never one of the inputs (`predict vic -o vic/a.jpg`)
        check_output_file(output, RESULTS, inputs=[*paths, *(item.path for item in items)])
    annotate_dir = getattr(detector, "annotate_dir", None)
    if annotate_dir is not None:
        from mesonet.annotate import check_annotated_outputs

        check_annotated_outputs(annotate_dir, [item.path for item in items])
    explain_dir = getattr(detector, "explain", None)
    if isinstance(explain_dir, Path):
        from mesonet.pipeline.explain import check_map_outputs

        check_map_outputs(explain_dir, [item.path for item in items])
    if not items:
        below = [] if recursive else [p for p in map(Path, paths) if media_only_below(p)]
        if below:
            shown = ", ".join(safe_text(str(p)) for p in below)
            raise InputError(
                f"no images or videos in {shown} itself, but its sub-folders have some: "
                "add --recursive (-r) to analyse them"
            )
        raise InputError(f"no images or videos in {', '.join(safe_text(str(p)) for p in paths)}")
    if not recursive:
        _tell_skipped_subfolders(paths, err)
    failed = 0
    model = getattr(detector, "model_name", None)
    engine = getattr(detector, "backend", "")
    if model and engine and engine not in EXACT_BACKENDS:  # int8, bf16: say so
        model = f"{model} ({engine.removeprefix('openvino-')})"
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
                disable=len(items) < 2 or not err.is_terminal,  # no blank line in a pipe
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
                record = json_record(result.to_dict(), level=1, open_=True)
                stream.write(("\n  " if n == 0 else ",\n  ") + record)
            else:
                collected.append(result)
            progress.advance(task)
        if fmt == "json" and stream is not None:
            stream.write("\n]\n" if items else "]\n")
        if fmt == "table" and target is not None:
            table = _summary_table(collected, detector.threshold, 160, model)
            Console(file=target, width=160, no_color=True).print(table)
    if fmt == "table" and output is None:
        out.print(_summary_table(collected, detector.threshold, out.width, model))
    if output is not None:
        what = f"a table of {plural(len(collected), 'record')}" if fmt == "table" else None
        what = what or plural(len(items), "record")
        err.print(
            f"wrote {what} to {escape(safe_text(str(output)))}", highlight=False, soft_wrap=True
        )
    if failed:
        err.print(f"[red]{failed} of {plural(len(items), 'input')} failed[/] (see their records)")
    return failed
