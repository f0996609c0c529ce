"""A MesoNet as an OpenVINO graph, built op by op from its (folded) modules' weights, or
traced by ``openvino.convert_model`` for other modules (needs PyTorch: the training and
export side; prediction of a bundled model reads its shipped graph instead)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mesonet.backends.batching import INPUT_SIZE
from mesonet.backends.cache import converted_graph
from mesonet.backends.folding import ChannelShift, Logits


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
