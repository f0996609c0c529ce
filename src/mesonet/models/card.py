"""Model cards: the metadata that travels inside every weights file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch

INPUT_SIZE = 256
NORMALIZATION = "RGB, float32 in [0, 1] (pixel / 255), no mean/std"
LABEL_CONVENTION = "output is fake_probability: 1 = forged, 0 = real"
# "auto": area-average when shrinking, bilinear when enlarging; "nearest": as Keras' load_img,
# which the authors' models were trained and evaluated with.
RESIZE_MODES = ("auto", "nearest", "bilinear", "area")


@dataclass
class ModelCard:
    """What a weights file is, how to feed it and how well it measured.

    ``threshold`` turns a fake probability into a label (fake when ``p >= threshold``).
    ``weights_sha256`` is a digest of the tensors (see :func:`tensors_sha256`), checked on load.
    """

    name: str
    arch: str
    description: str = ""
    input_size: int = INPUT_SIZE
    normalization: str = NORMALIZATION
    resize: str = "auto"  # how a whole image becomes the input (faces="none"): see RESIZE_MODES
    label_convention: str = LABEL_CONVENTION
    threshold: float = 0.5
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    license: str = ""
    weights_sha256: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    """A digest of names, dtypes, shapes and bytes of every tensor, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()
