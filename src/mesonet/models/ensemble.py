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

from mesonet.models.calibration import calibrate_logits
from mesonet.models.card import ENSEMBLE_ARCH, ModelCard
from mesonet.models.combine import SEPARATOR as SEPARATOR
from mesonet.models.combine import ensemble_card as ensemble_card
from mesonet.models.combine import is_ensemble_name as is_ensemble_name
from mesonet.models.combine import normalised_weights
from mesonet.models.meso4 import MesoNet


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
