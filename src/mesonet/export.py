"""Graph files: a model as the OpenVINO graph a lean install (no PyTorch) runs.

For a model named NAME, :func:`export_graph` writes three files into one folder:

- ``NAME.xml`` and ``NAME.bin``: the OpenVINO IR of the very graph the ``openvino`` backend
  builds in memory (:func:`mesonet.backends.int8.fp32_graph`: batch norms folded, the
  model's own resize and normalisation inside, ops named by
  :func:`mesonet.backends.fused.name_ops`): float32 N x 3 x 256 x 256 crops in [0, 1] in,
  the N raw logits out (before the card's calibration). A video model's graph takes
  N x T x 3 x 256 x 256 windows (T: the card's ``sequence.frames``) and gives what
  :meth:`mesonet.pipeline.temporal.TemporalStage.logits` computes.
- ``NAME.graph.json``: what the graph is (:data:`FORMAT`): the model's card, the sha256 of
  the tensors it was made from (:func:`mesonet.models.card.tensors_sha256`) and of the
  graph's files (:func:`graph_digest`), its input and the OpenVINO version that wrote it.

A model whose card ships int8 statistics also gets ``NAME.int8.xml``/``.bin``: the graph
:func:`mesonet.backends.int8.int8_graph` rebuilds from them, with the record naming them.
An ensemble has no fp32 graph of its own (the loader splices its members' graphs as
:mod:`mesonet.backends.fused` does): exporting one writes each member's graph (named by its
file) and the ensemble's ``NAME.graph.json`` (kind ``ensemble``, no ``graph``; its int8
graph when it ships statistics). No file holds the uint8 NHWC input conversion: the loader
adds it as :class:`~mesonet.backends.openvino_engine.OpenVinoScorer` does.

The package ships the graphs of its bundled models (``tools/build_graphs.py``, ``make
graphs``); ``mesonet export`` writes those of one's own. Needs PyTorch (and NNCF for an int8
graph): imported only by that command and the build tool.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from mesonet.destinations import check_output_dir, check_outputs_in, write_output
from mesonet.errors import ModelError
from mesonet.models.graph import FORMAT as FORMAT
from mesonet.models.graph import SUFFIX as SUFFIX
from mesonet.models.graph import graph_digest as graph_digest

IMAGE_INPUT = "float32 N x 3 x 256 x 256 in [0, 1]"
VIDEO_INPUT = "float32 N x T x 3 x 256 x 256 in [0, 1]"
INT8_OPS = "mesonet_int8/"
"""The prefix :func:`stable_names` gives the ops quantisation adds."""


def stable_names(graph: Any) -> Any:
    """``graph`` with the ops still named by OpenVINO's process-wide counter (``Constant_
    164016``: those quantisation adds) named by their place in graph order instead, so the
    same graph written twice is the same file."""
    for k, op in enumerate(graph.get_ordered_ops()):
        kind, name = op.get_type_name(), op.get_friendly_name()
        if name.startswith(kind + "_") and name[len(kind) + 1 :].isdigit():
            op.set_friendly_name(f"{INT8_OPS}{k}_{kind}")
    return graph


def image_graph(model: nn.Module) -> Any:
    """The logit graph of an image model, as the ``openvino`` backend builds it."""
    from mesonet.backends.int8 import fp32_graph

    return fp32_graph(model)


def video_graph(model: nn.Module) -> Any:
    """The logit graph of a video model: ``model.logits`` traced on float32
    N x T x 3 x 256 x 256 windows, the batch dimension left free."""
    import openvino as ov
    import torch

    from mesonet.backends.batching import INPUT_SIZE
    from mesonet.backends.folding import Logits
    from mesonet.backends.fused import name_ops

    shape = [int(model.card.sequence["frames"]), 3, INPUT_SIZE, INPUT_SIZE]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        graph = ov.convert_model(
            Logits(model).eval(),
            example_input=torch.zeros(1, *shape),
            input=[ov.PartialShape([-1, *shape])],
        )
    return name_ops(graph)


def shipped_int8(model: nn.Module) -> tuple[Any, dict[str, Any]] | None:
    """``(int8 graph, record)`` of a model whose card ships int8 statistics (None without):
    the graph :func:`mesonet.backends.int8.int8_graph` rebuilds from them, and what names
    it (the cache entry it would be read from, the card's calibration and statistics, the
    members kept in fp32, the weights the statistics are bound to, the recipe's format)."""
    from mesonet.backends import int8
    from mesonet.backends.int8_choice import fp32_members, shipped_statistics

    record = getattr(model.card, "int8", None) or {}
    if not record.get("statistics"):
        return None
    statistics = shipped_statistics(model)
    if statistics is None:
        raise ModelError(
            f"{model.card.name}: the int8 statistics its card names "
            f"({record['statistics'].get('file')}) are missing or altered"
        )
    try:
        import nncf
    except ImportError as exc:
        raise ModelError("an int8 graph needs NNCF: pip install nncf") from exc
    kept = fp32_members(model)
    try:
        graph, _ = int8.quantize(model, statistics=statistics, fp32_members=kept, save=False)
    except ValueError as exc:
        raise ModelError(f"{model.card.name}: cannot rebuild its int8 graph ({exc})") from None
    made_from = record["statistics"]["sha256"]
    identity = {
        "entry": int8.entry_name(model, record["calibration"]["sha256"], kept, made_from),
        "calibration": record["calibration"],
        "statistics": record["statistics"],
        "fp32_members": kept,
        "weights": int8.weights_binding(model),
        "format": int8.FORMAT,
        "nncf": nncf.__version__,
    }
    return stable_names(graph), identity


def export_graph(
    model_or_name_or_path: nn.Module | str | Path,
    out_dir: str | Path,
    name: str | None = None,
    *,
    members: bool = True,
    trust_unverified: bool = False,
) -> Path:
    """Write the graph files of a model (a loaded one, a bundled name, a ``.safetensors``
    file or an ensemble card) into ``out_dir`` (created when missing) and return its
    ``NAME.graph.json``.

    ``name``: NAME (default: the model file's name without its suffix, for a bundled model
    its name; a loaded model's card name). An ensemble's members are written too (each
    named by its own file) unless ``members`` is false. Refuses (``OutputError``) a folder
    or file that cannot be written safely, before any graph is built.
    """
    from mesonet.models.card import ENSEMBLE_ARCH

    model, card, name = _resolve(model_or_name_or_path, name, trust_unverified)
    folder = check_output_dir(out_dir, "graph folder", create=True, parents=True)
    ensemble = card.arch == ENSEMBLE_ARCH
    parts = [(_file_name(m), m) for m in model.members] if ensemble and members else []
    if len({n for n, _ in parts}) < len(parts):
        raise ModelError(f"{name}: two members have the same file name: export them one by one")
    with_int8 = bool((card.int8 or {}).get("statistics"))
    planned = [f for n, _ in parts for f in _files(n)] + _files(name, not ensemble, with_int8)
    check_outputs_in(folder, planned, "graph file")
    for member_name, member in parts:
        _export_one(member, member.card, folder, member_name)
    return _export_one(model, card, folder, name, fp32=not ensemble)


def _files(name: str, fp32: bool = True, int8: bool = False) -> list[str]:
    """The files the graph of ``name`` is written as."""
    graphs = ([name] if fp32 else []) + ([f"{name}.int8"] if int8 else [])
    return [f"{g}{s}" for g in graphs for s in (".xml", ".bin")] + [name + SUFFIX]


def _resolve(
    given: nn.Module | str | Path, name: str | None, trust_unverified: bool
) -> tuple[nn.Module, Any, str]:
    """The model, the card to describe it by (as its file holds it: an ensemble's members
    named as written) and NAME."""
    from mesonet.models import load_model, read_card
    from mesonet.models.card import check_name
    from mesonet.models.ensemble import is_ensemble_name
    from mesonet.models.references import file_kind, locate

    if isinstance(given, nn.Module):
        model, card = given, given.card
        default = card.name
    else:
        text = str(given)
        if is_ensemble_name(text) and not file_kind(Path(text)):
            raise ModelError(
                f"{text}: export takes one model (a bundled name, a .safetensors file or an "
                "ensemble card .json), not an ensemble a+b: export each member"
            )
        path, _ = locate(text)
        card = read_card(path)
        model = load_model(text, trust_unverified=trust_unverified)
        default = path.name.removesuffix(path.suffix)
    name = default if name is None else name
    try:
        check_name(name, "the graph's name")
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    if Path(name).name != name or name in (".", ".."):
        raise ModelError(f"the graph's name {name!r} must be a file name, not a path")
    return model, card, name


def _file_name(member: nn.Module) -> str:
    """The NAME a member's graph is written as: its file's name without the suffix (a
    bundled member's name), else its card's name."""
    path = getattr(member, "card_path", None)
    return member.card.name if path is None else Path(path).name.removesuffix(Path(path).suffix)


def _export_one(model: nn.Module, card: Any, folder: Path, name: str, fp32: bool = True) -> Path:
    """Write ``name``'s graphs and its ``.graph.json`` (last, so it names complete files)."""
    import openvino as ov

    from mesonet.models.card import tensors_sha256
    from mesonet.models.sequence import is_video_card

    video = is_video_card(card)
    kind = "video" if video else "image" if fp32 else "ensemble"
    doc: dict[str, Any] = {"format": FORMAT, "name": name, "kind": kind}
    doc["card"] = dataclasses.asdict(card)
    if fp32:
        doc["weights_sha256"] = tensors_sha256(model.state_dict())
        graph = video_graph(model) if video else image_graph(model)
        graph.set_friendly_name(name)
        doc["graph"] = _write_graph(graph, folder, name)
    doc["input"] = VIDEO_INPUT if video else IMAGE_INPUT
    doc["output"] = "logit"
    doc["openvino"] = ov.__version__
    quantised = None if video else shipped_int8(model)
    if quantised is not None:
        graph, record = quantised
        doc["int8"] = {**_write_graph(graph, folder, f"{name}.int8"), "record": record}
    path = folder / f"{name}{SUFFIX}"
    write_output(path, json.dumps(doc, indent=2) + "\n", "graph description")
    return path


def _write_graph(graph: Any, folder: Path, stem: str) -> dict[str, str]:
    """Write ``graph`` as ``stem.xml`` and ``stem.bin`` (each replacing its file whole);
    its entry in the ``.graph.json``."""
    import openvino as ov

    with tempfile.TemporaryDirectory(prefix="mesonet-export-") as tmp:
        xml = Path(tmp) / "graph.xml"
        ov.save_model(graph, str(xml), compress_to_fp16=False)
        data = {".xml": xml.read_bytes(), ".bin": xml.with_suffix(".bin").read_bytes()}
    for suffix, content in data.items():
        write_output(folder / f"{stem}{suffix}", content, "graph file")
    digest = hashlib.sha256(data[".xml"] + data[".bin"]).hexdigest()
    return {"xml": f"{stem}.xml", "bin": f"{stem}.bin", "sha256": digest}
