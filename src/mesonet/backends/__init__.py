"""Fast face scoring: one model, several inference engines behind one call.

>>> scorer = create_scorer(load_model("meso4.dfdc"))   # "auto": the fastest exact engine here
>>> scorer(crops_uint8_nhwc)                           # -> float32 fake probabilities, shape (N,)

Every scorer takes a batch either as uint8 RGB crops ``N x 256 x 256 x 3`` (what the face
cropper makes: the ``/255`` and the layout change then run inside the engine) or as the
model's own input, float32 ``N x 3 x 256 x 256`` in [0, 1]; numpy arrays, torch tensors or a
list of crops. It returns numpy float32 fake probabilities and splits big inputs into chunks
of ``batch_size``.

Backends (``backend=``):

- ``"torch"``: PyTorch eager, channels-last, on a copy of the model with its batch norms
  folded into the convolutions around them (exact, see :func:`fold_batchnorm`);
- ``"openvino"``: the folded model converted in memory to OpenVINO and compiled for the CPU
  in fp32 (oneDNN kernels with conv + ReLU + pool fused), the uint8 to float conversion and
  the layout change in the graph;
- ``"onnx"``: the folded model exported in memory to ONNX and run by ONNX Runtime (fp32);
- ``"openvino-bf16"``: OpenVINO with bfloat16 inference (AMX / AVX512-BF16 CPUs); not exact,
  so ``auto`` never picks it (its effect on AUC is measured in ``benchmarks/``);
- ``"auto"``: the first of :data:`AUTO_ORDER` whose package is installed (fastest first, as
  measured by ``benchmarks/bench_scoring.py``); every one of them matches eager PyTorch to
  1e-4.

No file is written and nothing is downloaded: exports stay in memory.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import threading
import warnings
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from mesonet.errors import MesonetError

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "EXACT_BACKENDS",
    "OUTPUTS",
    "Logits",
    "Scorer",
    "available_backends",
    "create_scorer",
    "fold_batchnorm",
]

INPUT_SIZE = 256

OUTPUTS = ("probability", "logit")
"""What a scorer returns (``create_scorer(output=...)``)."""

BACKENDS = ("auto", "torch", "openvino", "onnx", "openvino-bf16")
"""Names ``create_scorer`` accepts (and ``--backend`` offers)."""

EXACT_BACKENDS = ("torch", "openvino", "onnx")
"""Backends whose outputs match eager PyTorch fp32 to 1e-4."""

AUTO_ORDER = ("openvino", "onnx", "torch")
"""What ``auto`` tries, fastest first on a 2-core AVX-512 CPU (see benchmarks/README.md)."""

_PACKAGES = {"openvino": "openvino", "openvino-bf16": "openvino", "onnx": "onnxruntime"}


class BackendError(MesonetError):
    """A backend that is unknown or whose package is not installed."""


class Scorer(Protocol):
    """Maps a batch of faces to fake probabilities (numpy float32, shape ``(N,)``)."""

    name: str
    batch_size: int

    def __call__(self, batch: Any) -> np.ndarray: ...


def available_backends() -> list[str]:
    """The backends usable here (their packages are importable), ``auto`` excluded."""
    return [b for b in BACKENDS[1:] if _installed(b)]


def _installed(backend: str) -> bool:
    package = _PACKAGES.get(backend)
    if package is None:
        return True
    if backend == "onnx" and importlib.util.find_spec("onnx") is None:
        return False  # torch's exporter needs the onnx package
    return importlib.util.find_spec(package) is not None


def _threads(threads: int | None) -> int:
    return int(threads) if threads else max(torch.get_num_threads(), 1)


def create_scorer(
    model: nn.Module,
    backend: str = "auto",
    batch_size: int = 64,
    threads: int | None = None,
    output: str = "probability",
) -> Scorer:
    """A scorer running ``model`` (a MesoNet in any mode; it is not modified) on ``backend``.

    ``threads``: intra-op threads for the engine (default: torch's setting, i.e. the cores).
    ``output``: ``"probability"`` (the model's sigmoid output) or ``"logit"`` (before the
    sigmoid: what calibration and ensembles combine, exact where probabilities saturate).
    Raises :class:`BackendError` for an unknown backend or one whose package is missing.
    """
    if output not in OUTPUTS:
        raise BackendError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if batch_size < 1:
        raise BackendError(f"batch_size must be at least 1, not {batch_size}")
    if backend == "auto":
        backend = next(b for b in AUTO_ORDER if _installed(b))
    elif not _installed(backend):
        extra = "pip install onnxruntime onnx" if backend == "onnx" else "pip install openvino"
        raise BackendError(f"backend {backend!r} needs a package that is not installed: {extra}")
    folded = fold_batchnorm(model)
    if output == "logit":
        folded = Logits(folded)
    threads = _threads(threads)
    if backend == "torch":
        return TorchScorer(folded, batch_size, threads)
    if backend == "onnx":
        return OnnxScorer(folded, batch_size, threads)
    return OpenVinoScorer(folded, batch_size, threads, bf16=backend == "openvino-bf16")


class Logits(nn.Module):
    """A model whose forward gives its logits instead of probabilities: a MesoNet's own
    ``logits``, or, for any module whose forward gives probabilities (DESIGN's contract),
    their log-odds (clamped, so 0 and 1 stay finite)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "logits"):
            return self.model.logits(x)
        return torch.logit(self.model(x).clamp(1e-7, 1 - 1e-7))


# --------------------------------------------------------------------------- batch norm folding


class ChannelShift(nn.Module):
    """Adds a per-channel constant: the shift of a folded batch norm, moved past a max-pool."""

    def __init__(self, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("shift", shift.detach().clone().reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


def _last_convs(layer: nn.Module) -> list[nn.Conv2d] | None:
    """The convs whose ReLU'd outputs (concatenated, in order) form ``layer``'s output."""
    from mesonet.models.mesoinception4 import InceptionLayer

    if isinstance(layer, nn.Conv2d):
        return [layer]
    if isinstance(layer, InceptionLayer):
        convs = []
        for branch in (layer.branch1, layer.branch2, layer.branch3, layer.branch4):
            last = [m for m in branch.modules() if isinstance(m, nn.Conv2d)][-1]
            convs.append(last)
        return convs
    return None


def _first_convs(layer: nn.Module) -> list[nn.Conv2d] | None:
    """The convs that read ``layer``'s input directly."""
    from mesonet.models.mesoinception4 import InceptionLayer

    if isinstance(layer, nn.Conv2d):
        return [layer]
    if isinstance(layer, InceptionLayer):
        branches = (layer.branch1, layer.branch2, layer.branch3, layer.branch4)
        return [next(m for m in b.modules() if isinstance(m, nn.Conv2d)) for b in branches]
    return None


def _unpadded_1x1(conv: nn.Conv2d) -> bool:
    return conv.kernel_size == (1, 1) and conv.padding in ((0, 0), 0) and conv.groups == 1


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of a MesoNet with its batch norms folded away, outputs unchanged.

    In a Meso block the batch norm ``y = a * x + b`` (per channel) sits after the ReLU and
    before the max-pool. When every ``a > 0``: ``a * relu(z) = relu(a * z)``, so ``a`` goes
    into the weights and bias of the conv(s) before the ReLU; and ``max(x + b) = max(x) + b``,
    so ``b`` moves past the pool, onto a 4 to 16 times smaller tensor. There it folds into
    the bias of the next layer when that layer sees no padding (the dense head, the 1 x 1
    convs opening an inception layer); before a zero-padded conv it stays a
    :class:`ChannelShift` (folding it into that conv's bias would be wrong at the borders,
    where the padding zeros would have to become ``-b``). Blocks with any ``a <= 0`` are kept
    as they are. Works on any MesoNet made of ``ConvBlock`` / ``InceptionBlock``; any other
    model is returned as an eval-mode copy.
    """
    folded = copy.deepcopy(model).eval().float()
    features = getattr(folded, "features", None)
    head = getattr(folded, "head", None)
    if not isinstance(features, nn.Sequential):
        return folded
    blocks = list(features)
    for i, block in enumerate(blocks):
        parts = list(block) if isinstance(block, nn.Sequential) else []
        bn_at = next((k for k, m in enumerate(parts) if isinstance(m, nn.BatchNorm2d)), None)
        if bn_at is None or bn_at + 1 >= len(parts):
            continue
        bn, pool = parts[bn_at], parts[bn_at + 1]
        producers = _last_convs(parts[0])
        if not isinstance(pool, nn.MaxPool2d) or producers is None:
            continue
        if bn_at == 2 and not isinstance(parts[1], nn.ReLU):
            continue  # ConvBlock: conv, ReLU, BN, pool
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        if not bool((scale > 0).all()) or sum(c.out_channels for c in producers) != len(scale):
            continue
        start = 0
        for conv in producers:
            s = scale[start : start + conv.out_channels]
            conv.weight.mul_(s.reshape(-1, 1, 1, 1))
            if conv.bias is not None:
                conv.bias.mul_(s)
            start += conv.out_channels
        block[bn_at] = nn.Identity()
        # The shift, after the pool: into the next layer when it sees no padding.
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        consumers = _first_convs(following[0]) if isinstance(following, nn.Sequential) else None
        if following is None and isinstance(head, nn.Sequential):
            linear = next((m for m in head if isinstance(m, nn.Linear)), None)
            if linear is not None and linear.in_features % len(shift) == 0:
                # the head flattens channels-last: feature k holds channel k % C
                repeats = linear.in_features // len(shift)
                linear.bias.add_(linear.weight @ shift.repeat(repeats))
                continue
        elif consumers and all(_unpadded_1x1(c) and c.bias is not None for c in consumers):
            for conv in consumers:
                conv.bias.add_(conv.weight[:, :, 0, 0] @ shift)
            continue
        block[bn_at + 1] = nn.Sequential(pool, ChannelShift(shift))
    return folded


# --------------------------------------------------------------------------- inputs


def _as_array(batch: Any) -> np.ndarray:
    if isinstance(batch, torch.Tensor):
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


class _Uint8Input(nn.Module):
    """uint8 N x H x W x 3 -> the model: the cast, /255 and layout change inside the graph."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.permute(0, 3, 1, 2).float() * (1.0 / 255.0))


# --------------------------------------------------------------------------- torch


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


# --------------------------------------------------------------------------- ONNX Runtime


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


# --------------------------------------------------------------------------- OpenVINO


class OpenVinoScorer(_ChunkedScorer):
    """OpenVINO on the CPU (fp32, or bf16 when asked), converted from the folded model.

    The uint8 graph takes the crops as they are (N x H x W x 3); OpenVINO's preprocessing
    converts, scales and transposes them inside the compiled model. One infer request per
    calling thread (requests are not thread-safe), compiled on first use.
    """

    def __init__(self, model: nn.Module, batch_size: int, threads: int, bf16: bool) -> None:
        super().__init__(batch_size, threads)
        self.name = "openvino-bf16" if bf16 else "openvino"
        self.precision = "bf16" if bf16 else "f32"
        self._model = model
        self._compiled: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def _compile(self, kind: str) -> Any:
        with self._lock:
            if kind not in self._compiled:
                import openvino as ov
                from openvino.preprocess import PrePostProcessor

                graph = openvino_graph(self._model)
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
    with ``openvino.convert_model`` (seconds); models with other modules take that path.
    """
    import openvino as ov

    try:
        if isinstance(model, Logits):
            return _MesoGraph().build(model.model, sigmoid=False)
        return _MesoGraph().build(model)
    except _Unsupported:
        shape = ov.PartialShape([-1, 3, INPUT_SIZE, INPUT_SIZE])
        example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ov.convert_model(model, example_input=example, input=[shape])


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
