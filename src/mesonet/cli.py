"""The `mesonet` command: a thin shell that parses, calls the library and prints."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mesonet.errors import MesonetError

app = typer.Typer(
    name="mesonet",
    help="Detect forged faces (deepfakes) in images and videos with MesoNet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()

EXIT_OK, EXIT_FAILED_INPUTS, EXIT_USAGE = 0, 1, 2


@app.command("models")
def models_command(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the model cards as JSON.")
    ] = False,
) -> None:
    """List the bundled models (the default first) with their measured metrics."""
    import json

    from mesonet.models import default_model_name, list_models

    cards = list_models()
    if json_output:
        out.print_json(json.dumps([c.__dict__ for c in cards]))
        return
    if not cards:
        out.print("No bundled models. Convert the authors' weights with `mesonet import-keras`.")
        return
    table = Table("name", "architecture", "threshold", "trained on", "metrics")
    default = default_model_name()
    for card in cards:
        metrics = ", ".join(f"{k} {v}" for k, v in card.metrics.items() if not isinstance(v, dict))
        name = card.name + (" (default)" if card.name == default else "")
        table.add_row(
            name, card.arch, f"{card.threshold:.3f}", str(card.training.get("data", "")), metrics
        )
    out.print(table)


@app.command("import-keras")
def import_keras_command(
    src: Annotated[Path, typer.Argument(help="The authors' Keras weights (.h5).")],
    dst: Annotated[Path, typer.Argument(help="Where to write our weights (.safetensors).")],
    arch: Annotated[
        str, typer.Option(help="auto (detect from the file), meso4 or mesoinception4.")
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


def main() -> None:
    """Entry point: library errors become one red line and exit code 2, never a traceback."""
    try:
        app()  # click's standalone mode: usage errors exit 2 with a usage line
    except MesonetError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
