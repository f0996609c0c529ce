"""`mesonet predict` and `mesonet scan`: the detector's verdicts on images and videos, as a
report (predict) or a resumable results file for a whole collection (scan)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mesonet.cli.console import EXIT_FAILED_INPUTS, EXIT_OK, err, out
from mesonet.cli.options import (
    AggregateOption,
    BackendOption,
    FacesOption,
    FpsOption,
    FramesOption,
    ILimitOption,
    ImageRuleOption,
    JudgePxOption,
    JudgeSharpnessOption,
    LimitOption,
    MaxFrameOption,
    MaxMemoryOption,
    MaxSecondsOption,
    ModelOption,
    RecursiveOption,
    ThresholdOption,
    TrackShareOption,
    TrackSizeOption,
    TrustOption,
    VideoModelOption,
    VideoRuleOption,
    VLimitOption,
    analysis_limits,
    input_limits,
)
from mesonet.defaults import MIN_FACE_PX, MIN_SHARPNESS, TRACK_SHARE, TRACK_SIZE

FORMATS = ("table", "json", "jsonl", "csv")


def predict_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Images, videos and folders of them.", show_default=False, metavar="PATH..."
        ),
    ] = None,
    samples: Annotated[
        bool,
        typer.Option(
            "--samples",
            help="Also analyse the sample images shipped with mesonet (the MesoNet authors' "
            "four test images: two forged, two real).",
        ),
    ] = False,
    model: ModelOption = None,
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="table, json (an array), jsonl (one record a line) or csv.",
            metavar="[table|json|jsonl|csv]",
        ),
    ] = "table",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the results to this file instead of stdout.",
            metavar="FILE",
        ),
    ] = None,
    recursive: RecursiveOption = False,
    limit: LimitOption = None,
    ilimit: ILimitOption = None,
    vlimit: VLimitOption = None,
    threshold: ThresholdOption = None,
    frames: FramesOption = 32,
    fps: FpsOption = None,
    faces: FacesOption = "detect",
    aggregate: AggregateOption = "mean",
    track_share: TrackShareOption = TRACK_SHARE,
    track_size: TrackSizeOption = TRACK_SIZE,
    judge_px: JudgePxOption = MIN_FACE_PX,
    judge_sharpness: JudgeSharpnessOption = MIN_SHARPNESS,
    image_rule: ImageRuleOption = "weighted",
    backend: BackendOption = "auto",
    annotate: Annotated[
        Path | None,
        typer.Option(
            help="Write annotated copies here (boxes coloured by score; for videos an MP4 "
            "with a timeline and the timeline as a PNG; with --explain, the maps too).",
            metavar="DIR",
        ),
    ] = None,
    explain: Annotated[
        Path | None,
        typer.Option(
            help="Write each face's evidence map here: its crop with the regions that pushed "
            "the score towards forged overlaid (PNG; for videos the deciding track's most "
            "suspicious frames). The record gives each map's path and peak region.",
            metavar="DIR",
        ),
    ] = None,
    trust_unverified: TrustOption = False,
    video_model: VideoModelOption = None,
    video_rule: VideoRuleOption = "mean",
    max_frame_mp: MaxFrameOption = 8.3,
    max_seconds: MaxSecondsOption = 300.0,
    max_memory_mb: MaxMemoryOption = 2048.0,
) -> None:
    """Tell whether the faces in images and videos are forged, and where.

    Prints one record per input file (status ok, no_face or error). Try it with --samples.

    Exit code 0 when every input was processed, 1 when some failed (their records say why),
    2 on a usage error, including a folder whose images and videos all sit in sub-folders
    while --recursive is not given.
    """
    from mesonet.destinations import check_output_dir, check_output_file
    from mesonet.inputs import sample_paths
    from mesonet.output import check_paths_exist, write_results
    from mesonet.pipeline import Detector

    if output_format not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")
    paths = [*(paths or []), *(sample_paths() if samples else [])]
    if not paths:
        raise typer.BadParameter("give images, videos or folders, or --samples", param_hint="PATH")
    check_paths_exist(paths)  # a mistyped name: exit 2 before the model loads
    limits = input_limits(limit, ilimit, vlimit)
    # outputs are refused before the model loads; write_results checks them against the
    # inputs once they are listed
    if output is not None:
        check_output_file(output, "results file", inputs=paths)
    if annotate is not None:
        check_output_dir(annotate, "annotation folder", create=False)
    if explain is not None:
        check_output_dir(explain, "evidence map folder", inputs=paths, create=False)
    detector = Detector(
        model,
        threshold=threshold,
        faces=faces,
        frames=frames,
        fps=fps,
        aggregate=aggregate,
        track_share=track_share,
        track_size=track_size,
        judge_px=judge_px,
        judge_sharpness=judge_sharpness,
        image_rule=image_rule,
        annotate_dir=annotate,
        explain=explain,
        backend=backend,
        trust_unverified=trust_unverified,
        video_model=video_model,
        video_rule=video_rule,
        limits=analysis_limits(max_frame_mp, max_seconds, max_memory_mb),
    )
    failed = write_results(detector, paths, output_format, output, recursive, limits, out, err)
    if explain is not None and output_format == "table":  # the table has no room for them
        err.print(
            f"evidence maps in {explain}/; -f json gives each one's face and peak region",
            highlight=False,
            soft_wrap=True,
        )
    raise typer.Exit(EXIT_FAILED_INPUTS if failed else EXIT_OK)


def scan_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="A folder of images and videos, or a manifest: a .txt file of paths (one a "
            "line) or a .csv file with a 'path' column.",
            show_default=False,
            metavar="SOURCE",
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Results file: .jsonl (JSON Lines) or .parquet. An existing one is resumed: "
            "inputs it holds are skipped.",
            show_default=False,
            metavar="FILE",
        ),
    ],
    engine: Annotated[
        str,
        typer.Option(
            help="local (this process) or ray (a Ray Data pipeline).", metavar="[local|ray]"
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster to join: auto (the one started on this machine) or HOST:PORT "
            "(default: start Ray here).",
            metavar="auto|HOST:PORT",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Ray actors analysing files (default: one per CPU of the cluster).", metavar="N"
        ),
    ] = None,
    model: ModelOption = None,
    recursive: RecursiveOption = False,
    root: Annotated[
        Path | None,
        typer.Option(
            help="Folder the manifest's relative paths start from (default: its own).",
            metavar="DIR",
        ),
    ] = None,
    threshold: ThresholdOption = None,
    frames: FramesOption = 32,
    fps: FpsOption = None,
    faces: FacesOption = "detect",
    aggregate: AggregateOption = "mean",
    track_share: TrackShareOption = TRACK_SHARE,
    track_size: TrackSizeOption = TRACK_SIZE,
    backend: BackendOption = "auto",
    trust_unverified: TrustOption = False,
    video_model: VideoModelOption = None,
    video_rule: VideoRuleOption = "mean",
    max_frame_mp: MaxFrameOption = 8.3,
    max_seconds: MaxSecondsOption = 300.0,
    max_memory_mb: MaxMemoryOption = 2048.0,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Discard the records FILE holds and scan everything again (needed when its "
            "records were made with another model or other settings).",
        ),
    ] = False,
    retry_errors: Annotated[
        bool,
        typer.Option(
            "--retry-errors",
            help="Analyse again the inputs whose record in FILE is an error (after repairing "
            "them); the new record replaces the error.",
        ),
    ] = False,
) -> None:
    """Scan a whole collection into one results file, on this machine or a Ray cluster.

    Writes one record per input (as predict --format jsonl), appended and flushed as work
    finishes, so an interrupted scan resumes where it stopped when rerun. The model and the
    settings are kept beside FILE (FILE.settings.json): a rerun with others is refused unless
    --restart. Exit code 0 when every input has a record that is not an error, 1 otherwise,
    2 on a usage error.
    """
    from mesonet.scan import ENGINES, scan

    if engine not in ENGINES:
        raise typer.BadParameter(f"choose one of {', '.join(ENGINES)}", param_hint="--engine")
    if workers is not None and (workers < 1 or engine != "ray"):
        raise typer.BadParameter("must be at least 1, with --engine ray", param_hint="--workers")
    if address is not None and engine != "ray":
        raise typer.BadParameter("joins a Ray cluster: use it with --engine ray")
    bar = _scan_progress(engine)
    task = bar.add_task("scanning", total=None)
    with bar:
        summary = scan(
            source,
            output,
            engine=engine,
            address=address,
            workers=workers,
            model=model,
            recursive=recursive,
            root=root,
            threshold=threshold,
            frames=frames,
            fps=fps,
            faces=faces,
            aggregate=aggregate,
            track_share=track_share,
            track_size=track_size,
            backend=backend,
            trust_unverified=trust_unverified,
            video_model=video_model,
            video_rule=video_rule,
            limits=analysis_limits(max_frame_mp, max_seconds, max_memory_mb),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            restart=restart,
            retry_errors=retry_errors,
        )
    _print_scan_summary(summary)
    raise typer.Exit(EXIT_FAILED_INPUTS if summary.failed or summary.lost else EXIT_OK)


def _scan_progress(engine: str):
    """The scan's progress bar on stderr: files done of all, and the time left."""
    from rich.progress import MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress(
        *Progress.get_default_columns()[:2],
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=engine == "ray",  # Ray Data shows its own progress
    )


def _print_scan_summary(summary) -> None:
    """One line of counts and speed on stdout; lost inputs and error records on stderr."""
    from mesonet.output import plural

    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.statuses.items()))
    out.print(
        f"{summary.written} of {plural(summary.listed, 'input')} analysed "
        f"({summary.skipped} already in {summary.output}) in {summary.seconds:.1f} s, "
        f"{summary.files_per_s:.1f} files/s"
        + (
            f" (first after {summary.first_record_s:.1f} s)"
            if summary.first_record_s is not None
            else ""
        )
        + (f": {counts}" if counts else ""),
        highlight=False,
        soft_wrap=True,
    )
    if summary.lost:
        shown = ", ".join(summary.lost[:5]) + (" ..." if len(summary.lost) > 5 else "")
        err.print(
            f"[red]{plural(len(summary.lost), 'input')} lost with failing workers[/] ({shown}); "
            "rerun to retry them",
            highlight=False,
            soft_wrap=True,
        )
    if summary.retried:
        records = "an error record" if summary.retried == 1 else "error records"
        err.print(f"{plural(summary.retried, 'input')} with {records} analysed again")
    if summary.failed:
        one = summary.failed == 1
        err.print(
            f"[red]{plural(summary.failed, 'input')} "
            f"{'has an error record' if one else 'have error records'}[/] "
            f"(see {summary.output}); repair {'it' if one else 'them'} and rerun with "
            f"--retry-errors to analyse {'it' if one else 'them'} again",
            highlight=False,
            soft_wrap=True,
        )
