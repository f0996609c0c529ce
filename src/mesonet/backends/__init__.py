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
- ``"openvino-int8"``: the model quantised to int8 by NNCF on validation crops, or rebuilt
  from the quantisation statistics its card ships (see :mod:`mesonet.backends.int8`; the
  int8 graph is cached); not exact;
- ``"auto"``: ``openvino-int8`` where the model's card records an AUC change within 0.005 on
  every dev set for the int8 graph it can run (the bundled default's;
  :func:`mesonet.backends.int8_choice.auto_int8`),
  else the first of :data:`AUTO_ORDER` whose package is installed (fastest first, as
  measured by ``benchmarks/bench_scoring.py``); every one of those matches eager PyTorch to
  1e-4.

No file is written and nothing is downloaded: exports stay in memory.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

# the parts' names other code reads from here, as it did from the single module
from mesonet.backends.batching import INPUT_SIZE as INPUT_SIZE
from mesonet.backends.batching import _as_array as _as_array
from mesonet.backends.openvino_engine import OpenVinoScorer
from mesonet.errors import MesonetError

if TYPE_CHECKING:
    from torch import nn

_TORCH_PARTS = {  # imported on first use: they need PyTorch, which prediction does not
    "ChannelShift": "mesonet.backends.folding",
    "Logits": "mesonet.backends.folding",
    "fold_batchnorm": "mesonet.backends.folding",
    "OnnxScorer": "mesonet.backends.onnx_engine",
    "TorchScorer": "mesonet.backends.torch_engine",
    "openvino_graph": "mesonet.backends.openvino_build",
}


def __getattr__(name: str) -> Any:
    module = _TORCH_PARTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mesonet.backends' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "EXACT_BACKENDS",
    "OPENVINO_BACKENDS",
    "OUTPUTS",
    "Logits",
    "Scorer",
    "available_backends",
    "create_scorer",
    "fold_batchnorm",
    "resolve_backend",
]

OUTPUTS = ("probability", "logit")
"""What a scorer returns (``create_scorer(output=...)``)."""

BACKENDS = ("auto", "torch", "openvino", "onnx", "openvino-bf16", "openvino-int8")
"""Names ``create_scorer`` accepts (and ``--backend`` offers)."""

EXACT_BACKENDS = ("torch", "openvino", "onnx")
"""Backends whose outputs match eager PyTorch fp32 to 1e-4."""

AUTO_ORDER = ("openvino", "onnx", "torch")
"""What ``auto`` tries, fastest first on a 2-core AVX-512 CPU (see benchmarks/README.md)."""

OPENVINO_BACKENDS = ("openvino", "openvino-bf16", "openvino-int8")
"""The backends on OpenVINO: an ensemble runs on them as one fused graph."""

_PACKAGES = {
    "openvino": "openvino",
    "openvino-bf16": "openvino",
    "openvino-int8": "openvino",
    "onnx": "onnxruntime",
}


class BackendError(MesonetError):
    """A backend that is unknown or whose package is not installed."""


class Scorer(Protocol):
    """Maps a batch of faces to fake probabilities (numpy float32, shape ``(N,)``)."""

    name: str
    batch_size: int

    def __call__(self, batch: Any) -> np.ndarray: ...


def available_backends() -> list[str]:
    """The backends any model can run on here (their packages are importable), ``auto``
    excluded, and ``openvino-int8`` too: it runs only a model with an int8 graph made for
    it (see :mod:`mesonet.backends.int8`)."""
    return [b for b in BACKENDS[1:] if b != "openvino-int8" and _installed(b)]


def _installed(backend: str) -> bool:
    package = _PACKAGES.get(backend)
    if package is None:
        return True
    if backend == "onnx" and importlib.util.find_spec("onnx") is None:
        return False  # torch's exporter needs the onnx package
    return importlib.util.find_spec(package) is not None


def _threads(threads: int | None) -> int:
    """``threads``, or the default: PyTorch's setting where it is loaded, else
    ``OMP_NUM_THREADS`` or the cores this process may run on (what PyTorch starts with)."""
    if threads:
        return int(threads)
    if "torch" in sys.modules:
        return max(sys.modules["torch"].get_num_threads(), 1)
    try:
        return max(int(os.environ.get("OMP_NUM_THREADS", "")), 1)
    except ValueError:
        return max(len(os.sched_getaffinity(0)), 1) if hasattr(os, "sched_getaffinity") else 1


def resolve_backend(model: nn.Module, backend: str, calibration: Any = None) -> str:
    """The backend ``create_scorer`` runs ``model`` on: ``auto`` resolved (int8 only with a
    passing recorded AUC check and its graph cached), others checked as installed."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        if calibration is None and _installed("openvino"):
            from mesonet.backends.int8_choice import auto_int8

            if auto_int8(model) is not None:
                return "openvino-int8"
        return next(b for b in AUTO_ORDER if _installed(b))
    if not _installed(backend):
        extra = "pip install onnxruntime onnx" if backend == "onnx" else "pip install openvino"
        raise BackendError(f"backend {backend!r} needs a package that is not installed: {extra}")
    return backend


def int8_graph_factory(model: nn.Module, calibration: Any = None, logit: bool = True) -> Any:
    """A function returning ``model``'s int8 OpenVINO graph (logits, or probabilities);
    :class:`BackendError` when there is none to run (see :func:`mesonet.backends.int8.
    int8_graph`)."""
    from mesonet.backends.int8 import int8_graph, with_sigmoid

    try:
        factory, _ = int8_graph(model, calibration)
    except LookupError as exc:
        raise BackendError(f"backend 'openvino-int8': {exc}") from None
    except (ImportError, FileNotFoundError) as exc:
        raise BackendError(f"backend 'openvino-int8': {exc}") from None
    return factory if logit else (lambda: with_sigmoid(factory()))


def create_scorer(
    model: nn.Module,
    backend: str = "auto",
    batch_size: int = 64,
    threads: int | None = None,
    output: str = "probability",
    calibration: Any = None,
) -> Scorer:
    """A scorer running ``model`` (a MesoNet in any mode; it is not modified) on ``backend``.

    ``threads``: intra-op threads for the engine (default: torch's setting, i.e. the cores).
    ``output``: ``"probability"`` (the model's sigmoid output) or ``"logit"`` (before the
    sigmoid: what calibration and ensembles combine, exact where probabilities saturate).
    ``calibration``: for ``openvino-int8``, a folder of validation images or uint8 crops to
    quantise on (the result is cached); without it the int8 graph the card's record names,
    else this model's newest cached one, runs (none: :class:`BackendError`).
    Raises :class:`BackendError` for an unknown backend or one whose package is missing.
    """
    if output not in OUTPUTS:
        raise BackendError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    if batch_size < 1:
        raise BackendError(f"batch_size must be at least 1, not {batch_size}")
    backend = resolve_backend(model, backend, calibration)
    threads = _threads(threads)
    if backend == "openvino-int8":
        graph = int8_graph_factory(model, calibration, logit=output == "logit")
        return OpenVinoScorer(None, batch_size, threads, False, graph=graph, name=backend)
    from mesonet.backends.folding import Logits, fold_batchnorm

    folded = fold_batchnorm(model)
    if output == "logit":
        folded = Logits(folded)
    if backend == "torch":
        from mesonet.backends.torch_engine import TorchScorer

        return TorchScorer(folded, batch_size, threads)
    if backend == "onnx":
        from mesonet.backends.onnx_engine import OnnxScorer

        return OnnxScorer(folded, batch_size, threads)
    return OpenVinoScorer(folded, batch_size, threads, bf16=backend == "openvino-bf16")
