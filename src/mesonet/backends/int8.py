"""The ``openvino-int8`` backend: a model quantised to int8 by NNCF, with its AUC measured.

Post-training quantisation (``nncf.quantize``: int8 weights per channel, int8 activations
with ranges observed on calibration crops, fast bias correction) of the graph the
``openvino`` backend runs: batch norms folded, the model's own preprocessing inside, logit
out; for an ensemble the fused graph of all its members (:mod:`mesonet.backends.fused`),
quantised as one.

The recipe (:func:`quantize`): NNCF's ``MIXED`` preset (symmetric weights, asymmetric
activations) with the dense heads (``MatMul``) and an ensemble's weighted sum of member
logits left in fp32: they cost next to nothing, quantising the heads shrank the logits by a
third, and quantising the sum clipped the logits to the range the calibration crops gave.
Each network's first ``int8_fp32_convs`` convolutions stay in fp32 too (6 for the
EfficientNet, whose first layers in int8 cost 0.02 AUC on FaceForensics++), and an
ensemble's int8 record may keep whole members in fp32 (``fp32_members``: the default keeps
its Meso-4, which lost 0.017 on FaceForensics++ in int8 and 0.010 with its first
convolution in fp32, while costing a third of the EfficientNet). Measured by
``tools/int8_recipes.py``, tables in docs/speed.md.
Chosen by agreement with fp32 on dfdc-faces/val crops held out of calibration (not on any
reported set): for meso4.dfdc the mean |logit change| fell from 0.34 (NNCF's defaults) to
0.12, for mesoinception4.paper from 1.14 to 0.36.

**Where the calibration crops come from.** Quantisation needs data like the data scored,
and nothing may be fetched at run time. The calibration data is a folder of validation crops
(never a set whose AUC is reported): :func:`quantize` saves the int8 graph as OpenVINO IR in
the user cache (``$MESONET_CACHE/openvino-int8``, see :mod:`mesonet.backends.cache`), keyed by
the model's graph digest (its tensors, module tree and OpenVINO version), a sha256 of the
calibration crops and :data:`FORMAT` (a graph rebuilt from a statistics file: also that
file's sha256, :func:`entry_name`), with the statistics NNCF collected on the crops beside
it (:data:`STATISTICS`) and the sha256 of every file (checked when read; a damaged entry is
rebuilt). ``benchmarks/bench_int8.py`` makes it, measures the AUC change
against fp32 on the dev sets and writes the card's ``int8`` record: the calibration crops'
digest, the changes, and the statistics file shipped beside the card (``int8.statistics``,
sha256-checked). The bundled default ships its statistics (no image: per-channel ranges and
means), so every installation can rebuild the graph measured without the calibration data
(:mod:`mesonet.backends.int8_statistics`). ``python -m mesonet.backends.int8 MODEL FOLDER``
quantises a model of your own on your own validation folder.

Which int8 graph runs, for ``auto`` and for the explicit backend, is decided by the card's
record: :mod:`mesonet.backends.int8_choice`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from mesonet.backends.int8_record import AUC_TOLERANCE as AUC_TOLERANCE
from mesonet.backends.int8_record import REQUIRED_SETS as REQUIRED_SETS

log = logging.getLogger(__name__)

CALIBRATION_SIZE = 300
"""Crops taken from a calibration folder by default (evenly through its sorted files)."""
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
FORMAT = 4
"""Bumped when the quantisation recipe changes (a new key for every cached graph)."""
STATISTICS = "statistics.safetensors"
"""The statistics a cached int8 graph was made from, beside it (what a card may ship)."""
FROM_STATISTICS = "-stats-"
"""In an entry's name, before the sha256 of the statistics file it was rebuilt from."""


# --------------------------------------------------------------------------- calibration data


def image_files(folder: str | Path) -> list[Path]:
    """Every image under ``folder`` (recursively), sorted by path."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def calibration_crops(folder: str | Path, n: int = CALIBRATION_SIZE) -> np.ndarray:
    """``n`` uint8 256 x 256 crops from ``folder``, taken evenly through its sorted images
    (so both classes of a real/ fake/ folder) and made as ``--faces none`` makes them."""
    from mesonet.faces import crop_whole
    from mesonet.media import read_image

    if n < 1:
        raise ValueError(f"calibration needs at least one crop, not {n}")
    files = image_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: no images to calibrate on")
    picks = np.unique(np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int))
    return np.stack([crop_whole(read_image(files[i]), 256, "auto") for i in picks])


def crops_sha256(crops: np.ndarray) -> str:
    """A digest of calibration crops: their shape, dtype and bytes."""
    array = np.ascontiguousarray(crops)
    digest = hashlib.sha256(f"{array.dtype}|{array.shape}\n".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- graphs and the cache


def _is_ensemble(model: nn.Module) -> bool:
    return hasattr(model, "members") and hasattr(model, "weights")


def model_key(model: nn.Module) -> str:
    """The digest of the fp32 graph quantised for ``model``."""
    from mesonet.backends.cache import graph_key
    from mesonet.backends.fused import fused_digest

    return fused_digest(model) if _is_ensemble(model) else graph_key(model)


def _name(model: nn.Module) -> str:
    return getattr(getattr(model, "card", None), "name", "") or type(model).__name__


def fp32_graph(model: nn.Module) -> Any:
    """The fp32 logit graph quantised for ``model`` (a fresh OpenVINO model)."""
    from mesonet.backends.folding import Logits, fold_batchnorm
    from mesonet.backends.fused import fused_graph, name_ops
    from mesonet.backends.openvino_build import openvino_graph

    if _is_ensemble(model):
        return fused_graph(model)
    return name_ops(openvino_graph(Logits(fold_batchnorm(model))))


CONVOLUTIONS = ("Convolution", "GroupConvolution")
_UNQUANTISED = ("Parameter", "Constant", "Result")


def _networks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Each network of ``model`` with the prefix of its op names in :func:`fp32_graph`."""
    from mesonet.backends.fused import member_prefix

    if _is_ensemble(model):
        return [(member_prefix(i), m) for i, m in enumerate(model.members)]
    return [("", model)]


def fp32_ops(model: nn.Module, graph: Any, fp32_members: Sequence[str] = ()) -> list[str]:
    """The names of the ops of ``graph`` (``model``'s :func:`fp32_graph`) kept in fp32: each
    network's first ``int8_fp32_convs`` convolutions in graph order, and every op of the
    ensemble members named in ``fp32_members`` (by card name: not quantised at all)."""
    ordered = graph.get_ordered_ops()
    kept: list[str] = []
    for prefix, network in _networks(model):
        own = [op for op in ordered if op.get_friendly_name().startswith(prefix)]
        if prefix and _name(network) in fp32_members:
            kept += [op.get_friendly_name() for op in own if op.get_type_name() not in _UNQUANTISED]
            continue
        convolutions = [op.get_friendly_name() for op in own if op.get_type_name() in CONVOLUTIONS]
        kept += convolutions[: int(getattr(network, "int8_fp32_convs", 0))]
    return kept


def check_fp32_members(model: nn.Module, fp32_members: Sequence[str]) -> list[str]:
    """``fp32_members`` as a sorted list, when each names a member of the ensemble ``model``
    and at least one member is left to quantise; ``ValueError`` otherwise."""
    names = sorted(set(fp32_members))
    if not names:
        return []
    members = [_name(m) for _, m in _networks(model)] if _is_ensemble(model) else []
    unknown = [n for n in names if n not in members]
    if unknown:
        raise ValueError(f"fp32 members {unknown} are not members of {_name(model)}")
    if set(members) <= set(names):
        raise ValueError(f"every member of {_name(model)} kept in fp32: nothing to quantise")
    return names


def weights_binding(model: nn.Module) -> list[str]:
    """What int8 statistics are made for: each network's tensor digest and, in an ensemble,
    the factor its logit enters with (stored with the statistics, checked on a rebuild, so
    a member replaced or recalibrated under the same name never meets stale statistics)."""
    from mesonet.backends.fused import member_scale
    from mesonet.models.card import tensors_sha256

    if not _is_ensemble(model):
        return [tensors_sha256(model.state_dict())]
    return [
        f"{tensors_sha256(m.state_dict())}|{member_scale(m, w)!r}"
        for m, w in zip(model.members, model.weights, strict=True)
    ]


def entry_name(
    model: nn.Module,
    calibration_sha256: str,
    fp32_members: Sequence[str] = (),
    statistics_sha256: str | None = None,
) -> str:
    """The cache entry of ``model``'s int8 graph: its graph digest, the calibration crops'
    digest, the recipe's format, (when any) the members kept in fp32 and, for a graph
    rebuilt from a statistics file, that file's sha256 (statistics claim their calibration
    digest; only crops quantised here prove it, so a graph made from another card's
    statistics never takes the name of the graph measured)."""
    name = f"{model_key(model)}-{calibration_sha256[:32]}-{FORMAT}"
    if fp32_members:
        kept = "|".join(sorted(set(fp32_members))).encode()
        name += "-fp32-" + hashlib.sha256(kept).hexdigest()[:12]
    if statistics_sha256:
        name += f"{FROM_STATISTICS}{statistics_sha256[:32]}"
    return name


ENTRY_FILES = ("model.xml", "model.bin", "calibration.json", STATISTICS)
"""The files of an int8 cache entry (each checked against its sha256 when read)."""


def cached_path(
    model: nn.Module,
    calibration_sha256: str,
    fp32_members: Sequence[str] = (),
    statistics_sha256: str | None = None,
) -> Path | None:
    """The int8 IR of ``model`` made from the crops with this digest (and these members kept
    in fp32; from the statistics file with ``statistics_sha256``, when given), if cached and
    intact (a damaged entry is removed with a warning: see :mod:`mesonet.backends.cache`)."""
    from mesonet.backends.cache import cache_root, entry_intact

    entry = entry_name(model, calibration_sha256, fp32_members, statistics_sha256)
    folder = cache_root() / "openvino-int8" / entry
    return folder / "model.xml" if entry_intact(folder, ENTRY_FILES) else None


def read_int8(path: Path) -> Any:
    """The int8 graph cached at ``path`` (its ``model.xml``), read from bytes checked
    against their digests; ``RuntimeError`` when the entry was damaged since it was found."""
    from mesonet.backends.cache import read_graph

    graph = read_graph(path.parent)
    if graph is None:
        raise RuntimeError(f"the int8 cache entry {path.parent.name} was damaged: run again")
    return graph


def quantize(
    model: nn.Module,
    crops: np.ndarray | None = None,
    data: str = "",
    save: bool = True,
    statistics: str | Path | None = None,
    fp32_members: Sequence[str] = (),
) -> tuple[Any, dict[str, Any]]:
    """``(int8 OpenVINO model, calibration record)``: ``model`` quantised by NNCF on
    ``crops`` (uint8 N x 256 x 256 x 3, validation data), or rebuilt from the ``statistics``
    file such a run stored (:mod:`mesonet.backends.int8_statistics`; no data needed), and
    saved in the cache with its statistics when it can be.

    ``fp32_members``: card names of ensemble members kept whole in fp32 (a card's
    ``int8.fp32_members``). The record is what a card's ``int8.calibration`` holds: ``data``
    (a name for the crops), ``n`` and ``sha256``. Needs the ``nncf`` package.
    """
    try:
        import nncf
    except ImportError as exc:
        raise ImportError("int8 quantisation needs NNCF: pip install nncf") from exc
    import openvino as ov

    from mesonet.backends.cache import store_entry, writable_folder
    from mesonet.backends.fused import combine_op_names
    from mesonet.backends.int8_statistics import load_statistics, quantize_graph, save_statistics

    graph = fp32_graph(model)
    binding = weights_binding(model)
    fp32_members = check_fp32_members(model, fp32_members)
    ignored = combine_op_names(graph) + fp32_ops(model, graph, fp32_members)
    made_from = None  # the sha256 of the statistics file, for a rebuild from one
    if statistics is not None:
        made_from = hashlib.sha256(Path(statistics).read_bytes()).hexdigest()
        stored, metadata = load_statistics(statistics)
        record = metadata.get("calibration") or {}
        if not isinstance(record.get("sha256"), str):
            raise ValueError(f"{statistics}: int8 statistics without their calibration record")
        if sorted(metadata.get("fp32_members") or []) != fp32_members:
            raise ValueError(f"{statistics}: made with other members kept in fp32")
        if metadata.get("weights") != binding:
            raise ValueError(f"{statistics}: made for other weights or calibrations")
        quantised, stored = quantize_graph(graph, ignored, statistics=stored)
    else:
        if not (
            isinstance(crops, np.ndarray)
            and crops.dtype == np.uint8
            and crops.shape[1:] == (256, 256, 3)
        ):
            raise ValueError("calibration crops must be uint8 N x 256 x 256 x 3")
        record = {"data": data or "unnamed", "n": int(len(crops)), "sha256": crops_sha256(crops)}

        def transform(crop: np.ndarray) -> np.ndarray:
            return (crop[None].transpose(0, 3, 1, 2).astype(np.float32)) / np.float32(255.0)

        dataset = nncf.Dataset(list(crops), transform)
        quantised, stored = quantize_graph(graph, ignored, dataset, subset_size=len(crops))
    folder = writable_folder("openvino-int8") if save else None
    if folder is not None:
        name = entry_name(model, record["sha256"], fp32_members, made_from)
        info = dict(record, nncf=nncf.__version__, openvino=ov.__version__, format=FORMAT)
        info["fp32_members"] = fp32_members
        info["weights"] = binding
        if made_from is not None:
            info["statistics_sha256"] = made_from

        def write(tmp: Path) -> None:
            ov.save_model(quantised, str(tmp / "model.xml"), compress_to_fp16=False)
            (tmp / "calibration.json").write_text(json.dumps(info, indent=2))
            save_statistics(tmp / STATISTICS, stored, {"calibration": record, **info})

        store_entry(folder, name, write)
    return quantised, record


def int8_graph(
    model: nn.Module, calibration: str | Path | np.ndarray | None = None
) -> tuple[Any, str]:
    """A function returning the int8 graph (logit out) to run for ``model``, and where it
    came from: the crops or folder ``calibration`` (quantised now, or read back from the
    cache), else the graph the card's record names. Raises ``LookupError`` with neither."""
    from mesonet.backends.cache import key_lock
    from mesonet.backends.int8_choice import explicit_path, fp32_members

    if calibration is not None:
        if isinstance(calibration, np.ndarray):
            crops, data = calibration, "crops"
        else:
            crops, data = calibration_crops(calibration), Path(calibration).name
        kept = fp32_members(model)  # the card's recipe, when its record keeps members
        digest = crops_sha256(crops)
        with key_lock(f"openvino-int8/{entry_name(model, digest, kept)}"):  # one build
            path = cached_path(model, digest, kept)
            if path is None:
                graph, _ = quantize(model, crops, data, fp32_members=kept)
                path = cached_path(model, digest, kept)
                if path is None:  # no writable cache: keep the graph in memory
                    return graph.clone, f"quantised on {data} (not cached)"
        return lambda p=path: read_int8(p), f"cached {path.parent.name}"
    path = explicit_path(model)
    if path is None:
        raise LookupError(
            "no int8 graph of this model in the cache: make one with python -m "
            "mesonet.backends.int8 MODEL VALIDATION_FOLDER (or pass calibration=, a folder of "
            "validation images)"
        )
    return lambda p=path: read_int8(p), f"cached {path.parent.name}"


def with_sigmoid(graph: Any) -> Any:
    """``graph`` (logits out) with a sigmoid on its output: probabilities."""
    import openvino as ov
    import openvino.opset13 as ops

    (result,) = graph.get_results()
    y = ops.sigmoid(result.input_value(0)).output(0)
    return ov.Model([y], list(graph.get_parameters()), graph.get_friendly_name())


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mesonet.backends.int8 MODEL FOLDER``: quantise and cache; prints the key."""
    parser = argparse.ArgumentParser(
        prog="python -m mesonet.backends.int8",
        description="Quantise a model to int8 on a folder of validation crops (never a set "
        "you report results on) and keep it in the cache. auto uses it only once "
        "benchmarks/bench_int8.py has recorded its AUC change in the model's card.",
    )
    parser.add_argument("model", help="bundled name, .safetensors or ensemble card")
    parser.add_argument("folder", help="validation images, e.g. ../shared/datasets/X/val")
    parser.add_argument("-n", type=int, default=CALIBRATION_SIZE, help="crops to use")
    parser.add_argument(
        "--fp32-member",
        action="append",
        default=None,
        metavar="NAME",
        help="an ensemble member kept whole in fp32 (repeatable; default: the card's record)",
    )
    args = parser.parse_args(argv)
    if args.n < 1:
        print(f"error: -n must be at least 1 crop, not {args.n}", file=sys.stderr)
        return 2
    from mesonet.backends.int8_choice import fp32_members
    from mesonet.errors import MesonetError
    from mesonet.models import load_model

    try:
        model = load_model(args.model)
        kept = sorted(set(args.fp32_member)) if args.fp32_member else fp32_members(model)
        crops = calibration_crops(args.folder, args.n)
        _, record = quantize(model, crops, Path(args.folder).name, fp32_members=kept)
    except (MesonetError, OSError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = cached_path(model, record["sha256"], kept)
    shown = dict(record, fp32_members=kept, cached=str(path) if path else None)
    print(json.dumps(shown, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
