"""`mesonet models` and `mesonet import-keras`: the bundled models, and converting the
authors' Keras weights into one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from mesonet.cli.console import err, out

# The dev-visible sets bundled models are measured on (tools/bundle_model.py), as table
# columns: headers of whole words, one a line, so no column needs more than the widest word.
MODEL_SETS = (
    ("dfdc_faces_test", "DFDC\ntest"),
    ("mesonet_deepfake_val", "Deep-\nfake\nval"),  # 5 wide: 80 columns hold a 25-char name
    ("ffpp_faces_dev", "FF++\ndev"),
    ("ffpp_c40_videos", "FF++\nc40\nvideos"),
)
CALIBRATED_MIN_WIDTH = 104
"""Terminal width from which the table also shows the data each model is calibrated on."""


def auc_text(value: float) -> str:
    """An AUC to three decimals, halves rounded up as the README and the model cards do
    (0.6175 -> 0.618; ``f"{0.6175:.3f}"`` gives 0.617, the float being 0.61749999...)."""
    from decimal import ROUND_HALF_UP, Decimal

    exact = Decimal(f"{value:.9f}")  # without the float's binary noise
    return str(exact.quantize(Decimal("0.001"), rounding=ROUND_HALF_UP))


def trained_on(card) -> str:
    """What a model was trained on, in a few words: its training sources (the held-out ones
    left out) and self-blended fakes, the authors' dataset, or an ensemble's members."""
    if card.members:
        return "ensemble of " + " + ".join(str(m.get("model", "?")) for m in card.members)
    training = card.training or {}
    data = str(training.get("data") or "")
    if training.get("by") == "the authors":
        return data.split(" (")[0] or "the authors' data"
    sources = training.get("sources")
    if isinstance(sources, list):
        names = [
            s.get("name") or Path(str(s.get("path", "?"))).name
            for s in sources
            if isinstance(s, dict) and not s.get("holdout")
        ]
    else:  # "name: path (weight 1); name: path (held out)" or one path
        entries = [e for e in data.split("; ") if e and not e.endswith("(held out)")]
        names = [e.split(": ")[0] if ": " in e else Path(e).name for e in entries]
    config = training.get("config")
    synthetic = config.get("synthetic") if isinstance(config, dict) else None
    if synthetic and synthetic != "none":
        names.append("self-blended fakes")
    # " + " rather than commas: "mesonet-deepfake-train," would not fit its column
    return " + ".join(names) or "-"


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

    from mesonet.models.card_files import list_models
    from mesonet.models.references import default_model_name

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
    """One row per model: what it was trained on and its ROC AUC on each measured set (and
    what it is calibrated on, in a terminal wide enough); the default named below. Lines
    break only between words: at 80 columns every dataset name is whole (``--json`` has
    every field)."""
    from mesonet.models.graph import ships_int8
    from mesonet.output import plain_table

    wide = out.width >= CALIBRATED_MIN_WIDTH
    int8 = [card.name for card in cards if ships_int8(card)]
    # every word of "trained on" whole (an ensemble's member names are 25 characters): in
    # 80 columns that leaves one space between columns instead of two
    words = max((len(w) for card in cards for w in trained_on(card).split()), default=10)
    names = max((len(card.name) for card in cards), default=5)
    needed = names + words + sum(max(5, *map(len, h.split())) for _, h in MODEL_SETS)
    columns = 2 + len(MODEL_SETS) + wide
    roomy = needed + (20 if wide else 0) + 2 * (columns - 1) <= out.width
    table = plain_table(
        padding=(0, 1) if roomy else (0, 0),
        title="Bundled models: ROC AUC measured by mesonet evaluate",
        title_justify="left",
        caption=(f"Default: {default} (first). " if default else "")
        + (
            f"Run in int8 by --backend auto (AUC within 0.005 of the fp32 figures shown): "
            f"{', '.join(int8)}. "
            if int8
            else ""
        )
        + ("Calibrated on: the validation set its probabilities are fitted on. " if wide else "")
        + "Every field: mesonet models --json",
        caption_justify="left",
        show_edge=False,
    )
    table.add_column("model", no_wrap=True)
    table.add_column("trained on", overflow="fold", min_width=words)
    for _, header in MODEL_SETS:
        table.add_column(header, justify="right", no_wrap=True)
    if wide:
        table.add_column("calibrated on", overflow="fold", min_width=20)
    for card in cards:
        cells = []
        for key, _ in MODEL_SETS:
            values = card.metrics.get(key)
            auc = values.get("auc") if isinstance(values, dict) else None
            cells.append(auc_text(auc) if isinstance(auc, float) else "-")
        calibrated = card.calibration.get("data", "?") if card.calibration else "-"
        row = [Text(card.name), Text(trained_on(card)), *cells]
        table.add_row(*row, *([Text(calibrated)] if wide else []))
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
