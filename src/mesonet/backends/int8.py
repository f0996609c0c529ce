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
Chosen by agreement with fp32 on dfdc-faces/val crops held out of calibration (not on any
reported set): for meso4.dfdc the mean |logit change| fell from 0.34 (NNCF's defaults) to
0.12, for mesoinception4.paper from 1.14 to 0.36.

**Where the calibration crops come from.** Quantisation needs data like the data scored,
and a shipped package holds none (the four bundled sample images are from the authors'
training set and too few), nor may anything be fetched at run time. So the calibration data
is always the user's input, a folder of validation crops (never a set whose AUC is
reported), and the result is kept: :func:`quantize` saves the int8 graph as OpenVINO IR in
the user cache (``$MESONET_CACHE/openvino-int8``, see :mod:`mesonet.backends.cache`), keyed by
the model's graph digest (its tensors, module tree and OpenVINO version) and a sha256 of the
calibration crops. ``benchmarks/bench_int8.py`` makes it, measures the AUC change against
fp32 on the dev sets and writes it into the card's ``int8`` field together with the
calibration crops' digest; ``python -m mesonet.backends.int8 MODEL FOLDER`` makes it alone.

**What ``auto`` does** (:func:`auto_int8`): it runs a model in int8 only when its card
records an AUC change within :data:`AUC_TOLERANCE` on every one of :data:`REQUIRED_SETS`
(and on any other set recorded) *and* the cache holds the int8 graph made from the very
calibration crops the card names (same digest), i.e. the graph that was measured. It never
quantises: without that graph, or without a passing record, ``auto`` stays fp32. The
explicit ``--backend openvino-int8`` (the user's choice of a non-exact engine, as
``openvino-bf16``) quantises on the crops given (``create_scorer(..., calibration=FOLDER)``),
else runs the recorded graph when it is cached, else the newest int8 graph of this model in
the cache (made by ``python -m mesonet.backends.int8 MODEL FOLDER``); with none it refuses,
saying how to make one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

log = logging.getLogger(__name__)

AUC_TOLERANCE = 0.005
"""Largest AUC change (either way) on a set for ``auto`` to pick int8."""
REQUIRED_SETS = ("dfdc_faces_test", "mesonet_deepfake_val", "ffpp_faces_dev")
"""The dev-visible image sets a card's ``int8.auc_change`` must cover for ``auto`` (the
fourth, the ffpp-c40 videos, is checked when recorded)."""
CALIBRATION_SIZE = 300
"""Crops taken from a calibration folder by default (evenly through its sorted files)."""
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
FORMAT = 2
"""Bumped when the quantisation recipe changes (a new key for every cached graph)."""


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


def fp32_graph(model: nn.Module) -> Any:
    """The fp32 logit graph quantised for ``model`` (a fresh OpenVINO model)."""
    from mesonet.backends.folding import Logits, fold_batchnorm
    from mesonet.backends.fused import fused_graph
    from mesonet.backends.openvino_engine import openvino_graph

    if _is_ensemble(model):
        return fused_graph(model)
    return openvino_graph(Logits(fold_batchnorm(model)))


def entry_name(model: nn.Module, calibration_sha256: str) -> str:
    return f"{model_key(model)}-{calibration_sha256[:32]}-{FORMAT}"


def cached_path(model: nn.Module, calibration_sha256: str) -> Path | None:
    """The int8 IR of ``model`` made from the crops with this digest, if cached."""
    from mesonet.backends.cache import cache_root

    path = cache_root() / "openvino-int8" / entry_name(model, calibration_sha256) / "model.xml"
    return path if path.is_file() and path.with_suffix(".bin").is_file() else None


def quantize(
    model: nn.Module, crops: np.ndarray, data: str = "", save: bool = True
) -> tuple[Any, dict[str, Any]]:
    """``(int8 OpenVINO model, calibration record)``: ``model`` quantised by NNCF on
    ``crops`` (uint8 N x 256 x 256 x 3, validation data), saved in the cache when it can be.

    The record is what a card's ``int8.calibration`` holds: ``data`` (a name for the crops),
    ``n`` and ``sha256``. Needs the ``nncf`` package (``pip install 'mesonet[int8]'``).
    """
    try:
        import nncf
    except ImportError as exc:
        raise ImportError(
            "int8 quantisation needs NNCF: pip install 'mesonet[int8]' (or nncf)"
        ) from exc
    import openvino as ov

    from mesonet.backends.cache import _folder
    from mesonet.backends.fused import combine_op_names

    if crops.ndim != 4 or crops.dtype != np.uint8 or crops.shape[1:] != (256, 256, 3):
        raise ValueError("calibration crops must be uint8 N x 256 x 256 x 3")
    record = {"data": data or "unnamed", "n": int(len(crops)), "sha256": crops_sha256(crops)}

    def transform(crop: np.ndarray) -> np.ndarray:
        return (crop[None].transpose(0, 3, 1, 2).astype(np.float32)) / np.float32(255.0)

    dataset = nncf.Dataset(list(crops), transform)
    logging.getLogger("nncf").setLevel(logging.WARNING)
    graph = fp32_graph(model)
    quantised = nncf.quantize(
        graph,
        dataset,
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(crops),
        target_device=nncf.TargetDevice.CPU,
        ignored_scope=nncf.IgnoredScope(names=combine_op_names(graph), types=["MatMul"]),
    )
    folder = _folder("openvino-int8") if save else None
    if folder is not None:
        name = entry_name(model, record["sha256"])
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder))
            try:
                ov.save_model(quantised, str(tmp / "model.xml"), compress_to_fp16=False)
                info = dict(record, nncf=nncf.__version__, openvino=ov.__version__)
                (tmp / "calibration.json").write_text(json.dumps(info, indent=2))
                shutil.rmtree(folder / name, ignore_errors=True)
                tmp.rename(folder / name)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError as exc:
            log.debug("could not cache the int8 graph in %s: %s", folder, exc)
    return quantised, record


# --------------------------------------------------------------------------- the card's record


def record_passes(card: Any) -> bool:
    """Whether ``card`` records an int8 AUC change within :data:`AUC_TOLERANCE` on every
    required set and on every other set it records."""
    record = getattr(card, "int8", None) or {}
    changes = record.get("auc_change") or {}
    if not all(name in changes for name in REQUIRED_SETS):
        return False
    try:
        return all(abs(float(d)) <= AUC_TOLERANCE for d in changes.values())
    except (TypeError, ValueError):
        return False


def recorded_path(model: nn.Module) -> Path | None:
    """The cached int8 graph of the calibration ``model``'s card names, if there is one (and,
    when the record names the NNCF version that made the graph measured, one made by it)."""
    record = getattr(getattr(model, "card", None), "int8", None) or {}
    digest = (record.get("calibration") or {}).get("sha256")
    if not isinstance(digest, str):
        return None
    try:
        path = cached_path(model, digest)
    except Exception as exc:  # noqa: BLE001 - a model the graph digest cannot read: no int8
        log.debug("no int8 graph for this model: %s", exc)
        return None
    if path is not None and "nncf" in record:
        try:
            made = json.loads((path.parent / "calibration.json").read_text()).get("nncf")
        except (OSError, ValueError, AttributeError):
            made = None
        if made != record["nncf"]:
            log.debug("int8 graph %s made by NNCF %s, not %s", path.parent, made, record["nncf"])
            return None
    return path


def auto_int8(model: nn.Module) -> Path | None:
    """The int8 graph ``auto`` may run for ``model``: only with a passing measured record
    on its card and the very graph that was measured in the cache (see the module)."""
    if not record_passes(getattr(model, "card", None)):
        return None
    return recorded_path(model)


def int8_graph(
    model: nn.Module, calibration: str | Path | np.ndarray | None = None
) -> tuple[Any, str]:
    """A function returning the int8 graph (logit out) to run for ``model``, and where it
    came from: the crops or folder ``calibration`` (quantised now, or read back from the
    cache), else the graph the card's record names. Raises ``LookupError`` with neither."""
    import openvino as ov

    if calibration is not None:
        if isinstance(calibration, np.ndarray):
            crops, data = calibration, "crops"
        else:
            crops, data = calibration_crops(calibration), Path(calibration).name
        path = cached_path(model, crops_sha256(crops))
        if path is None:
            graph, _ = quantize(model, crops, data)
            path = cached_path(model, crops_sha256(crops))
            if path is None:  # no writable cache: keep the graph in memory
                return graph.clone, f"quantised on {data} (not cached)"
        return lambda p=path: ov.Core().read_model(str(p)), f"cached {path.parent.name}"
    path = explicit_path(model)
    if path is None:
        raise LookupError(
            "no int8 graph of this model in the cache: make one with python -m "
            "mesonet.backends.int8 MODEL VALIDATION_FOLDER (or pass calibration=, a folder of "
            "validation images)"
        )
    return lambda p=path: ov.Core().read_model(str(p)), f"cached {path.parent.name}"


def explicit_path(model: nn.Module) -> Path | None:
    """The int8 graph an explicit ``openvino-int8`` runs without calibration data: the one
    the card's record names if cached, else the newest cached for this model."""
    from mesonet.backends.cache import cache_root

    path = recorded_path(model)
    if path is not None:
        return path
    try:
        pattern = f"{model_key(model)}-*-{FORMAT}/model.xml"
    except Exception as exc:  # noqa: BLE001 - a model the graph digest cannot read
        log.debug("no int8 graph for this model: %s", exc)
        return None
    found = [
        p for p in (cache_root() / "openvino-int8").glob(pattern) if p.with_suffix(".bin").is_file()
    ]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def inference_kind(model: nn.Module, backend: str) -> str:
    """What a scan's settings record says about its arithmetic: ``exact`` (the fp32 engines
    agree to 1e-4), ``bf16``, or ``int8`` with the cache entry (model and calibration
    digests) of the int8 graph it runs (another int8 graph gives other scores)."""
    if "bf16" in backend:
        return "bf16"
    if "int8" not in backend:
        return "exact"
    path = explicit_path(model)
    return f"int8 {path.parent.name}" if path is not None else "int8"


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
    args = parser.parse_args(argv)
    from mesonet.models import load_model

    model = load_model(args.model)
    crops = calibration_crops(args.folder, args.n)
    _, record = quantize(model, crops, Path(args.folder).name)
    path = cached_path(model, record["sha256"])
    print(json.dumps(dict(record, cached=str(path) if path else None), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
