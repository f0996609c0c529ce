"""Crops -> calibrated fake probabilities, for one model or an ensemble, on any backend.

>>> scorer = create_model_scorer(load_model("meso4.df+meso4.dfdc"))
>>> scorer(crops_uint8_nhwc)      # calibrated fake probabilities, float32, shape (N,)

Every member runs on its own engine (:func:`mesonet.backends.create_scorer`, logit output)
over the same batch: the crops are made once, whatever the number of members. A member's
logits pass through its own card's calibration; an ensemble takes their weighted mean; the
model's card (the ensemble's, or the single model's) then applies its calibration. This is
the one place scores are calibrated: the Detector, hence the CLI, the API and scans, use it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from mesonet.backends import _as_array, create_scorer
from mesonet.models.calibration import calibrate_logits, sigmoid
from mesonet.models.ensemble import Ensemble


class ModelScorer:
    """Scores a batch with every member of a model; see the module docstring."""

    def __init__(
        self,
        model: nn.Module,
        backend: str = "auto",
        batch_size: int = 64,
        threads: int | None = None,
    ) -> None:
        card = getattr(model, "card", None)
        if isinstance(model, Ensemble):
            members = [
                (m, getattr(getattr(m, "card", None), "calibration", None), w)
                for m, w in zip(model.members, model.weights, strict=True)
            ]
        else:
            members = [(model, None, 1.0)]
        self._members = [
            (create_scorer(m, backend, batch_size, threads, output="logit"), spec, w)
            for m, spec, w in members
        ]
        self.calibration = getattr(card, "calibration", None) or None
        self.name = self._members[0][0].name
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"ModelScorer({len(self._members)} member(s), backend={self.name!r})"

    def member_logits(self, batch: Any) -> list[np.ndarray]:
        """Each member's (member-calibrated) logits, float64, for the same batch."""
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
    model: nn.Module, backend: str = "auto", batch_size: int = 64, threads: int | None = None
) -> ModelScorer:
    """A :class:`ModelScorer` for ``model`` (a MesoNet or an :class:`Ensemble`)."""
    return ModelScorer(model, backend, batch_size, threads)
