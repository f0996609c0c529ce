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
            metavar="MODEL",
            show_default=False,
        ),
    ],
    data: Annotated[
        Path,
        typer.Argument(
            help="Validation folder with real/ and fake/ (or df/): never the test data.",
            metavar="DATA",
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
            metavar="FILE",
            show_default=False,
        ),
    ],
    method: Annotated[
        str,
        typer.Option(
            help="temperature (one number, keeps the ranking) or isotonic (a map).",
            metavar="METHOD",
        ),
    ] = "temperature",
    faces: FacesOption = "detect",
    frames: FramesOption = 32,
    backend: BackendOption = "auto",
    limit: LimitOption = None,
    trust_unverified: TrustOption = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the file --out names if it exists.")
    ] = False,
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
    _check_choices(method, threshold_rule)
    _check_out(model, data, out_file, force)  # before the scoring run, not after it
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


def _check_choices(method: str, threshold_rule: str | None) -> None:
    """Refuse an unknown --method or --threshold-rule (one line, exit 2) before the output
    and the scoring are looked at."""
    from typing import get_args

    from mesonet.errors import MesonetError
    from mesonet.evaluation.metrics import ThresholdRule
    from mesonet.models.calibration import CALIBRATION_METHODS

    rules = get_args(ThresholdRule)
    if method not in CALIBRATION_METHODS:
        raise MesonetError(
            f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, not {method!r}"
        )
    if threshold_rule is not None and threshold_rule not in rules:
        raise MesonetError(
            f"threshold rule must be one of {', '.join(rules)}, not {threshold_rule!r}"
        )


def _check_out(model: str, data: Path, out_file: Path, force: bool) -> None:
    """Refuse --out before any scoring: the wrong kind for the model (a single model is a
    .safetensors file, an ensemble a .json card), a file that exists (without --force), one
    of the inputs, or anything :func:`mesonet.destinations.check_output_file` refuses."""
    from mesonet.destinations import OutputError, check_output_file
    from mesonet.models import read_card
    from mesonet.models.card import ENSEMBLE_ARCH
    from mesonet.models.ensemble import SEPARATOR, is_ensemble_name
    from mesonet.models.registry import resolve_model_path

    if is_ensemble_name(model) and not Path(model).exists():
        ensemble = True
        inputs = [Path(part.strip()) for part in model.split(SEPARATOR)]
    else:
        path = resolve_model_path(model)
        ensemble = read_card(path).arch == ENSEMBLE_ARCH
        inputs = [path]
    kind = ".json" if ensemble else ".safetensors"
    if out_file.suffix.lower() != kind:
        what = "an ensemble, written as a .json card" if ensemble else "a single model, written"
        raise OutputError(f"--out {out_file}: {model} is {what} as {kind}: name it so")
    check_output_file(out_file, "calibrated model", inputs=[*inputs, data], overwrite=force)
