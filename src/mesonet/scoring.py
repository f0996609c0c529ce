"""Crops -> calibrated fake probabilities, for one model or an ensemble, on any backend.

>>> scorer = create_model_scorer(load_model("meso4.df+meso4.dfdc"))
>>> scorer(crops_uint8_nhwc)      # calibrated fake probabilities, float32, shape (N,)

Every member runs on its own engine (:func:`mesonet.backends.create_scorer`, logit output)
over the same batch: the crops are made once, whatever the number of members. A member's
logits pass through its own card's calibration; an ensemble takes their weighted mean; the
model's card (the ensemble's, or the single model's) then applies its calibration. This is
the one place scores are calibrated: the Detector, hence the CLI, the API and scans, use it.

On the OpenVINO backends an ensemble runs as one graph (:mod:`mesonet.backends.fused`): its
members, their calibrations and weights compiled together over one shared input, so a batch
costs one inference call; the result is the same logit to float32 rounding. ``fuse=False``
(or a member calibrated by an isotonic map) keeps one engine per member. On
``openvino-int8`` the fused graph is what is quantised (one int8 graph per ensemble).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mesonet.backends import (
    OPENVINO_BACKENDS,
    OpenVinoScorer,
    _as_array,
    _threads,
    create_scorer,
    int8_graph_factory,
    resolve_backend,
)
from mesonet.backends.fused import fusable, fused_graph
from mesonet.models.calibration import calibrate_logits, sigmoid
from mesonet.models.graph import GraphModel

if TYPE_CHECKING:
    from torch import nn


class ModelScorer:
    """Scores a batch with every member of a model; see the module docstring.

    ``fused``: whether the ensemble runs as one graph (one engine call per batch).
    """

    def __init__(
        self,
        model: nn.Module,
        backend: str = "auto",
        batch_size: int = 64,
        threads: int | None = None,
        fuse: bool = True,
        calibration: Any = None,
    ) -> None:
        card = getattr(model, "card", None)
        self.calibration = getattr(card, "calibration", None) or None
        self.batch_size = batch_size
        self.fused = False
        if isinstance(model, GraphModel):
            self._members = graph_members(model, backend, batch_size, _threads(threads), fuse)
            self.fused = model.is_ensemble and len(self._members) == 1
            self.name = self._members[0][0].name
            return
        ensemble = getattr(model, "members", None) is not None
        if ensemble and fuse and fusable(model):
            resolved = resolve_backend(model, backend, calibration)
            if resolved in OPENVINO_BACKENDS:
                backend = resolved
                if backend == "openvino-int8":
                    graph = int8_graph_factory(model, calibration)
                else:
                    graph = lambda: fused_graph(model)  # noqa: E731
                engine = OpenVinoScorer(
                    None,
                    batch_size,
                    _threads(threads),
                    bf16=backend == "openvino-bf16",
                    graph=graph,
                    name=backend,
                )
                self._members = [(engine, None, 1.0)]
                self.name = backend
                self.fused = True
                return
        if ensemble:
            members = [
                (m, getattr(getattr(m, "card", None), "calibration", None), w)
                for m, w in zip(model.members, model.weights, strict=True)
            ]
        else:
            members = [(model, None, 1.0)]
        self._members = [
            (
                create_scorer(m, backend, batch_size, threads, "logit", calibration),
                spec,
                w,
            )
            for m, spec, w in members
        ]
        self.name = self._members[0][0].name

    def __repr__(self) -> str:
        shape = "fused" if self.fused else f"{len(self._members)} member(s)"
        return f"ModelScorer({shape}, backend={self.name!r})"

    def member_logits(self, batch: Any) -> list[np.ndarray]:
        """Each member's (member-calibrated) logits, float64, for the same batch (a fused
        ensemble has one: the weighted sum, computed in its graph)."""
        array = _as_array(batch)
        return [calibrate_logits(spec, s(array)) for s, spec, _ in self._members]

    def logits(self, batch: Any) -> np.ndarray:
        """The model's logits before its own card's calibration."""
        zs = self.member_logits(batch)
        if len(zs) == 1:
            return zs[0]
        return np.sum([w * z for (_, _, w), z in zip(self._members, zs, strict=True)], axis=0)

    def __call__(self, batch: Any) -> np.ndarray:
        z = calibrate_logits(self.calibration, self.logits(batch))
        return sigmoid(z).astype(np.float32)


def create_model_scorer(
    model: nn.Module,
    backend: str = "auto",
    batch_size: int = 64,
    threads: int | None = None,
    fuse: bool = True,
    calibration: Any = None,
) -> ModelScorer:
    """A :class:`ModelScorer` for ``model`` (a MesoNet or an :class:`Ensemble`)."""
    return ModelScorer(model, backend, batch_size, threads, fuse, calibration)


GRAPH_BACKENDS = ("auto", "openvino", "openvino-bf16", "openvino-int8")
"""What a model in its graph form runs on (PyTorch and ONNX Runtime need its weights)."""


def graph_backend(model: GraphModel, backend: str) -> str:
    """The backend a graph model runs on: ``auto`` is ``openvino-int8`` when the model
    ships an int8 graph and its card's record passes (as for its weights), else
    ``openvino``; ``openvino-int8`` needs the shipped int8 graph."""
    from mesonet.backends import BackendError
    from mesonet.backends.int8_record import record_passes

    if backend not in GRAPH_BACKENDS:
        raise BackendError(
            f"backend {backend!r} runs a model from its weights, with PyTorch: "
            "pip install 'mesonet[train]' (or use --backend openvino)"
        )
    if backend == "auto":
        return (
            "openvino-int8" if model.int8 is not None and record_passes(model.card) else "openvino"
        )
    if backend == "openvino-int8" and model.int8 is None:
        raise BackendError(
            f"backend 'openvino-int8': {model.card.name} ships no int8 graph; quantise it "
            "with pip install 'mesonet[train]' and --int8-calibration"
        )
    return backend


def graph_members(
    model: GraphModel, backend: str, batch_size: int, threads: int, fuse: bool = True
) -> list[tuple[Any, Any, float]]:
    """The engines scoring a graph model, as :class:`ModelScorer` keeps them: one (a single
    model, a fused ensemble, an int8 graph) or one per member, with its calibration and
    weight."""
    backend = graph_backend(model, backend)
    bf16 = backend == "openvino-bf16"

    def engine(graph: Any) -> OpenVinoScorer:
        return OpenVinoScorer(None, batch_size, threads, bf16=bf16, graph=graph, name=backend)

    if backend == "openvino-int8":
        assert model.int8 is not None
        return [(engine(model.int8.read), None, 1.0)]
    if not model.is_ensemble or (fuse and fusable(model)):
        return [(engine(model.logit_graph), None, 1.0)]
    return [
        (engine(m.logit_graph), m.card.calibration or None, w)
        for m, w in zip(model.members, model.weights, strict=True)
    ]
