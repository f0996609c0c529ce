"""Ensembles: several models scoring the same crops, combined in logit space.

An ensemble is a model like any other: ``load_model("meso4.df+meso4.dfdc")`` builds one from
bundled names or ``.safetensors`` paths joined by ``+`` (equal weights), and an ensemble card
(JSON, ``arch`` ``"ensemble"``, no weights of its own) names its members and weights, so a
bundled ensemble has a name. Each member's score enters as its calibrated logit (so members
whose raw logits live on different scales count alike); the ensemble's logit is their
weighted mean, then the ensemble card's own calibration, threshold and bands apply.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mesonet.models.calibration import calibrate_logits, finite_number, logit, sigmoid
from mesonet.models.card import ENSEMBLE_ARCH, ModelCard
from mesonet.models.meso4 import MesoNet

SEPARATOR = "+"


class Ensemble(nn.Module):
    """Members (MesoNets with cards) and their weights; ``forward`` as a MesoNet's.

    ``logits(x)``: the weighted mean of the members' calibrated logits (the ensemble's own
    calibration, in ``card``, is applied by the scorer, as for any model).
    """

    arch = ENSEMBLE_ARCH

    def __init__(self, members: list[MesoNet], weights: list[float], card: ModelCard) -> None:
        super().__init__()
        if not members or len(members) != len(weights):
            raise ValueError("an ensemble needs members, one weight each")
        # a member listed twice (the same module: see load_model's cache) is scored once,
        # with the sum of its weights
        unique: dict[int, int] = {}
        kept: list[MesoNet] = []
        shares: list[float] = []
        for member, share in zip(members, normalised_weights(weights), strict=True):
            if id(member) in unique:
                shares[unique[id(member)]] += share
            else:
                unique[id(member)] = len(kept)
                kept.append(member)
                shares.append(share)
        self.members = nn.ModuleList(kept)
        self.weights = shares
        self.card = card
        self.unverified = any(getattr(m, "unverified", False) for m in members)

    def member_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each member's calibrated logits for the batch ``x``."""
        out = []
        for member in self.members:
            z = member.logits(x).double()
            spec = getattr(getattr(member, "card", None), "calibration", None)
            out.append(torch.from_numpy(calibrate_logits(spec, z.cpu().numpy())))
        return out

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        zs = self.member_logits(x)
        return sum(w * z for w, z in zip(self.weights, zs, strict=True)).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


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


def ensemble_card(name: str, members: list[MesoNet], weights: list[float]) -> ModelCard:
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
