"""Which int8 recipe keeps a single network's AUC: NNCF variants measured side by side.

Quantises MODEL's fp32 logit graph (as ``openvino-int8`` does: NNCF, MIXED preset, dense
layers in fp32, calibrated on 300 crops of dfdc-faces val) under several recipes and prints
each one's ROC AUC change against fp32 (OpenVINO, f32 inference precision, so the layers
kept out of int8 run in fp32 too) on dfdc-faces test and ffpp-faces-dev (all crops,
made as ``--faces none`` makes them) and its faces/s:

- ``current``: the backend's recipe;
- ``no-depthwise``: depthwise (grouped) convolutions also kept in fp32;
- ``full-bias``: NNCF's full bias correction instead of the fast one;
- ``fp32-stem-head``: the first and the last convolution kept in fp32;
- ``fp32-first-N``: the first N convolutions (in graph order) kept in fp32;
- ``calib-mix``: calibrated on 150 dfdc-faces val + 150 mesonet-deepfake-train crops.

    python tools/int8_recipes.py efficientnet_lite0.noffpp
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def load_set(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every crop of ``folder``/real and /fake as ``--faces none`` makes it (uint8 256 x 256
    RGB), with its label."""
    from mesonet.backends.int8 import image_files
    from mesonet.faces import crop_whole
    from mesonet.media import read_image

    images, labels = [], []
    for label, y in (("real", 0), ("fake", 1)):
        for path in image_files(folder / label):
            images.append(crop_whole(read_image(path), 256, "auto"))
            labels.append(y)
    return np.stack(images), np.array(labels)


def nchw(crops: np.ndarray) -> np.ndarray:
    return crops.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a single network (bundled name or .safetensors)")
    parser.add_argument("--first", type=int, default=6, help="N of fp32-first-N")
    args = parser.parse_args()

    import nncf
    import openvino as ov

    from mesonet.backends.int8 import calibration_crops, fp32_graph
    from mesonet.models import load_model

    logging.getLogger("nncf").setLevel(logging.WARNING)
    model = load_model(args.model).eval()
    sets = {
        "dfdc-faces test": load_set(SHARED / "dfdc-faces" / "test"),
        "ffpp-faces-dev": load_set(SHARED / "ffpp-faces-dev"),
    }
    core = ov.Core()
    exact = {"INFERENCE_PRECISION_HINT": "f32"}  # else bf16 on AMX CPUs, OpenVINO's default

    def scores(graph, crops: np.ndarray) -> np.ndarray:
        compiled = core.compile_model(graph, "CPU", exact)
        return np.concatenate(
            [compiled(nchw(crops[i : i + 64]))[0].reshape(-1) for i in range(0, len(crops), 64)]
        )

    def aucs(graph) -> dict[str, float]:
        return {k: roc_auc_score(y, scores(graph, x)) for k, (x, y) in sets.items()}

    def rate(graph) -> float:
        compiled = core.compile_model(graph, "CPU", exact)
        batch = nchw(sets["dfdc-faces test"][0][:64])
        compiled(batch)
        start = time.perf_counter()
        for _ in range(10):
            compiled(batch)
        return 640 / (time.perf_counter() - start)

    graph = fp32_graph(model)
    convs = [
        op.get_friendly_name()
        for op in graph.get_ordered_ops()
        if op.get_type_name() in ("Convolution", "GroupConvolution")
    ]
    base, base_rate = aucs(graph), rate(graph)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in base.items())
    print(f"{args.model}: {len(convs)} convolutions; fp32 AUC {shown}; {base_rate:.0f} faces/s")

    val = calibration_crops(SHARED / "dfdc-faces" / "val", 300)
    mix = np.concatenate([val[:150], calibration_crops(SHARED / "mesonet-deepfake-train", 150)])

    def dataset(crops: np.ndarray):
        return nncf.Dataset(list(crops), lambda c: nchw(c[None]))

    dense = ["MatMul"]
    recipes = {
        "current": (val, {"ignored_scope": nncf.IgnoredScope(types=dense)}),
        "no-depthwise": (
            val,
            {
                "ignored_scope": nncf.IgnoredScope(
                    types=[*dense, "GroupConvolution"], validate=False
                )
            },
        ),
        "full-bias": (
            val,
            {"ignored_scope": nncf.IgnoredScope(types=dense), "fast_bias_correction": False},
        ),
        "fp32-stem-head": (
            val,
            {"ignored_scope": nncf.IgnoredScope(names=[convs[0], convs[-1]], types=dense)},
        ),
        f"fp32-first-{args.first}": (
            val,
            {"ignored_scope": nncf.IgnoredScope(names=convs[: args.first], types=dense)},
        ),
        "calib-mix": (mix, {"ignored_scope": nncf.IgnoredScope(types=dense)}),
    }
    print(f"{'recipe':<16} " + " ".join(f"{k:>16}" for k in sets) + "    faces/s")
    for name, (crops, options) in recipes.items():
        quantised = nncf.quantize(
            fp32_graph(model),
            dataset(crops),
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(crops),
            target_device=nncf.TargetDevice.CPU,
            **options,
        )
        changes = aucs(quantised)
        cells = " ".join(f"{changes[k] - base[k]:>+16.4f}" for k in sets)
        speed = rate(quantised)
        print(f"{name:<16} {cells}    {speed:.0f} ({speed / base_rate:.2f}x fp32)", flush=True)


if __name__ == "__main__":
    main()
