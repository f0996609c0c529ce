"""`mesonet evaluate`: a model's metrics on labelled media, as a table or JSON, with an
optional report folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from mesonet.cli.console import err, out
from mesonet.cli.options import (
    AggregateOption,
    BackendOption,
    EvalLimitOption,
    FacesOption,
    FpsOption,
    FramesOption,
    ILimitOption,
    ImageRuleOption,
    JudgePxOption,
    JudgeSharpnessOption,
    MaxFrameOption,
    MaxMemoryOption,
    MaxSecondsOption,
    ModelOption,
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


def evaluate_command(
    data: Annotated[
        Path,
        typer.Argument(
            help="A folder with real/ and fake/ (or df/): images, videos or both.",
            metavar="DATA",
            show_default=False,
        ),
    ],
    model: ModelOption = None,
    faces: FacesOption = "detect",
    output_format: Annotated[
        str,
        typer.Option("--format", "-f", help="table or json (one object).", metavar="[table|json]"),
    ] = "table",
    report: Annotated[
        Path | None,
        typer.Option(
            help="Write ROC, confusion matrix, face grids, metrics.json and index.html here.",
            metavar="DIR",
        ),
    ] = None,
    threshold: ThresholdOption = None,
    frames: FramesOption = 32,
    fps: FpsOption = None,
    aggregate: AggregateOption = "mean",
    track_share: TrackShareOption = TRACK_SHARE,
    track_size: TrackSizeOption = TRACK_SIZE,
    judge_px: JudgePxOption = MIN_FACE_PX,
    judge_sharpness: JudgeSharpnessOption = MIN_SHARPNESS,
    image_rule: ImageRuleOption = "weighted",
    backend: BackendOption = "auto",
    limit: EvalLimitOption = None,
    ilimit: ILimitOption = None,
    vlimit: VLimitOption = None,
    trust_unverified: TrustOption = False,
    video_model: VideoModelOption = None,
    video_rule: VideoRuleOption = "mean",
    max_frame_mp: MaxFrameOption = 8.3,
    max_seconds: MaxSecondsOption = 300.0,
    max_memory_mb: MaxMemoryOption = 2048.0,
    perturb: Annotated[
        str | None,
        typer.Option(
            help="Robustness benchmark: evaluate again after each named degradation, applied "
            "to every file before detection, and print AUC, its change and the false-alarm "
            "rate (reals called likely forged) per degradation. Names or groups, comma-"
            "separated: moderate, strong, images, videos, all; or e.g. down48,blur2,jpeg30 "
            "(the list: docs/results.md#robustness).",
            metavar="NAMES",
        ),
    ] = None,
    perturb_seed: Annotated[
        int, typer.Option(help="Seed of the degradations' random parts (noise).", metavar="N")
    ] = 0,
) -> None:
    """Measure a model on labelled media: accuracy, precision, recall, F1, ROC AUC, AP, EER.

    Fake is the positive class. Images are scored per file (frame level), videos per file
    after aggregating their frames (video level); by_group splits by the file-name prefix
    before "__" (e.g. the manipulation method).
    """
    import json

    from rich.progress import Progress

    from mesonet.evaluation.runner import evaluate
    from mesonet.pipeline import Detector

    if output_format not in ("table", "json"):
        raise typer.BadParameter("choose table or json", param_hint="--format")
    degradations = None
    if perturb is not None:
        from mesonet.degradations import resolve

        try:
            degradations = resolve(perturb)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--perturb") from None
        if report is not None:
            raise typer.BadParameter("--report measures one set: run it without --perturb")
    limits = input_limits(limit, ilimit, vlimit)
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
        backend=backend,
        trust_unverified=trust_unverified,
        video_model=video_model,
        video_rule=video_rule,
        limits=analysis_limits(max_frame_mp, max_seconds, max_memory_mb),
    )
    if degradations is not None:
        _robustness(detector, data, degradations, limits, perturb_seed, output_format)
        return
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("evaluating", total=None)
        metrics = evaluate(
            detector,
            data,
            limits=limits,
            report_dir=report,
            on_result=lambda _, total: progress.update(task, advance=1, total=total),
        )
    if output_format == "json":
        out.print_json(json.dumps(metrics))
    else:
        out.print(_metrics_table(metrics))
    if report is not None:
        err.print(f"report written to {report / 'index.html'}")


def _robustness(detector, data, degradations, limits, seed, output_format) -> None:
    import json

    from rich.progress import Progress

    from mesonet.evaluation.robustness import evaluate_degraded

    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("none", total=None)

        def step(stage: str, done: int, total: int) -> None:
            progress.update(task, description=stage, completed=done, total=total)

        table = evaluate_degraded(
            detector, data, degradations, limits=limits, seed=seed, on_progress=step
        )
    if output_format == "json":
        out.print_json(json.dumps(table))
    else:
        out.print(robustness_table(table))


def _rate(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def robustness_table(table: dict) -> Table:
    """One row per degradation: n, AUC, its change, and the verdicts' rates."""
    from mesonet.output import plain_table

    title = (
        f"{table['model']} ({table['backend']}) on {table['data']}: robustness, "
        f"seed {table['seed']}"
    )
    grid = plain_table(title=title, title_justify="left")
    headers = ("degradation", "n", "AUC", "change", "false alarms", "detected", "not judged")
    for header in headers:
        grid.add_column(
            header, no_wrap=True, justify="left" if header == "degradation" else "right"
        )
    for name, row in table["rows"].items():
        change = row.get("auc_change")
        grid.add_row(
            name,
            str(row["n"]),
            _fmt(row["auc"]),
            "-" if change is None else f"{change:+.4f}",
            _rate(row["false_alarm_rate"]),
            _rate(row["detection_rate"]),
            _rate(row["not_judged_rate"]),
        )
    grid.caption = (
        "false alarms: real files called likely forged; detected: forged files called likely "
        "forged; not judged: files whose faces are all too small or blurred to judge "
        "(uncertain); change: AUC against the undegraded files of the same kind"
    )
    return grid


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _metrics_table(metrics: dict) -> Group:
    """The headline metrics, then one row per group; every cell whole (no cut group names):
    borderless columns leave room for them in 80 columns. What the table is and the
    confusion and calibration figures are lines of their own above and below it, wrapped at
    the terminal's width rather than the table's (a label never parted from its number)."""
    from mesonet.output import plain_table

    keys = ("n", "auc", "ap", "eer", "accuracy", "precision", "recall", "f1")
    engine = f" ({metrics['backend']})" if metrics.get("backend") else ""
    title = [
        f"{metrics['model']}{engine}: {metrics['level']} level, "
        f"threshold {metrics['threshold']:.3f}",
        f"skipped {metrics['skipped']['no_face']} no-face / {metrics['skipped']['error']} errors",
    ]
    rows = [(Text("all", style="bold"), metrics)]
    rows += [(Text(name), metrics[name]) for name in ("images", "videos") if name in metrics]
    groups = metrics["by_group"]
    rows += [(Text(g or "(none)"), v) for g, v in groups.items() if list(groups) != [""]]
    headers = ("n", "AUC", "AP", "EER", "acc", "prec", "recall", "F1")
    table = plain_table()
    cells = [[_fmt(values[k]) for k in keys] for _, values in rows]
    # numbers are never cut; a group name too long for the rest folds onto a second line
    table.add_column("group", overflow="fold", min_width=min(16, max(len(n) for n, _ in rows)))
    for i, header in enumerate(headers):
        width = max(len(header), *(len(c[i]) for c in cells))
        table.add_column(header, no_wrap=True, justify="right", min_width=width)
    for (name, _), row in zip(rows, cells, strict=True):
        table.add_row(name, *row)
    c = metrics["confusion"]
    # calibration is the model's, so it is told once (per group: --format json)
    caption = [
        f"confusion: tn {c['tn']}  fp {c['fp']}  fn {c['fn']}  tp {c['tp']}",
        f"calibration: ECE {_fmt(metrics.get('ece'))}, Brier {_fmt(metrics.get('brier'))}",
        f"verdicts: {_rate(metrics.get('false_alarm_rate'))} of real files likely forged, "
        f"{_rate(metrics.get('detection_rate'))} of forged ones",
        f"not judged (faces too small or blurred): {_rate(metrics.get('not_judged_rate'))}",
    ]
    return Group(*(Text(line) for line in title), table, *(Text(line) for line in caption))
