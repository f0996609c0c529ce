"""What every scorer shares: reading a batch (array, tensor or list of crops), telling uint8
crops from float model input, and splitting it into ``batch_size`` chunks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

INPUT_SIZE = 256


def _as_array(batch: Any) -> np.ndarray:
    if hasattr(batch, "detach") and hasattr(batch, "numpy"):  # a torch tensor
        return batch.detach().cpu().numpy()
    if isinstance(batch, np.ndarray):
        return batch
    if isinstance(batch, Sequence):
        if len(batch) == 0:
            return np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
        return np.stack([np.asarray(b) for b in batch])
    raise TypeError(f"expected an array, a tensor or a list of crops, not {type(batch).__name__}")


def _kind(array: np.ndarray) -> str:
    """``"uint8"`` (N x H x W x 3 crops) or ``"float"`` (N x 3 x H x W in [0, 1])."""
    if array.ndim == 3:
        raise ValueError("expected a batch (N x ...), got a single image: add a batch axis")
    if array.ndim == 4 and array.dtype == np.uint8 and array.shape[3] == 3:
        return "uint8"
    if array.ndim == 4 and np.issubdtype(array.dtype, np.floating) and array.shape[1] == 3:
        return "float"
    raise ValueError(
        "expected uint8 N x H x W x 3 crops or float N x 3 x H x W in [0, 1], "
        f"got {array.dtype} {tuple(array.shape)}"
    )


class _ChunkedScorer:
    """Shared batching: split into ``batch_size`` chunks, dispatch on the input kind."""

    name = ""

    def __init__(self, batch_size: int, threads: int) -> None:
        self.batch_size = batch_size
        self.threads = threads

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_size={self.batch_size}, threads={self.threads})"

    def __call__(self, batch: Any) -> np.ndarray:
        array = _as_array(batch)
        if len(array) == 0:
            return np.zeros(0, dtype=np.float32)
        kind = _kind(array)
        if kind == "float" and array.dtype != np.float32:
            array = array.astype(np.float32)
        out = [
            self._run(kind, np.ascontiguousarray(array[i : i + self.batch_size]))
            for i in range(0, len(array), self.batch_size)
        ]
        return np.concatenate(out).astype(np.float32, copy=False).reshape(-1)

    def _run(self, kind: str, chunk: np.ndarray) -> np.ndarray:
        raise NotImplementedError
