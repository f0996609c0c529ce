"""The ``openvino``, ``openvino-bf16`` and ``openvino-int8`` backends: OpenVINO on the CPU,
running the model's graph (built op by op from its weights by
:mod:`mesonet.backends.openvino_build`, read from a shipped graph file, or any OpenVINO graph
handed over: a fused ensemble, a quantised model). No PyTorch here."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from mesonet.backends.batching import _ChunkedScorer
from mesonet.backends.cache import compiled_cache_dir

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
        model: Any,
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

            def graph() -> Any:
                from mesonet.backends.openvino_build import openvino_graph

                return openvino_graph(model)

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
