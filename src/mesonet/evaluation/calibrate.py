"""Fit a model's calibration and verdict bands on labelled validation data.

``calibrate_model("meso4.df", "val/")`` scores every face of ``val/real`` and ``val/fake``
with the model's uncalibrated output, fits temperature scaling (or isotonic regression),
maps the card's threshold through the new map (so the labels stay those of the
uncalibrated threshold; with ``threshold_rule``, a new one is chosen on the same data),
derives the verdict bands on the calibrated scores, and returns the updated card. Fitting
works on face scores, each labelled as its file: one per image with ``faces="none"``, every
detected face (and every video frame's) otherwise; they are what the calibration is applied
to, before any video aggregation.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np

from mesonet.errors import MesonetError
from mesonet.evaluation.metrics import (
    ThresholdRule,
    best_threshold,
    brier_score,
    expected_calibration_error,
)
from mesonet.evaluation.runner import collect_labelled
from mesonet.inputs import Limits
from mesonet.models import ModelCard, load_model
from mesonet.models.calibration import (
    CALIBRATION_METHODS,
    TEMPERATURE_RANGE,
    calibrate_logits,
    calibrate_probability,
    derive_bands,
    fit_isotonic,
    fit_temperature,
    logit,
    sigmoid,
    temperature_at_bound,
)
from mesonet.pipeline import Detector
from mesonet.results import MediaResult

MIN_SEPARATION = 0.02
"""Calibration is refused when the validation ROC AUC of the scores is within this of 0.5:
data the model cannot separate would fit a map that answers about 0.5 to everything."""
FIT_SCALE = 32.0
"""While fitting, scores are emitted as sigmoid(logit / 32) and read back: the records'
6-decimal probabilities then keep raw logits up to ~400 exact to ~1e-3 (MesoInception's
reach 90, where a plain probability saturates at 1.0)."""


@dataclass
class CalibrationFit:
    """The outcome of :func:`calibrate_model`: the new card, the model, and what changed."""

    card: ModelCard
    model: Any
    n: int
    ece_before: float
    ece_after: float
    brier_before: float
    brier_after: float


def collect_face_logits(
    detector: Detector,
    data: str | os.PathLike[str],
    limits: Limits | None = None,
    on_result: Callable[[MediaResult, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The uncalibrated logits of every scored face under ``data`` and its file's label."""
    labelled = collect_labelled(data, limits)
    by_path = {str(lab.item.path): lab.label for lab in labelled}
    detector.scorer.calibration = {"method": "temperature", "temperature": FIT_SCALE}
    logits: list[float] = []
    labels: list[int] = []
    for result in detector.predict_items(lab.item for lab in labelled):
        if on_result is not None:
            on_result(result, len(labelled))
        for face in result.faces if result.status == "ok" else ():
            logits.append(FIT_SCALE * float(logit([face.fake_probability])[0]))
            labels.append(by_path[result.path])
    return np.asarray(logits), np.asarray(labels, dtype=np.int64)


class CalibrationError(MesonetError):
    """The data cannot support a calibration (the CLI: one line, exit 2)."""


def check_separation(z: np.ndarray, y: np.ndarray, data: object = "the data") -> float:
    """The ROC AUC of scores ``z`` for labels ``y``; :class:`CalibrationError` when it is
    within :data:`MIN_SEPARATION` of 0.5 (the model cannot tell the classes apart there)."""
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(y, z))
    if abs(auc - 0.5) < MIN_SEPARATION:
        raise CalibrationError(
            f"{data}: the model cannot tell its real from its fake examples (ROC AUC "
            f"{auc:.3f}, within {MIN_SEPARATION} of chance): a calibration fitted on it would "
            "answer about 0.5 to everything; calibrate on data the model separates"
        )
    return auc


def calibrate_model(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    method: str = "temperature",
    faces: str = "detect",
    frames: int = 32,
    backend: str = "auto",
    limits: Limits | None = None,
    command: str = "",
    on_result: Callable[[MediaResult, int], None] | None = None,
    trust_unverified: bool = False,
    threshold_rule: ThresholdRule | None = None,
) -> CalibrationFit:
    """Fit ``method`` on the labelled folder ``data``; see the module docstring.

    ``threshold_rule`` (youden, eer or accuracy) replaces the card's threshold by the one the
    rule picks on ``data``'s face scores, for a model whose threshold was never chosen on
    data (an ad-hoc ensemble's is the mean of its members').

    ``trust_unverified`` loads weights whose card carries no sha256 (refused otherwise); the
    fit's model then stays marked unverified (``fit.model.unverified``).

    Raises :class:`CalibrationError` when the data cannot support a calibration: the model
    does not separate its classes (ROC AUC within :data:`MIN_SEPARATION` of 0.5), or the
    fitted temperature sits at an end of its range. An ensemble's card names its members by
    their references (bundled names or absolute paths; ``save_ensemble`` writes them relative
    to the saved card), never by their cards' names.
    """
    if method not in CALIBRATION_METHODS:
        raise MesonetError(
            f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, not {method!r}"
        )
    if threshold_rule is not None and threshold_rule not in get_args(ThresholdRule):
        raise MesonetError(
            f"threshold rule must be one of {', '.join(get_args(ThresholdRule))}, "
            f"not {threshold_rule!r}"
        )
    loaded = load_model(model, trust_unverified=trust_unverified)
    card = copy.deepcopy(loaded.card)
    detector = Detector(loaded, faces=faces, frames=frames, backend=backend)
    z, y = collect_face_logits(detector, data, limits, on_result)
    if z.size < 40 or not 0 < y.sum() < y.size:
        raise MesonetError(
            f"{data}: calibration needs at least 40 scored faces of both real and fake "
            f"examples, got {z.size} ({int(y.sum())} fake)"
        )
    check_separation(z, y, data)
    previous = card.calibration or {}
    if previous and "raw_threshold" not in previous:
        raise MesonetError(f"{card.name}: its calibration does not record its raw threshold")
    raw_threshold = float(previous["raw_threshold"]) if previous else card.threshold
    if threshold_rule is not None:  # chosen on the uncalibrated logits (no saturation)
        raw_threshold = float(sigmoid(best_threshold(y, z, threshold_rule)))
    before = sigmoid(calibrate_logits(previous or None, z))
    if method == "temperature":
        temperature = fit_temperature(z, y)
        if temperature_at_bound(temperature):
            raise CalibrationError(
                f"{data}: the fitted temperature ({temperature:.4g}) is at the end of its "
                f"range ({TEMPERATURE_RANGE[0]:g} to {TEMPERATURE_RANGE[1]:g}): the data "
                "cannot place it, and the model would answer "
                + ("about 0.5 to everything" if temperature > 1 else "only 0 or 1")
                + "; calibrate on data it separates"
            )
        spec: dict[str, Any] = {"method": "temperature", "temperature": round(temperature, 6)}
    else:
        x_points, y_points = fit_isotonic(sigmoid(z), y)
        spec = {"method": "isotonic", "x": x_points, "y": y_points}
    after = sigmoid(calibrate_logits(spec, z))
    threshold = round(calibrate_probability(spec, raw_threshold), 6)
    bands = derive_bands(after, y, threshold)
    name = (
        Path(data).name
        if Path(data).name not in ("val", "validation", "test")
        else (f"{Path(data).parent.name}/{Path(data).name}")
    )
    fit = {
        "ece_before": round(float(expected_calibration_error(y, before)), 6),
        "ece_after": round(float(expected_calibration_error(y, after)), 6),
        "brier_before": round(float(brier_score(y, before)), 6),
        "brier_after": round(float(brier_score(y, after)), 6),
    }
    spec.update(
        raw_threshold=round(raw_threshold, 6),
        **({"threshold_rule": threshold_rule} if threshold_rule else {}),
        data=name,
        faces=faces,
        n=int(z.size),
        **fit,
        command=command,
    )
    card.calibration = spec
    card.threshold = threshold
    card.verdict_bands = {**bands, "data": name, "n": int(z.size)}
    card.check()
    loaded.card = card
    return CalibrationFit(
        card=card,
        model=loaded,
        n=int(z.size),
        ece_before=fit["ece_before"],
        ece_after=fit["ece_after"],
        brier_before=fit["brier_before"],
        brier_after=fit["brier_after"],
    )
