"""Convert the MesoNet authors' Keras 2 HDF5 weights into our PyTorch models.

The authors' models output the probability of REAL (class folders ``df`` = 0, ``real`` = 1);
we negate the last dense layer so the converted model outputs the fake probability:
``sigmoid(-z) = 1 - sigmoid(z)``. Keras conv kernels are (h, w, in, out) and dense kernels
(in, out); our head flattens channels-last, so dense weights need no reordering. Batch-norm
epsilon is Keras' 1e-3 in both models. Only h5py is needed: TensorFlow is not.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import torch

from mesonet.errors import ModelError
from mesonet.models.card import ModelCard
from mesonet.models.registry import create_model, save_model

# Number of conv layers tells the architecture apart.
_CONVS_PER_ARCH = {4: "meso4", 16: "mesoinception4"}
_LAYER_KINDS = ("conv2d", "batch_normalization", "dense")


def _suffix(name: str) -> int:
    match = re.search(r"_(\d+)$", name)
    return int(match.group(1)) if match else 0


def read_keras_layers(path: str | Path) -> dict[str, list[dict[str, np.ndarray]]]:
    """Weights of each conv, batch-norm and dense layer, per kind, in creation order.

    Keras numbers layers as it creates them (``conv2d_5``...), so sorting by that number
    gives the order of the authors' code whatever the topological order saved in the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: file not found")
    try:
        with h5py.File(path, "r") as f:
            root = f.get("model_weights", f)
            layers: dict[str, list[tuple[int, dict[str, np.ndarray]]]] = {
                k: [] for k in _LAYER_KINDS
            }
            for layer_name in root:
                kind = re.sub(r"_\d+$", "", layer_name)
                if kind not in layers:
                    continue
                weights: dict[str, np.ndarray] = {}
                root[layer_name].visititems(
                    lambda name, obj, w=weights: (
                        w.__setitem__(name.rsplit("/", 1)[-1].split(":")[0], np.asarray(obj[()]))
                        if isinstance(obj, h5py.Dataset)
                        else None
                    )
                )
                if weights:
                    layers[kind].append((_suffix(layer_name), weights))
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable Keras HDF5 weights file ({exc})") from None
    return {
        kind: [w for _, w in sorted(items, key=lambda t: t[0])] for kind, items in layers.items()
    }


def detect_arch(layers: dict[str, list[dict[str, np.ndarray]]], path: str | Path = "") -> str:
    """'meso4' or 'mesoinception4' from the layer counts; a clear error for anything else."""
    counts = {k: len(v) for k, v in layers.items()}
    arch = _CONVS_PER_ARCH.get(counts["conv2d"])
    if arch is None or counts["batch_normalization"] != 4 or counts["dense"] != 2:
        raise ModelError(
            f"{path}: not a MesoNet weights file (found {counts['conv2d']} conv, "
            f"{counts['batch_normalization']} batch-norm and {counts['dense']} dense layers; "
            "Meso-4 has 4/4/2, MesoInception-4 16/4/2)"
        )
    return arch


def convert_keras_weights(path: str | Path, arch: str = "auto") -> torch.nn.Module:
    """Our model (eval mode, fake-probability output) carrying the weights of a Keras file."""
    layers = read_keras_layers(path)
    detected = detect_arch(layers, path)
    if arch not in ("auto", detected):
        raise ModelError(f"{path}: holds {detected} weights, not {arch}")
    model = create_model(detected)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    denses = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    state: dict[str, torch.Tensor] = {}
    names = {m: n for n, m in model.named_modules()}
    try:
        for module, w in zip(convs, layers["conv2d"], strict=True):
            state[names[module] + ".weight"] = torch.from_numpy(w["kernel"].transpose(3, 2, 0, 1))
            state[names[module] + ".bias"] = torch.from_numpy(w["bias"])
        for module, w in zip(norms, layers["batch_normalization"], strict=True):
            prefix = names[module]
            state[prefix + ".weight"] = torch.from_numpy(w["gamma"])
            state[prefix + ".bias"] = torch.from_numpy(w["beta"])
            state[prefix + ".running_mean"] = torch.from_numpy(w["moving_mean"])
            state[prefix + ".running_var"] = torch.from_numpy(w["moving_variance"])
            state[prefix + ".num_batches_tracked"] = torch.tensor(0)
        for i, (module, w) in enumerate(zip(denses, layers["dense"], strict=True)):
            sign = -1.0 if i == len(denses) - 1 else 1.0  # P(real) -> P(fake) on the last layer
            state[names[module] + ".weight"] = torch.from_numpy(sign * w["kernel"].T.copy())
            state[names[module] + ".bias"] = torch.from_numpy(sign * w["bias"])
    except KeyError as exc:
        raise ModelError(f"{path}: a layer lacks its {exc} weights") from None
    expected = model.state_dict()
    wrong = [
        f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
        for k, v in state.items()
        if v.shape != expected[k].shape
    ]
    if wrong:
        raise ModelError(
            f"{path}: weights have the wrong shapes for {detected}: {', '.join(wrong[:4])}"
        )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    return model.eval()


def import_keras(src: str | Path, dst: str | Path, arch: str = "auto") -> ModelCard:
    """Convert ``src`` (the authors' .h5) and write ``dst`` (.safetensors with a model card)."""
    src = Path(src)
    model = convert_keras_weights(src, arch)
    tag = src.stem.split("_")[-1].lower() if "_" in src.stem else src.stem.lower()
    card = ModelCard(
        name=f"{model.arch}.{tag}",
        arch=model.arch,
        resize="nearest",  # the authors' Keras loader (load_img) resized with nearest neighbour
        description=f"The MesoNet authors' pretrained {src.stem} weights, converted from Keras.",
        training={"data": f"the authors' {src.stem.split('_')[-1]} dataset", "by": "the authors"},
        source=f"{src.name} (Afchar et al., DariusAf/MesoNet), via `mesonet import-keras`",
        license="Apache-2.0 (MesoNet authors)",
    )
    return save_model(model, dst, card)
