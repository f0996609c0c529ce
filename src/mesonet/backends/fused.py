"""An ensemble as one OpenVINO graph: one inference call per batch, whatever its members.

Every member's graph (its own resize and normalisation, ``preprocess``, inside it; batch
norms folded) is spliced onto one shared input; each member's logit is scaled by its
weight over its card's temperature and the products are summed, so the graph's output is
the ensemble's logit before the ensemble card's own calibration, which the scorer applies
on the host as for any model (:class:`mesonet.scoring.ModelScorer`). The uint8 input and its
conversion are added by :class:`~mesonet.backends.openvino_engine.OpenVinoScorer`, as for
one network.

Computed this way the ensemble is the same function as the members scored one by one:
``sum_i w_i * z_i / T_i`` in float32 against the host's float64 sum of the same float32
logits (tests/test_fused_ensemble.py checks 1e-4 on real crops). A member calibrated by an
isotonic map (a step function of the probability, whose logit float32 cannot carry near 0
and 1) cannot be folded in exactly: such an ensemble is not fused (:func:`fusable`) and its
members run one engine call each.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn

COMBINE = "mesonet_ensemble_"
"""The prefix of the names of the ops combining the members' logits."""


def member_prefix(i: int) -> str:
    """The prefix of the names of member ``i``'s ops in the fused graph."""
    return f"mesonet_member{i}/"


def name_ops(graph: Any, prefix: str = "") -> Any:
    """``graph`` with every op named ``prefix`` + its place in graph order and its type
    (``Convolution`` ops otherwise carry a process-wide counter, so that the same network
    converted twice gets the same names: int8 statistics are stored by op name)."""
    for k, op in enumerate(graph.get_ordered_ops()):
        op.set_friendly_name(f"{prefix}{k}_{op.get_type_name()}")
    return graph


def member_scale(member: nn.Module, weight: float) -> float | None:
    """The factor on a member's raw logit (its weight over its temperature), or None when
    its calibration is not a temperature (nor absent)."""
    spec = getattr(getattr(member, "card", None), "calibration", None) or {}
    if not spec:
        return float(weight)
    if spec.get("method") == "temperature":
        return float(weight) / float(spec["temperature"])
    return None


def fusable(ensemble: nn.Module) -> bool:
    """Whether ``ensemble``'s members and their calibrations fit one exact graph."""
    members = getattr(ensemble, "members", None)
    weights = getattr(ensemble, "weights", None)
    if not members or weights is None:
        return False
    return all(member_scale(m, w) is not None for m, w in zip(members, weights, strict=True))


def fused_digest(ensemble: nn.Module) -> str:
    """A digest of what the fused graph computes: each member's graph key (tensors, module
    tree, OpenVINO version) and its factor."""
    from mesonet.backends.cache import graph_key

    digest = hashlib.sha256(b"fused-ensemble|1\n")
    for member, weight in zip(ensemble.members, ensemble.weights, strict=True):
        scale = member_scale(member, weight)
        digest.update(f"{graph_key(member)}|{scale!r}\n".encode())
    return digest.hexdigest()[:32]


def _splice(graph: Any, x: Any) -> Any:
    """``graph``'s output with its one input replaced by the node output ``x``."""
    (parameter,) = graph.get_parameters()
    for target in list(parameter.output(0).get_target_inputs()):
        target.replace_source_output(x)
    (result,) = graph.get_results()
    return result.input_value(0)


def fused_graph(ensemble: nn.Module) -> Any:
    """The OpenVINO model of ``ensemble`` (fp32 N x 3 x 256 x 256 in [0, 1] in, the N
    ensemble logits before the ensemble card's calibration out). Raises ``ValueError`` when
    the ensemble is not :func:`fusable`."""
    from mesonet.backends.folding import Logits, fold_batchnorm
    from mesonet.backends.openvino_build import openvino_graph

    if not fusable(ensemble):
        raise ValueError("an ensemble with an isotonic member calibration cannot be fused")
    pairs = zip(ensemble.members, ensemble.weights, strict=True)
    graphs = [openvino_graph(Logits(fold_batchnorm(m))) for m in ensemble.members]
    return combine_graphs(graphs, [member_scale(m, w) for m, w in pairs])


def combine_graphs(graphs: list[Any], scales: list[float]) -> Any:
    """One OpenVINO model of member logit ``graphs`` (each fp32 N x 3 x 256 x 256 in, N
    logits out; built from modules or read from shipped files) over one shared input, each
    logit times its scale, summed."""
    import openvino as ov
    import openvino.opset13 as ops

    from mesonet.backends.batching import INPUT_SIZE

    x = ops.parameter([-1, 3, INPUT_SIZE, INPUT_SIZE], np.float32, name="x")
    total = None
    for i, (member, scale) in enumerate(zip(graphs, scales, strict=True)):
        z = _splice(name_ops(member, member_prefix(i)), x.output(0))
        term = ops.multiply(z, ops.constant(np.array([scale], np.float32)))
        term.set_friendly_name(f"{COMBINE}scale_{i}")
        if total is None:
            total = term.output(0)
        else:
            added = ops.add(total, term.output(0))
            added.set_friendly_name(f"{COMBINE}sum_{i}")
            total = added.output(0)
    total.get_tensor().set_names({"logit"})
    return ov.Model([total], [x], "mesonet-ensemble")


def combine_op_names(graph: Any) -> list[str]:
    """The names of the ops in ``graph`` that weigh and sum the members' logits (kept in
    fp32 when the graph is quantised: their ranges are the logits', which calibration data
    need not span)."""
    return [
        op.get_friendly_name()
        for op in graph.get_ops()
        if op.get_friendly_name().startswith(COMBINE)
    ]
