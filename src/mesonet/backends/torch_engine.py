"""The ``torch`` backend: PyTorch eager."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mesonet.backends.batching import _ChunkedScorer


class TorchScorer(_ChunkedScorer):
    """PyTorch eager, channels-last, batch norms folded."""

    name = "torch"

    def __init__(self, model: nn.Module, batch_size: int, threads: int) -> None:
        super().__init__(batch_size, threads)
        self.model = model.eval().to(memory_format=torch.channels_last)

    def _run(self, kind: str, chunk: np.ndarray) -> np.ndarray:
        before = torch.get_num_threads()
        if before != self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                x = torch.from_numpy(chunk)
                if kind == "uint8":
                    x = x.permute(0, 3, 1, 2).float().mul_(1.0 / 255.0)
                x = x.contiguous(memory_format=torch.channels_last)
                return self.model(x).float().numpy()
        finally:
            if before != self.threads:
                torch.set_num_threads(before)
