"""`mesonet calibrate`: fit a model's calibration and verdict bands on validation data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mesonet.cli.console import err, out
from mesonet.cli.options import (
    BackendOption,
    FacesOption,
    FramesOption,
    LimitOption,
    TrustOption,
    input_limits,
)


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
            limits=input_limits(limit, None, None),
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
