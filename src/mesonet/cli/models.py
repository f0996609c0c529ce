"""`mesonet models` and `mesonet import-keras`: the bundled models, and converting the
authors' Keras weights into one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from mesonet.cli.console import err, out

# The dev-visible sets bundled models are measured on (tools/bundle_model.py), as table columns.
MODEL_SETS = (
    ("dfdc_faces_test", "DFDC\ntest"),
    ("mesonet_deepfake_val", "Deepfake\nval"),
    ("ffpp_faces_dev", "FF++\ndev"),
    ("ffpp_c40_videos", "FF++ c40\nvideos"),
)


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
