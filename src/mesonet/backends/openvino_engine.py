"""The ``openvino``, ``openvino-bf16`` and ``openvino-int8`` backends: OpenVINO on the CPU,
the model's graph built op by op from its weights (or any OpenVINO graph handed over: a fused
ensemble, a quantised model)."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mesonet.backends.batching import INPUT_SIZE, _ChunkedScorer
from mesonet.backends.cache import compiled_cache_dir, converted_graph
from mesonet.backends.folding import ChannelShift, Logits

_COMPILE_LOCK = threading.Lock()
"""One graph built and compiled at a time in the process: the scorers of several worker
threads meeting the same model (the service's first requests) build it once, in turn, and
the later ones find the cached graph and OpenVINO's compiled blob."""


class OpenVinoScorer(_ChunkedScorer):
    """OpenVINO on the CPU (fp32, or bf16 when asked), converted from the folded model.

    The uint8 graph takes the crops as they are (N x H x W x 3); OpenVINO's preprocessing
    converts, scales and transposes them inside the compiled model. One infer request per
    calling thread (requests are not thread-safe), compiled on first use.

    ``graph``: a function returning the OpenVINO model to run (fp32 N x 3 x 256 x 256 in
    [0, 1] in, N scores out) instead of :func:`openvino_graph` of ``model``; ``name`` then
    names the backend (``openvino-int8`` for a quantised graph).
    """

    def __init__(
        self,
        model: nn.Module | None,
        batch_size: int,
        threads: int,
        bf16: bool,
        graph: Callable[[], Any] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(batch_size, threads)
        self.name = name or ("openvino-bf16" if bf16 else "openvino")
        self.precision = "bf16" if bf16 else "f32"
        if graph is None:
            if model is None:
                raise ValueError("OpenVinoScorer needs a model or a graph")
            graph = lambda: openvino_graph(model)  # noqa: E731
        self._graph = graph
        self._compiled: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def _compile(self, kind: str) -> Any:
        with self._lock, _COMPILE_LOCK:
            if kind not in self._compiled:
                import openvino as ov
                from openvino.preprocess import PrePostProcessor

                graph = self._graph()
                if kind == "uint8":
                    ppp = PrePostProcessor(graph)
                    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
                    ppp.input().model().set_layout(ov.Layout("NCHW"))
                    ppp.input().preprocess().convert_element_type(ov.Type.f32).scale(255.0)
                    graph = ppp.build()
                config = {
                    "INFERENCE_NUM_THREADS": self.threads,
                    "INFERENCE_PRECISION_HINT": self.precision,
                    "PERFORMANCE_HINT": "LATENCY",
                    "NUM_STREAMS": 1,
                }
                folder = compiled_cache_dir()
                if folder is not None:  # OpenVINO's own cache of compiled blobs
                    config["CACHE_DIR"] = str(folder)
                self._compiled[kind] = ov.Core().compile_model(graph, "CPU", config)
            return self._compiled[kind]

    def _run(self, kind: str, chunk: np.ndarray) -> np.ndarray:
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        if kind not in requests:
            requests[kind] = self._compile(kind).create_infer_request()
        result = requests[kind].infer({0: chunk})
        return np.array(result[0], dtype=np.float32, copy=True)


# --------------------------------------------------------------------------- OpenVINO graph


def openvino_graph(model: nn.Module) -> Any:
    """An OpenVINO model (fp32 N x 3 x 256 x 256 in, N fake probabilities out) of a MesoNet.

    Built op by op from the modules' weights (milliseconds), instead of tracing the model
    with ``openvino.convert_model`` (seconds); models with other modules take that path, and
    the traced graph is kept in the user cache folder (:func:`mesonet.backends.cache.
    converted_graph`), keyed by a digest of the tensors, so the next start skips tracing.
    """
    import openvino as ov

    try:
        if isinstance(model, Logits):
            return _MesoGraph().build(model.model, sigmoid=False)
        return _MesoGraph().build(model)
    except _Unsupported:

        def convert() -> Any:
            shape = ov.PartialShape([-1, 3, INPUT_SIZE, INPUT_SIZE])
            example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return ov.convert_model(model, example_input=example, input=[shape])

        return converted_graph(model, convert)


class _Unsupported(Exception):
    """A module the direct graph builder does not know."""


class _MesoGraph:
    """Emits OpenVINO ops for the modules a (folded) MesoNet is made of."""

    def __init__(self) -> None:
        import openvino.opset13 as ops

        self.ops = ops

    def const(self, tensor: torch.Tensor | np.ndarray) -> Any:
        if isinstance(tensor, torch.Tensor):
            tensor = tensor.detach().float().cpu().numpy()
        return self.ops.constant(np.ascontiguousarray(tensor, dtype=np.float32))

    def build(self, model: nn.Module, sigmoid: bool = True) -> Any:
        import openvino as ov

        features = getattr(model, "features", None)
        head = getattr(model, "head", None)
        if features is None or head is None or not hasattr(model, "logits"):
            raise _Unsupported(type(model).__name__)
        preprocess = getattr(model, "preprocess", None)
        if preprocess is not None and not preprocess.identity:
            raise _Unsupported("a resize or normalisation before the features")
        x = self.ops.parameter([-1, 3, INPUT_SIZE, INPUT_SIZE], np.float32, name="x")
        y = self.emit(features, x.output(0))
        y = self.ops.transpose(y, self.ops.constant(np.array([0, 2, 3, 1], np.int64)))
        y = self.ops.reshape(y, self.ops.constant(np.array([0, -1], np.int64)), True)
        y = self.emit_sequence(list(head), y)
        if sigmoid:
            y = self.ops.sigmoid(y)
        y = self.ops.reshape(y, self.ops.constant(np.array([-1], np.int64)), False)
        y.output(0).get_tensor().set_names({"fake_probability"})
        return ov.Model([y.output(0)], [x], "mesonet")

    def emit_sequence(self, modules: Sequence[nn.Module], x: Any) -> Any:
        for module in modules:
            x = self.emit(module, x)
        return x

    def emit(self, module: nn.Module, x: Any) -> Any:  # noqa: C901 - one case per module type
        from mesonet.models.mesoinception4 import InceptionLayer

        ops = self.ops
        if isinstance(module, nn.Sequential):
            return self.emit_sequence(list(module), x)
        if isinstance(module, nn.Identity | nn.Dropout):
            return x
        if isinstance(module, nn.Conv2d):
            if module.groups != 1 or module.padding_mode != "zeros":
                raise _Unsupported("grouped or non-zero-padded conv")
            pad = list(module.padding)
            y = ops.convolution(
                x,
                self.const(module.weight),
                list(module.stride),
                pad,
                pad,
                list(module.dilation),
            )
            if module.bias is not None:
                y = ops.add(y, self.const(module.bias.reshape(1, -1, 1, 1)))
            return y.output(0)
        if isinstance(module, nn.ReLU):
            return ops.relu(x).output(0)
        if isinstance(module, nn.MaxPool2d):
            k, s = module.kernel_size, module.stride or module.kernel_size
            if module.padding not in (0, (0, 0)) or module.dilation not in (1, (1, 1)):
                raise _Unsupported("padded or dilated max-pool")
            k = [k, k] if isinstance(k, int) else list(k)
            s = [s, s] if isinstance(s, int) else list(s)
            rounding = "ceil" if module.ceil_mode else "floor"
            return ops.max_pool(x, s, [1, 1], [0, 0], [0, 0], k, rounding).output(0)
        if isinstance(module, ChannelShift):
            return ops.add(x, self.const(module.shift)).output(0)
        if isinstance(module, nn.BatchNorm2d):
            scale = module.weight / torch.sqrt(module.running_var + module.eps)
            shift = module.bias - module.running_mean * scale
            y = ops.multiply(x, self.const(scale.reshape(1, -1, 1, 1)))
            return ops.add(y, self.const(shift.reshape(1, -1, 1, 1))).output(0)
        if isinstance(module, InceptionLayer):
            branches = (module.branch1, module.branch2, module.branch3, module.branch4)
            return ops.concat([self.emit(b, x) for b in branches], 1).output(0)
        if isinstance(module, nn.Linear):
            y = ops.matmul(x, self.const(module.weight), False, True)
            if module.bias is not None:
                y = ops.add(y, self.const(module.bias))
            return y.output(0)
        if isinstance(module, nn.LeakyReLU):
            slope = np.array([module.negative_slope], np.float32)
            return ops.prelu(x, self.const(slope)).output(0)
        raise _Unsupported(type(module).__name__)
