"""Calibration maps and verdict bands: what a model card says about its own scores.

A model's raw output is a logit. Its card may hold a **calibration** fitted on validation
data, so that ``fake_probability`` 0.9 means "forged about nine times in ten" on data like it:

- ``{"method": "temperature", "temperature": T}``: ``logit / T`` (Guo et al. 2017); one
  number, monotone, so ROC AUC and the labels at the (mapped) threshold do not change;
- ``{"method": "isotonic", "x": [...], "y": [...]}``: a monotone step map of the
  uncalibrated probability, interpolated linearly between its points (scikit-learn's
  ``IsotonicRegression``); more flexible, needs more data, can tie scores together.

**Verdict bands** turn a probability into words: ``likely real`` below ``uncertain[0]``,
``likely forged`` from ``uncertain[1]`` up, ``uncertain`` between. Bands are measured on
validation data by :func:`derive_bands`; cards without them get :func:`default_bands`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

CALIBRATION_METHODS = ("temperature", "isotonic")
VERDICTS = ("likely real", "uncertain", "likely forged")
EPS = 1e-6
"""Probabilities are kept within [EPS, 1 - EPS] before taking a logit."""
TEMPERATURE_RANGE = (1e-3, 1e3)
"""Temperatures a card may hold and :func:`fit_temperature` searches; a fit at either end
means the data could not place it (see :func:`temperature_at_bound`)."""
BAND_MIN_ACCURACY = 0.6
"""Scores whose validation accuracy falls under this are ``uncertain``."""
DEFAULT_BAND_LOGIT = math.log(BAND_MIN_ACCURACY / (1 - BAND_MIN_ACCURACY))
"""Half-width of the default band in logits: where a calibrated score is right < 60%."""


def logit(p: ArrayLike) -> np.ndarray:
    """log(p / (1 - p)), with ``p`` clipped to [EPS, 1 - EPS] so the result is finite."""
    q = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(q) - np.log1p(-q)


def sigmoid(z: ArrayLike) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for large |z|


def check_calibration(spec: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` saying what is wrong with a card's ``calibration`` object."""
    if not spec:
        return
    method = spec.get("method")
    if method not in CALIBRATION_METHODS:
        raise ValueError(
            f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, not {method!r}"
        )
    if method == "temperature":
        t = spec.get("temperature")
        if not (finite_number(t) and TEMPERATURE_RANGE[0] <= t <= TEMPERATURE_RANGE[1]):
            shown = repr(t) if finite_number(t) or not isinstance(t, int) else "a huge integer"
            raise ValueError(f"calibration temperature must be from 0.001 to 1000, not {shown}")
        return
    x, y = spec.get("x"), spec.get("y")
    if not (isinstance(x, list) and isinstance(y, list) and 2 <= len(x) == len(y) <= 10_000):
        raise ValueError("isotonic calibration needs lists x and y of equal length (2 to 10000)")
    if not all(finite_number(v) and 0.0 <= v <= 1.0 for v in (*x, *y)):
        raise ValueError("isotonic calibration points must be numbers from 0 to 1")
    if any(b < a for a, b in zip(x, x[1:], strict=False)) or any(
        b < a for a, b in zip(y, y[1:], strict=False)
    ):
        raise ValueError("isotonic calibration points must be non-decreasing")


def check_bands(bands: Mapping[str, Any], threshold: float) -> None:
    """Raise ``ValueError`` unless ``bands['uncertain']`` is [lo, hi] in [0, 1] around
    ``threshold``."""
    if not bands:
        return
    band = bands.get("uncertain")
    if not (isinstance(band, list) and len(band) == 2 and all(finite_number(v) for v in band)):
        raise ValueError("verdict_bands.uncertain must be a list [low, high] of two numbers")
    lo, hi = band
    if not 0.0 <= lo <= threshold <= hi <= 1.0:
        raise ValueError(
            f"verdict_bands.uncertain [{lo}, {hi}] must lie in [0, 1] around the threshold "
            f"{threshold}"
        )


def finite_number(value: Any) -> bool:
    """A real number (not a bool) that is finite as a float, whatever its size as an int."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int):  # compared exactly: float() would overflow past 1e308
        return -sys.float_info.max <= value <= sys.float_info.max
    return math.isfinite(value)


def calibrate_logits(spec: Mapping[str, Any] | None, logits: ArrayLike) -> np.ndarray:
    """Logits after the card's calibration (unchanged without one)."""
    z = np.asarray(logits, dtype=np.float64)
    if not spec:
        return z
    if spec["method"] == "temperature":
        return z / float(spec["temperature"])
    return logit(np.interp(sigmoid(z), spec["x"], spec["y"]))


def calibrate_probability(spec: Mapping[str, Any] | None, p: float) -> float:
    """One uncalibrated probability through the map (used for thresholds and bands)."""
    if not spec:
        return float(p)
    if p <= 0.0 or p >= 1.0:
        return float(p)  # the ends stay the ends: "never" and "always" fake
    return float(sigmoid(calibrate_logits(spec, logit([p])))[0])


def fit_temperature(logits: ArrayLike, labels: ArrayLike) -> float:
    """The temperature minimising the log loss of ``sigmoid(logits / T)`` on ``labels``.

    A one-dimensional convex problem in ``1 / T``: solved by bounded scalar minimisation.
    """
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if z.size == 0 or not 0 < y.sum() < y.size:
        raise ValueError("calibration needs scores of both real and fake examples")

    def loss(log_inv_t: float) -> float:
        s = z * math.exp(log_inv_t)
        # log(1 + e^s) - y * s, computed stably
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    low, high = TEMPERATURE_RANGE
    best = minimize_scalar(loss, bounds=(math.log(1 / high), math.log(1 / low)), method="bounded")
    return float(math.exp(-best.x))


def temperature_at_bound(temperature: float, tolerance: float = 0.01) -> bool:
    """Whether a fitted temperature sits at an end of :data:`TEMPERATURE_RANGE` (within
    ``tolerance`` in log terms): the log loss kept falling past it, so the data asked for a
    model that answers 0.5 to everything (or for one that never doubts)."""
    low, high = (math.log(b) for b in TEMPERATURE_RANGE)
    t = math.log(temperature)
    return t <= low + tolerance * (high - low) or t >= high - tolerance * (high - low)


def fit_isotonic(probabilities: ArrayLike, labels: ArrayLike) -> tuple[list[float], list[float]]:
    """Breakpoints (x, y) of the isotonic regression of ``labels`` on ``probabilities``."""
    from sklearn.isotonic import IsotonicRegression

    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if p.size == 0 or not 0 < y.sum() < y.size:
        raise ValueError("calibration needs scores of both real and fake examples")
    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    x, yy = model.X_thresholds_, model.y_thresholds_
    if x[0] > 0.0:  # make the map cover [0, 1]
        x, yy = np.r_[0.0, x], np.r_[yy[0], yy]
    if x[-1] < 1.0:
        x, yy = np.r_[x, 1.0], np.r_[yy, yy[-1]]
    return [round(float(v), 8) for v in x], [round(float(v), 8) for v in yy]


# --------------------------------------------------------------------------- verdicts


def default_bands(threshold: float) -> dict[str, Any]:
    """Bands for a card that has none: where a calibrated score is right less than 60%."""
    centre = float(logit([threshold])[0])
    lo, hi = sigmoid([centre - DEFAULT_BAND_LOGIT, centre + DEFAULT_BAND_LOGIT])
    return {
        "uncertain": [round(float(min(lo, threshold)), 6), round(float(max(hi, threshold)), 6)],
        "rule": "default: +-0.405 logits around the threshold (not measured on data)",
    }


def derive_bands(
    probabilities: ArrayLike,
    labels: ArrayLike,
    threshold: float,
    *,
    min_accuracy: float = BAND_MIN_ACCURACY,
    bins: int = 20,
) -> dict[str, Any]:
    """The band around ``threshold`` where validation accuracy falls under ``min_accuracy``.

    Scores are cut into ``bins`` equal-count bins; each bin's accuracy is the share of its
    examples that the threshold labels right. Starting from the bins next to the threshold,
    the band grows outwards, one bin at a time on each side, while that bin's accuracy is
    under ``min_accuracy``. Its edges are the scores between the last bin inside and the
    first outside. When the bins next to the threshold are already accurate enough, the
    band is empty (``[threshold, threshold]``): the model is never ``uncertain``.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if p.size < 2 * bins:
        raise ValueError(f"deriving verdict bands needs at least {2 * bins} scored examples")
    order = np.argsort(p, kind="stable")
    p, y = p[order], y[order]
    right = (p >= threshold).astype(np.int64) == y
    below, above = p < threshold, p >= threshold
    lo = hi = float(threshold)
    per_side = max(1, bins // 2)
    inside: dict[str, list[float]] = {}
    for side, mask in (("below", below), ("above", above)):
        idx = np.flatnonzero(mask)
        if side == "below":
            idx = idx[::-1]  # nearest the threshold first
        size = max(1, int(math.ceil(p.size / bins)))
        chunks = [idx[i : i + size] for i in range(0, idx.size, size)]
        accuracies = [float(right[c].mean()) for c in chunks[: per_side * 2]]
        k = 0
        while k < len(accuracies) and accuracies[k] < min_accuracy:
            k += 1
        inside[side] = accuracies
        if k == 0:
            continue
        if k < len(chunks):  # midway between the last score inside and the first outside
            edge = (p[chunks[k - 1][-1]] + p[chunks[k][0]]) / 2.0
        else:
            edge = 0.0 if side == "below" else 1.0
        if side == "below":
            lo = float(edge)
        else:
            hi = float(edge)
    return {
        "uncertain": [round(min(lo, threshold), 6), round(max(hi, threshold), 6)],
        "rule": (
            f"validation accuracy under {min_accuracy:.0%} in {bins} equal-count score bins, "
            "grown outwards from the threshold"
        ),
        "bin_accuracy_below": [round(a, 4) for a in inside.get("below", [])],
        "bin_accuracy_above": [round(a, 4) for a in inside.get("above", [])],
    }


def verdict_for(
    probability: float, threshold: float, bands: Mapping[str, Any], card_threshold: float
) -> str:
    """``likely real``, ``uncertain`` or ``likely forged`` for one score.

    ``bands`` are measured around ``card_threshold``; a different decision ``threshold`` (a
    user's ``--threshold``, or a video rule's own cut) moves them along in logit space, so
    the band keeps its width in logits. The words never contradict the number: ``likely
    forged`` needs a probability of at least one half and the threshold, ``likely real`` one
    under both; a score between the threshold and one half is ``uncertain``, whatever the
    label (which follows the threshold alone).
    """
    lo, hi = bands["uncertain"]
    if abs(threshold - card_threshold) > 1e-12:
        shift = float(logit([threshold])[0] - logit([card_threshold])[0])
        lo = 0.0 if lo <= 0.0 else float(sigmoid(logit([lo]) + shift)[0])
        hi = 1.0 if hi >= 1.0 else float(sigmoid(logit([hi]) + shift)[0])
        lo, hi = min(lo, threshold), max(hi, threshold)
    lo, hi = min(lo, 0.5), max(hi, 0.5)
    if probability < lo:
        return VERDICTS[0]
    if probability >= hi:
        return VERDICTS[2]
    return VERDICTS[1]


def band_summary(values: Sequence[float]) -> str:
    """'0.412-0.561' for a band, for tables."""
    return f"{values[0]:.3f}-{values[1]:.3f}"
