"""The ``onnx`` backend: ONNX Runtime on a model exported in memory."""

from __future__ import annotations

import io
import threading
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from mesonet.backends.batching import INPUT_SIZE, _ChunkedScorer


class _Uint8Input(nn.Module):
    """uint8 N x H x W x 3 -> the model: the cast, /255 and layout change inside the graph."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.permute(0, 3, 1, 2).float() * (1.0 / 255.0))


def _onnx_bytes(module: nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            module,
            (example,),
            buffer,
            dynamo=False,
            input_names=["x"],
            output_names=["fake_probability"],
            dynamic_axes={"x": {0: "n"}, "fake_probability": {0: "n"}},
            opset_version=17,
        )
    return buffer.getvalue()


class OnnxScorer(_ChunkedScorer):
    """ONNX Runtime (CPU, fp32) on the folded model, exported in memory."""

    name = "onnx"

    def __init__(self, model: nn.Module, batch_size: int, threads: int) -> None:
        super().__init__(batch_size, threads)
        self._model = model
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _session(self, kind: str) -> Any:
        with self._lock:
            if kind not in self._sessions:
                import onnxruntime as ort

                if kind == "uint8":
                    module = _Uint8Input(self._model)
                    example = torch.zeros(1, INPUT_SIZE, INPUT_SIZE, 3, dtype=torch.uint8)
                else:
                    module, example = self._model, torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
                options = ort.SessionOptions()
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                self._sessions[kind] = ort.InferenceSession(
                    _onnx_bytes(module.eval(), example), options, ["CPUExecutionProvider"]
                )
            return self._sessions[kind]

    def _run(self, kind: str, chunk: np.ndarray) -> np.ndarray:
        return self._session(kind).run(None, {"x": chunk})[0]
