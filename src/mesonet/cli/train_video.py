"""`mesonet train-video`: train a video model (a temporal head over a frozen frame model,
or meso4video) on a folder of real/ and fake/ videos."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from mesonet.cli.console import err, out


def train_video_command(
    data: Annotated[
        Path,
        typer.Argument(
            help="A folder with real/ and fake/ videos (an optional manifest.csv with an "
            "identities column keeps clips sharing a person on one side of the split).",
            show_default=False,
            metavar="DATA",
        ),
    ],
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Run folder: best.safetensors, last.pt, the prepared clips (bank-*.pt).",
            show_default=False,
            metavar="DIR",
        ),
    ],
    arch: Annotated[
        str,
        typer.Option(
            help="temporal_conv (a head over a frozen frame model's per-frame embeddings) "
            "or meso4video (Conv3D over the crops, from scratch).",
            metavar="[temporal_conv|meso4video]",
        ),
    ] = "temporal_conv",
    frame_model: Annotated[
        str | None,
        typer.Option(
            help="temporal_conv: the frozen frame model (bundled name or .safetensors, "
            "copied into the run folder at each start; --resume needs the same one).",
            metavar="NAME|FILE",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Model card name (default ARCH.<out folder name>).")
    ] = None,
    frames: Annotated[int, typer.Option(help="Frames per window.", metavar="N")] = 24,
    augmented: Annotated[
        int, typer.Option(help="Augmented copies of each clip (H.264 included).", metavar="N")
    ] = 3,
    blended: Annotated[
        int, typer.Option(help="Temporal self-blended fakes of each real clip.", metavar="N")
    ] = 6,
    synthetic_share: Annotated[
        float, typer.Option(help="Share of the fake windows that are self-blended.")
    ] = 0.5,
    val_fraction: Annotated[float, typer.Option(help="Share of clips held out.")] = 0.2,
    epochs: Annotated[int, typer.Option(metavar="N")] = 30,
    steps: Annotated[int, typer.Option(help="Batches per epoch.", metavar="N")] = 40,
    batch_size: Annotated[int, typer.Option(metavar="N")] = 16,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    patience: Annotated[
        int, typer.Option(help="Stop after N epochs without gain.", metavar="N")
    ] = 8,
    seed: Annotated[int, typer.Option()] = 0,
    threads: Annotated[int, typer.Option(help="Torch threads.", metavar="N")] = 1,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from DIR/last.pt.")] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace the run DIR holds (refused without it or --resume)."),
    ] = False,
) -> None:
    """Train a video model on clips: 24-frame windows of each clip's face track, split by
    clip and identity, with temporal self-blended fakes made from the real clips."""
    from mesonet.training.errors import TrainingError
    from mesonet.training.video_train import VideoTrainConfig, train_video

    config = VideoTrainConfig(
        data=str(data),
        out=str(out_dir),
        arch=arch,
        frame_model=frame_model or "",
        name=name or "",
        frames=frames,
        augmented=augmented,
        blended=blended,
        synthetic_share=synthetic_share,
        val_fraction=val_fraction,
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        seed=seed,
        threads=threads,
    )
    command = "mesonet train-video " + shlex.join(sys.argv[2:])
    try:
        best = train_video(config, command, log=_log, resume=resume, force=force)
    except TrainingError as exc:
        raise typer.BadParameter(str(exc)) from None
    out.print(f"best weights: {best}")


def _log(line: str) -> None:
    err.print(line, highlight=False, soft_wrap=True)
