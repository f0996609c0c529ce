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


FORMATS = ("table", "json", "jsonl", "csv")


def _positive(value: int | None, name: str) -> int | None:
    if value is not None and value < 1:
        raise typer.BadParameter("must be at least 1", param_hint=name)
    return value


@app.command("predict")
def predict_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Images, videos and folders of them.", show_default=False)
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Bundled model name or .safetensors path [default: bundled default].",
        ),
    ] = None,
    output_format: Annotated[
        str,
        typer.Option(
            "--format", "-f", help="table, json (an array), jsonl (one record a line) or csv."
        ),
    ] = "table",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the results to this file instead of stdout."),
    ] = None,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(help="Scan at most N images and at most N videos.")
    ] = None,
    ilimit: Annotated[int | None, typer.Option(help="Scan at most N images.")] = None,
    vlimit: Annotated[int | None, typer.Option(help="Scan at most N videos.")] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="Label fake when fake_probability >= T [default: the model card's]."),
    ] = None,
    frames: Annotated[int, typer.Option(help="Frames sampled evenly from each video.")] = 32,
    fps: Annotated[
        float | None, typer.Option(help="Sample F frames per second of video instead of --frames.")
    ] = None,
    faces: Annotated[
        str,
        typer.Option(
            help="detect: find and align faces (MTCNN). none: each image is already a face crop."
        ),
    ] = "detect",
    aggregate: Annotated[
        str,
        typer.Option(
            help="Video score per face track: mean (paper), vote (authors' code) or confident."
        ),
    ] = "mean",
    annotate: Annotated[
        Path | None,
        typer.Option(
            help="Write annotated copies here (boxes coloured by score; timeline for videos)."
        ),
    ] = None,
) -> None:
    """Tell whether the faces in images and videos are forged, and where.

    Prints one record per input file (status ok, no_face or error). Exit code 0 when every
    input was processed, 1 when some failed (their records say why), 2 on a usage error.
    """
    from mesonet.inputs import Limits
    from mesonet.output import write_results
    from mesonet.pipeline import Detector

    if output_format not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")
    for value, name in ((limit, "--limit"), (ilimit, "--ilimit"), (vlimit, "--vlimit")):
        _positive(value, name)
    detector = Detector(
        model,
        threshold=threshold,
        faces=faces,
        frames=frames,
        fps=fps,
        aggregate=aggregate,
        annotate_dir=annotate,
    )
    limits = Limits(limit=limit, ilimit=ilimit, vlimit=vlimit)
    failed = write_results(detector, paths, output_format, output, recursive, limits, out, err)
    raise typer.Exit(EXIT_FAILED_INPUTS if failed else EXIT_OK)


def main() -> None:
    """Entry point: library errors become one red line and exit code 2, never a traceback."""
    try:
        app()  # click's standalone mode: usage errors exit 2 with a usage line
    except MesonetError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
