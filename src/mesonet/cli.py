"""The `mesonet` command: a thin shell that parses, calls the library and prints."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mesonet.clihelp import HelpCommand, HelpGroup
from mesonet.errors import MesonetError
from mesonet.video import TRACK_SHARE, TRACK_SIZE

app = typer.Typer(
    name="mesonet",
    help="Detect forged faces (deepfakes) in images and videos with MesoNet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=HelpGroup,
)
err = Console(stderr=True)
out = Console()

EXIT_OK, EXIT_FAILED_INPUTS, EXIT_USAGE = 0, 1, 2


# The dev-visible sets bundled models are measured on (tools/bundle_model.py), as table columns.
MODEL_SETS = (
    ("dfdc_faces_test", "DFDC\ntest"),
    ("mesonet_deepfake_val", "Deepfake\nval"),
    ("ffpp_faces_dev", "FF++\ndev"),
    ("ffpp_c40_videos", "FF++ c40\nvideos"),
)


@app.command("models", cls=HelpCommand)
def models_command(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the model cards as JSON (a list).")
    ] = False,
) -> None:
    """List the bundled models (the default first) with their ROC AUC on each measured set.

    Pick one with --model NAME on any command; join names with + for an ensemble
    (--model meso4.df+meso4.dfdc). mesonet models --json prints every card in full.
    """
    import dataclasses
    import json

    from mesonet.models import default_model_name, list_models

    cards = list_models()
    default = default_model_name()
    if json_output:
        rows = [{**dataclasses.asdict(c), "default": c.name == default} for c in cards]
        out.print_json(json.dumps(rows))
        return
    if not cards:
        out.print("No bundled models. Convert the authors' weights with `mesonet import-keras`.")
        return
    out.print(_models_table(cards, default))


def _models_table(cards: list, default: str | None) -> Table:
    """One row per model, one column per measured set: every name whole at 80 columns
    (the architecture is the name's first part; ``--json`` has every field)."""
    table = Table(
        title="Bundled models: ROC AUC measured by mesonet evaluate",
        title_justify="left",
        caption="* default. Calibrated on: the validation set its probabilities are fitted "
        "on. Every field: mesonet models --json",
        caption_justify="left",
    )
    table.add_column("model", no_wrap=True)
    for _, header in MODEL_SETS:
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("calibrated on", overflow="fold")
    for card in cards:
        cells = []
        for key, _ in MODEL_SETS:
            values = card.metrics.get(key)
            auc = values.get("auc") if isinstance(values, dict) else None
            cells.append(f"{auc:.3f}" if isinstance(auc, float) else "-")
        calibrated = card.calibration.get("data", "?") if card.calibration else "-"
        name = card.name + (" *" if card.name == default else "")
        table.add_row(Text(name), *cells, Text(calibrated))
    return table


@app.command("import-keras", cls=HelpCommand)
def import_keras_command(
    src: Annotated[
        Path, typer.Argument(help="The authors' Keras weights (.h5).", metavar="KERAS_H5")
    ],
    dst: Annotated[
        Path,
        typer.Argument(help="Where to write our weights (.safetensors).", metavar="OUT"),
    ],
    arch: Annotated[
        str,
        typer.Option(
            help="auto (detect from the file), meso4 or mesoinception4.",
            metavar="[auto|meso4|mesoinception4]",
        ),
    ] = "auto",
) -> None:
    """Convert the MesoNet authors' Keras .h5 weights into a mesonet .safetensors model.

    The authors' models output the probability of REAL; the converted model outputs the
    probability of FAKE, like every mesonet model.
    """
    from mesonet.keras_import import import_keras

    if arch not in ("auto", "meso4", "mesoinception4"):
        raise typer.BadParameter("choose auto, meso4 or mesoinception4", param_hint="--arch")
    card = import_keras(src, dst, arch)
    err.print(f"wrote {dst} ({card.name}, {card.arch}, sha256 {card.weights_sha256[:12]}…)")


FORMATS = ("table", "json", "jsonl", "csv")

# Options shared by the commands that run the detector.
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Bundled model name or .safetensors path (default: the bundled default model).",
        metavar="NAME|FILE",
    ),
]
BackendOption = Annotated[
    str,
    typer.Option(
        help="Inference engine: auto (fastest exact one installed), openvino, torch, onnx, "
        "or openvino-bf16 (faster, not exact).",
        metavar="ENGINE",
    ),
]
ThresholdOption = Annotated[
    float | None,
    typer.Option(
        help="Label fake when fake_probability >= T (default: the model card's threshold).",
        metavar="T",
    ),
]
FramesOption = Annotated[
    int, typer.Option(help="Frames sampled evenly from each video.", metavar="N")
]
FpsOption = Annotated[
    float | None,
    typer.Option(help="Sample F frames per second of video instead of --frames.", metavar="F"),
]
FacesOption = Annotated[
    str,
    typer.Option(
        help="detect: find and align faces (MTCNN). none: each image is already a face crop.",
        metavar="[detect|none]",
    ),
]
AggregateOption = Annotated[
    str,
    typer.Option(
        help="Video score per face track: mean (paper), vote (authors' code) or confident.",
        metavar="[mean|vote|confident]",
    ),
]
TrustOption = Annotated[
    bool,
    typer.Option(
        "--trust-unverified",
        help="Load weights whose model card carries no sha256 (refused otherwise); records "
        "then name the model '<name> (unverified)'.",
    ),
]
MaxFrameOption = Annotated[
    float,
    typer.Option(
        help="Refuse videos whose frames are over this many megapixels (from the header, "
        "before decoding; 8.3 fits 4K).",
        metavar="MP",
    ),
]
MaxSecondsOption = Annotated[
    float,
    typer.Option(
        help="Stop a file's analysis after this many seconds (an error record).",
        metavar="SECONDS",
    ),
]
MaxMemoryOption = Annotated[
    float,
    typer.Option(
        help="Stop a file's analysis once it needs this much memory (an error record).",
        metavar="MB",
    ),
]


def _analysis_limits(max_frame_mp: float, max_seconds: float, max_memory_mb: float):
    from mesonet.budget import AnalysisLimits

    for value, name in (
        (max_frame_mp, "--max-frame-mp"),
        (max_seconds, "--max-seconds"),
        (max_memory_mb, "--max-memory-mb"),
    ):
        if not value > 0:
            raise typer.BadParameter("must be positive", param_hint=name)
    return AnalysisLimits.from_options(max_frame_mp, max_seconds, max_memory_mb)


TrackShareOption = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        metavar="SHARE",
        help="A face track decides a video only when it covers at least this share of the "
        "analysed frames (the longest track when none does); shorter tracks are still reported.",
    ),
]
TrackSizeOption = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        metavar="FRACTION",
        help="A face track decides a video only when its faces are at least this fraction of "
        "the size of the largest track covering enough frames (a small face in the background "
        "never decides; 0 turns this off).",
    ),
]
LimitOption = Annotated[
    int | None,
    typer.Option(
        help="Analyse at most N images and at most N videos, in the order listed.", metavar="N"
    ),
]
EvalLimitOption = Annotated[
    int | None,
    typer.Option(
        help="Evaluate at most N images and at most N videos in all (as predict's --limit), "
        "taken alternately from real/ and fake/.",
        metavar="N",
    ),
]
ILimitOption = Annotated[int | None, typer.Option(help="Analyse at most N images.", metavar="N")]
VLimitOption = Annotated[int | None, typer.Option(help="Analyse at most N videos.", metavar="N")]


def _limits(limit: int | None, ilimit: int | None, vlimit: int | None):
    from mesonet.inputs import Limits

    for value, name in ((limit, "--limit"), (ilimit, "--ilimit"), (vlimit, "--vlimit")):
        if value is not None and value < 1:
            raise typer.BadParameter("must be at least 1", param_hint=name)
    return Limits(limit=limit, ilimit=ilimit, vlimit=vlimit)


@app.command("predict", cls=HelpCommand)
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
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")
    ] = False,
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
    backend: BackendOption = "auto",
    annotate: Annotated[
        Path | None,
        typer.Option(
            help="Write annotated copies here (boxes coloured by score; for videos an MP4 "
            "with a timeline and the timeline as a PNG).",
            metavar="DIR",
        ),
    ] = None,
    trust_unverified: TrustOption = False,
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
    from mesonet.inputs import sample_paths
    from mesonet.output import write_results
    from mesonet.pipeline import Detector

    if output_format not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")
    paths = [*(paths or []), *(sample_paths() if samples else [])]
    if not paths:
        raise typer.BadParameter("give images, videos or folders, or --samples", param_hint="PATH")
    limits = _limits(limit, ilimit, vlimit)
    detector = Detector(
        model,
        threshold=threshold,
        faces=faces,
        frames=frames,
        fps=fps,
        aggregate=aggregate,
        track_share=track_share,
        track_size=track_size,
        annotate_dir=annotate,
        backend=backend,
        trust_unverified=trust_unverified,
        limits=_analysis_limits(max_frame_mp, max_seconds, max_memory_mb),
    )
    failed = write_results(detector, paths, output_format, output, recursive, limits, out, err)
    raise typer.Exit(EXIT_FAILED_INPUTS if failed else EXIT_OK)


@app.command("evaluate", cls=HelpCommand)
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
    backend: BackendOption = "auto",
    limit: EvalLimitOption = None,
    ilimit: ILimitOption = None,
    vlimit: VLimitOption = None,
    trust_unverified: TrustOption = False,
    max_frame_mp: MaxFrameOption = 8.3,
    max_seconds: MaxSecondsOption = 300.0,
    max_memory_mb: MaxMemoryOption = 2048.0,
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
    limits = _limits(limit, ilimit, vlimit)
    detector = Detector(
        model,
        threshold=threshold,
        faces=faces,
        frames=frames,
        fps=fps,
        aggregate=aggregate,
        track_share=track_share,
        track_size=track_size,
        backend=backend,
        trust_unverified=trust_unverified,
        limits=_analysis_limits(max_frame_mp, max_seconds, max_memory_mb),
    )
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


@app.command("calibrate")
def calibrate_command(
    model: Annotated[
        str,
        typer.Argument(
            help="Bundled model name, .safetensors path or ensemble (a+b, or a .json card).",
            show_default=False,
        ),
    ],
    data: Annotated[
        Path,
        typer.Argument(
            help="Validation folder with real/ and fake/ (or df/): never the test data.",
            show_default=False,
        ),
    ],
    out_file: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Where to write the calibrated model: .safetensors (a model; the weights are "
            "copied) or .json (an ensemble card).",
            show_default=False,
        ),
    ],
    method: Annotated[
        str,
        typer.Option(help="temperature (one number, keeps the ranking) or isotonic (a map)."),
    ] = "temperature",
    faces: FacesOption = "detect",
    frames: FramesOption = 32,
    backend: BackendOption = "auto",
    limit: LimitOption = None,
    trust_unverified: TrustOption = False,
    threshold_rule: Annotated[
        str | None,
        typer.Option(
            help="Choose a new threshold on DATA: youden (max TPR - FPR), eer (FPR = FNR) or "
            "accuracy. Default: keep the model's (mapped through the calibration).",
            metavar="RULE",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Fit a model's calibration and verdict bands on validation data; store them in its card.

    Afterwards fake_probability means what it says on data like DATA (of faces scored about
    0.8, about 80% forged), the threshold is mapped so the labels stay the same, and the
    verdict bands (likely real / uncertain / likely forged) are measured on DATA.
    """
    from rich.progress import Progress

    from mesonet.evaluation.calibrate import calibrate_model
    from mesonet.models import Ensemble, save_ensemble, save_model

    suffix = out_file.suffix.lower()
    if suffix not in (".safetensors", ".json"):
        raise typer.BadParameter(
            "name it .safetensors (a model) or .json (an ensemble card)", param_hint="--out"
        )
    command = "mesonet " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["calibrate"] else ""
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("scoring", total=None)
        fit = calibrate_model(
            model,
            data,
            method=method,
            faces=faces,
            frames=frames,
            backend=backend,
            limits=_limits(limit, None, None),
            command=command,
            on_result=lambda _, total: progress.update(task, advance=1, total=total),
            trust_unverified=trust_unverified,
            threshold_rule=threshold_rule,
        )
    if isinstance(fit.model, Ensemble) != (suffix == ".json"):
        kind = ".json (an ensemble card)" if isinstance(fit.model, Ensemble) else ".safetensors"
        raise typer.BadParameter(f"this model is written as {kind}", param_hint="--out")
    unverified = bool(getattr(fit.model, "unverified", False))
    if isinstance(fit.model, Ensemble):
        save_ensemble(fit.card, out_file)
    else:
        # unverified weights stay unverified: a new digest would vouch for what nobody checked
        save_model(fit.model, out_file, fit.card, digest=not unverified)
    lo, hi = fit.card.verdict_bands["uncertain"]
    out.print(
        f"{fit.card.name}: {method} on {fit.n} faces of {data}: ECE {fit.ece_before:.4f} -> "
        f"{fit.ece_after:.4f}, Brier {fit.brier_before:.4f} -> {fit.brier_after:.4f}; "
        f"threshold {fit.card.threshold:.4f}; uncertain from {lo:.3f} to {hi:.3f}; "
        f"wrote {out_file}"
        + (" (unverified as its input: load it with --trust-unverified)" if unverified else ""),
        highlight=False,
        soft_wrap=True,
    )


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _metrics_table(metrics: dict) -> Table:
    """The headline metrics, then one row per group; every cell whole (no cut group names):
    borderless columns leave room for them in 80 columns."""
    from mesonet.output import plain_table

    keys = ("n", "auc", "ap", "eer", "accuracy", "precision", "recall", "f1")
    title = (
        f"{metrics['model']}: {metrics['level']} level, threshold {metrics['threshold']:.3f}, "
        f"skipped {metrics['skipped']['no_face']} no-face / {metrics['skipped']['error']} errors"
    )
    rows = [(Text("all", style="bold"), metrics)]
    rows += [(Text(name), metrics[name]) for name in ("images", "videos") if name in metrics]
    groups = metrics["by_group"]
    rows += [(Text(g or "(none)"), v) for g, v in groups.items() if list(groups) != [""]]
    headers = ("n", "AUC", "AP", "EER", "acc", "prec", "recall", "F1")
    table = plain_table(title=title, title_justify="left")
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
    table.caption = (
        f"confusion: tn {c['tn']}  fp {c['fp']}  fn {c['fn']}  tp {c['tp']}; "
        f"calibration: ECE {_fmt(metrics.get('ece'))}, Brier {_fmt(metrics.get('brier'))}"
    )
    return table


@app.command("train", cls=HelpCommand)
def train_command(
    data: Annotated[
        list[Path] | None,
        typer.Argument(
            help="One or more datasets: a folder with train/ and validation/ (or val/), each "
            "holding real/ and fake/ (or df/); one folder with real/ and fake/ (split by "
            "val_fraction); or a .zip of either. Several: each epoch draws from them by "
            "--weights, not by size. Without DATA, the --config file's [\\[sources]] are used.",
            show_default=False,
            metavar="DATA",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder for last.pt, best.safetensors, log.jsonl, curves.png.",
            metavar="DIR",
        ),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated weights of the training sources (DATA or the config's), "
            "in order (default: the config's, else 1).",
            metavar="W,W,...",
        ),
    ] = None,
    holdout: Annotated[
        list[Path] | None,
        typer.Option(
            help="A labelled folder to validate on but never train on (repeatable); its AUC "
            "counts in the selection of the best epoch.",
            show_default=False,
            metavar="DIR",
        ),
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(
            help="meso4 (default), mesoinception4, or meso4w (Meso-4 twice as wide after its "
            "first block; --init with Meso-4 weights widens them, same outputs).",
            metavar="ARCH",
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="TOML file of training options (flags override it).",
            metavar="FILE",
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Maximum number of epochs.", metavar="N")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per step.", metavar="N")] = None,
    lr: Annotated[
        float | None, typer.Option(help="Initial learning rate (Adam).", metavar="LR")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for splits, sampling, augmentation.", metavar="N")
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            help="Start from these weights: .safetensors, a bundled name, or the authors' .h5.",
            metavar="WEIGHTS",
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last.pt.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(help="DataLoader worker processes.", metavar="N")
    ] = None,
    cache: Annotated[
        bool | None,
        typer.Option(
            "--cache/--no-cache", help="Keep decoded images in memory.", show_default=False
        ),
    ] = None,
    augment: Annotated[
        str | None,
        typer.Option(
            help=(
                "none, flip, light, paper, standard (default), video (standard plus H.264 "
                "re-encoding) or strong."
            ),
            metavar="LEVEL",
        ),
    ] = None,
    loss: Annotated[
        str | None,
        typer.Option(help="bce (default) or mse (the paper's).", metavar="[bce|mse]"),
    ] = None,
    max_train: Annotated[
        int | None,
        typer.Option(help="Train on a seeded subset of N images (quick runs).", metavar="N"),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Torch threads (0 = every core).", metavar="N")
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="fp32 (default) or bf16 (autocast; faster on CPUs with AMX/AVX512).",
            metavar="[fp32|bf16]",
        ),
    ] = None,
    compile_: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile",
            help="torch.compile the model: about 1.5x faster steps after about a minute of "
            "compiling; needs a C++ compiler (eager mode without one). Default: off.",
            show_default=False,
        ),
    ] = None,
    synthetic: Annotated[
        str | None,
        typer.Option(
            help="none (default) or sbi: add self-blended fakes made from the real training "
            "faces (Shiohara & Yamasaki, CVPR 2022), --synthetic-share of each epoch.",
            metavar="[none|sbi]",
        ),
    ] = None,
    synthetic_share: Annotated[
        float | None,
        typer.Option(help="Share of each epoch that is synthetic (default 0.25).", metavar="SHARE"),
    ] = None,
    resample: Annotated[
        bool | None,
        typer.Option(
            "--resample/--no-resample",
            help="Scale every training crop down by a random factor and back up, so both "
            "classes carry the same resampling traces. Default: off.",
            show_default=False,
        ),
    ] = None,
    epoch_size: Annotated[
        int | None,
        typer.Option(help="Images drawn per epoch (default: all training images).", metavar="N"),
    ] = None,
    select: Annotated[
        str | None,
        typer.Option(
            help="Best epoch by min (default) or mean of the per-source validation AUCs, or "
            "by one source's AUC (its name).",
            metavar="RULE",
        ),
    ] = None,
) -> None:
    """Train (or fine-tune) a MesoNet on labelled face crops; label fake = 1.

    Writes last.pt after every epoch (continue with --resume),
    best.safetensors (best epoch by --select, with a model card), log.jsonl and curves.png.
    Flags override the --config file, which overrides the defaults.
    """
    from mesonet.training import checkpoint_config, resolve_config, train
    from mesonet.training.progress import RichReporter, format_row, training_progress

    if out_dir is None:
        raise typer.BadParameter("--out is required: the folder for the run's files")

    overrides = {
        "arch": arch,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "init": init,
        "workers": workers,
        "cache": cache,
        "augment": augment,
        "loss": loss,
        "max_train": max_train,
        "threads": threads,
        "precision": precision,
        "compile": compile_,
        "synthetic": synthetic,
        "synthetic_share": synthetic_share,
        "resample": resample,
        "epoch_size": epoch_size,
        "select": select,
    }
    base = checkpoint_config(out_dir) if resume else None
    config = resolve_config(config_file, overrides, base=base)
    sources = _train_sources(data, weights, holdout, config_file)
    command = "mesonet " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["train"] else ""
    with training_progress(err) as progress:
        result = train(
            sources,
            out_dir,
            config,
            resume=resume,
            reporter=RichReporter(progress),
            command=command,
        )
    if result.best_path is None:
        out.print(f"no epoch trained; checkpoint in {result.checkpoint_path}")
        return
    best = next((r for r in result.history if r.get("epoch") == result.best_epoch), {})
    out.print(f"best {format_row(best)}", highlight=False, soft_wrap=True)
    out.print(
        f"wrote {result.best_path} (threshold {result.best_metrics.get('threshold', 0.5):.3f}) "
        f"and {result.checkpoint_path}",
        highlight=False,
        soft_wrap=True,
    )


def _train_sources(
    data: list[Path] | None,
    weights: str | None,
    holdout: list[Path] | None,
    config_file: Path | None,
) -> list:
    """The run's sources: DATA (else the --config file's [[sources]]), --weights applied to
    the training sources in order, plus every --holdout."""
    import dataclasses

    from mesonet.training.sources import SourceSpec, load_sources

    if data:
        sources = [SourceSpec(str(d)) for d in data]
    elif config_file is not None:
        sources = load_sources(config_file)
    else:
        sources = []
    if weights:
        trained = [s for s in sources if not s.holdout]
        try:
            values = [float(w) for w in weights.split(",")]
        except ValueError:
            raise typer.BadParameter(f"--weights: not numbers: {weights!r}") from None
        if len(values) != len(trained):
            raise typer.BadParameter(
                f"--weights gives {len(values)} weights for {len(trained)} training sources"
            )
        given = iter(values)
        sources = [s if s.holdout else dataclasses.replace(s, weight=next(given)) for s in sources]
    sources += [SourceSpec(str(h), holdout=True) for h in holdout or []]
    if not any(not s.holdout for s in sources):
        raise typer.BadParameter("no training data: give DATA, or a --config file with [[sources]]")
    return sources


@app.command("scan", cls=HelpCommand)
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
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")
    ] = False,
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
    max_frame_mp: MaxFrameOption = 8.3,
    max_seconds: MaxSecondsOption = 300.0,
    max_memory_mb: MaxMemoryOption = 2048.0,
) -> None:
    """Scan a whole collection into one results file, on this machine or a Ray cluster.

    Writes one record per input (as predict --format jsonl), appended and flushed as work
    finishes, so an interrupted scan resumes where it stopped when rerun. Exit code 0 when
    every input has a record that is not an error, 1 otherwise, 2 on a usage error.
    """
    from rich.progress import MofNCompleteColumn, Progress, TimeRemainingColumn

    from mesonet.scan import ENGINES, scan

    if engine not in ENGINES:
        raise typer.BadParameter(f"choose one of {', '.join(ENGINES)}", param_hint="--engine")
    if workers is not None and (workers < 1 or engine != "ray"):
        raise typer.BadParameter("must be at least 1, with --engine ray", param_hint="--workers")
    if address is not None and engine != "ray":
        raise typer.BadParameter("joins a Ray cluster: use it with --engine ray")
    bar = Progress(
        *Progress.get_default_columns()[:2],
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=engine == "ray",  # Ray Data shows its own progress
    )
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
            limits=_analysis_limits(max_frame_mp, max_seconds, max_memory_mb),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.statuses.items()))
    out.print(
        f"{summary.written} of {summary.listed} inputs analysed ({summary.skipped} already in "
        f"{summary.output}) in {summary.seconds:.1f} s, {summary.files_per_s:.1f} files/s"
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
            f"[red]{len(summary.lost)} inputs lost with failing workers[/] ({shown}); "
            "rerun to retry them",
            highlight=False,
            soft_wrap=True,
        )
    if summary.failed:
        err.print(f"[red]{summary.failed} inputs have error records[/] (see {summary.output})")
    raise typer.Exit(EXIT_FAILED_INPUTS if summary.failed or summary.lost else EXIT_OK)


@app.command("serve", cls=HelpCommand)
def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.", metavar="HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", metavar="PORT")] = 8000,
    model: ModelOption = None,
    max_upload_mb: Annotated[
        float, typer.Option(help="Larger uploads are refused (413).", metavar="MB")
    ] = 200,
    max_in_flight: Annotated[
        int, typer.Option(help="Analyses running at once; more wait, then get 503.", metavar="N")
    ] = 2,
    max_uploads: Annotated[
        int,
        typer.Option(help="Uploads received at once; more are answered 503 at once.", metavar="N"),
    ] = 32,
    read_idle_s: Annotated[
        float,
        typer.Option(
            help="Drop an upload (408) that sends nothing for this many seconds.", metavar="SECONDS"
        ),
    ] = 30.0,
    read_total_s: Annotated[
        float,
        typer.Option(
            help="Drop an upload (408) still arriving after this many seconds.", metavar="SECONDS"
        ),
    ] = 600.0,
    trust_unverified: TrustOption = False,
    max_frame_mp: MaxFrameOption = 8.3,
    max_seconds: MaxSecondsOption = 300.0,
    max_memory_mb: MaxMemoryOption = 2048.0,
) -> None:
    """Run the web service: a page at / and the API at /api/v1/detect (docs at /docs)."""
    import uvicorn

    from mesonet.serve import create_app
    from mesonet.serve.listen import listen_socket

    if not 0 < port < 65536:
        raise typer.BadParameter("must be from 1 to 65535", param_hint="--port")
    if not max_upload_mb > 0:
        raise typer.BadParameter("must be positive", param_hint="--max-upload-mb")
    if max_in_flight < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--max-in-flight")
    if max_uploads < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--max-uploads")
    for value, name in ((read_idle_s, "--read-idle-s"), (read_total_s, "--read-total-s")):
        if not value > 0:
            raise typer.BadParameter("must be positive", param_hint=name)
    limits = _analysis_limits(max_frame_mp, max_seconds, max_memory_mb)
    sock = listen_socket(host, port)  # a port in use: one line and exit 2, before any banner
    with sock:
        web = create_app(
            model,
            max_upload_mb=max_upload_mb,
            max_in_flight=max_in_flight,
            trust_unverified=trust_unverified,
            limits=limits,
            max_uploads=max_uploads,
            read_idle_s=read_idle_s,
            read_total_s=read_total_s,
        )
        shown = f"[{host}]" if ":" in host else host
        err.print(f"mesonet serving on http://{shown}:{port}/ (API docs at /docs); Ctrl+C stops")
        config = uvicorn.Config(web, host=host, port=port, log_level="info")
        uvicorn.Server(config).run(sockets=[sock])


def main() -> None:
    """Entry point: library errors become one red line and exit code 2, never a traceback."""
    # FFmpeg's own log lines ("moov atom not found", "Picture size ... is invalid") would
    # repeat what each file's one-line error record says; set the variable to see them.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")  # AV_LOG_FATAL
    try:
        app()  # click's standalone mode: usage errors exit 2 with a usage line
    except MesonetError as exc:
        from rich.markup import escape

        from mesonet.results import safe_text

        message = escape(safe_text(" ".join(str(exc).split())))  # one line, never markup
        err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
        sys.exit(getattr(exc, "exit_code", EXIT_USAGE))  # OutputError: 1 when writing failed


if __name__ == "__main__":
    main()
