"""`mesonet export`: write a model as the OpenVINO graph files a lean install runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mesonet.cli.console import err
from mesonet.cli.options import TrustOption


def export_command(
    model: Annotated[
        str,
        typer.Argument(
            help="Bundled model name, .safetensors path or ensemble card (.json).",
            metavar="MODEL",
            show_default=False,
        ),
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder to write the graph files to (created when missing). Default: the "
            "model file's folder; for a bundled name, the current folder.",
            metavar="DIR",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="NAME of the files (default: the model file's name without its suffix).",
            metavar="NAME",
            show_default=False,
        ),
    ] = None,
    trust_unverified: TrustOption = False,
) -> None:
    """Write a model as an OpenVINO graph: NAME.xml, NAME.bin and NAME.graph.json.

    The graph is what the openvino backend builds from the weights (batch norms folded,
    the model's resize and normalisation inside, logits out); NAME.graph.json holds the
    model's card and the sha256 of the weights and of the graph. A lean install of mesonet
    (no PyTorch) predicts from these files (mesonet.models.graph reads them); the bundled
    models ship theirs. An ensemble card writes each member's graph and its own
    NAME.graph.json (and its int8 graph when its card ships int8 statistics). Existing
    graph files of the same names are replaced.
    """
    import json

    from mesonet.destinations import check_output_dir
    from mesonet.export import export_graph

    if out_dir is None:
        out_dir = _default_folder(model)
    check_output_dir(out_dir, "graph folder", inputs=[model], create=False, parents=True)
    written = export_graph(model, out_dir, name, trust_unverified=trust_unverified)
    doc = json.loads(written.read_text())
    graphs = [doc[k] for k in ("graph", "int8") if k in doc]
    shown = ", ".join(f"{g['xml']} sha256 {g['sha256'][:12]}…" for g in graphs)
    err.print(f"wrote {written}" + (f" ({shown})" if shown else ""), highlight=False)


def _default_folder(model: str) -> Path:
    """The folder of the model's file; the current folder for a bundled name (or for a name
    that means nothing: the export says why)."""
    from mesonet.models.references import file_kind

    path = Path(model)
    return path.parent if file_kind(path) == "file" else Path.cwd()
