"""What an ensemble is, apart from its networks (no PyTorch): its name form ``a+b``, its
weights, and the card of one built on the fly. Used by the PyTorch ensemble
(:mod:`mesonet.models.ensemble`) and by shipped graphs (:mod:`mesonet.models.graph`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mesonet.models.calibration import finite_number, logit, sigmoid
from mesonet.models.card import ENSEMBLE_ARCH, ModelCard

SEPARATOR = "+"


def is_ensemble_name(name: str) -> bool:
    return SEPARATOR in name


def normalised_weights(weights: Sequence[float]) -> list[float]:
    """``weights`` scaled to sum to 1, without overflow: each is divided by the largest
    before they are summed (two weights of 1e308 are two halves, not 0 and 0).

    Raises ``ValueError`` unless every weight is a positive finite number.
    """
    if not weights or not all(finite_number(w) and w > 0 for w in weights):
        raise ValueError("ensemble weights must be positive finite numbers")
    values = [float(w) for w in weights]
    top = max(values)
    scaled = [w / top for w in values]
    total = sum(scaled)  # from 1 to len(weights)
    return [w / total for w in scaled]


def ensemble_card(name: str, members: list[Any], weights: list[float]) -> ModelCard:
    """The card of an ensemble built on the fly (``a+b``): its threshold is the logit mean of
    the members' thresholds, so members all at their thresholds put it at its own.

    Each member is named as it was loaded (``model.source``: a bundled name or the file's
    absolute path, set by :func:`~mesonet.models.registry.load_model`), never by its card's
    name, which may belong to another model; :func:`~mesonet.models.registry.save_ensemble`
    writes paths relative to the saved card.
    """
    shares = normalised_weights(weights)
    centre = sum(
        w * float(logit([m.card.threshold])[0]) for m, w in zip(members, shares, strict=True)
    )
    return ModelCard(
        name=name,
        arch=ENSEMBLE_ARCH,
        description="Ensemble of "
        + ", ".join(m.card.name for m in members)
        + ": the weighted mean of their calibrated logits.",
        resize=members[0].card.resize,
        threshold=round(float(sigmoid(centre)), 6),
        members=[
            {"model": getattr(m, "source", m.card.name), "weight": round(w, 6)}
            for m, w in zip(members, shares, strict=True)
        ],
        license="; ".join(sorted({m.card.license for m in members if m.card.license})),
    )
