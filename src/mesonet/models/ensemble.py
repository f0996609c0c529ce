"""Ensembles: several models scoring the same crops, combined in logit space.

An ensemble is a model like any other: ``load_model("meso4.df+meso4.dfdc")`` builds one from
bundled names or ``.safetensors`` paths joined by ``+`` (equal weights), and an ensemble card
(JSON, ``arch`` ``"ensemble"``, no weights of its own) names its members and weights, so a
bundled ensemble has a name. Each member's score enters as its calibrated logit (so members
whose raw logits live on different scales count alike); the ensemble's logit is their
weighted mean, then the ensemble card's own calibration, threshold and bands apply.
"""

from __future__ import annotations

import torch
from torch import nn

from mesonet.models.calibration import calibrate_logits, logit, sigmoid
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
        self.members = nn.ModuleList(members)
        total = float(sum(weights))
        self.weights = [float(w) / total for w in weights]
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


def ensemble_card(name: str, members: list[MesoNet], weights: list[float]) -> ModelCard:
    """The card of an ensemble built on the fly (``a+b``): its threshold is the logit mean of
    the members' thresholds, so members all at their thresholds put it at its own."""
    total = float(sum(weights))
    centre = sum(
        w / total * float(logit([m.card.threshold])[0])
        for m, w in zip(members, weights, strict=True)
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
            {"model": m.card.name, "weight": round(w / total, 6)}
            for m, w in zip(members, weights, strict=True)
        ],
        license="; ".join(sorted({m.card.license for m in members if m.card.license})),
    )
