"""Detection metrics: AUC, AP, EER, thresholded scores, per-group splits, threshold choice.

Convention everywhere: fake is the positive class (label 1) and scores are fake probabilities
in [0, 1]; a sample is labelled fake when ``score >= threshold``. Metrics that are undefined for
the given data (one class only, division by zero) are ``None``, never NaN, so every result is
JSON-serialisable.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score, roc_curve

__all__ = [
    "ECE_BINS",
    "METRIC_KEYS",
    "best_threshold",
    "brier_score",
    "calibration_bins",
    "expected_calibration_error",
    "compute_metrics",
    "eer",
    "eer_threshold",
    "group_of",
]

#: Keys of the dict returned by :func:`compute_metrics`, in order.
METRIC_KEYS: tuple[str, ...] = (
    "n",
    "auc",
    "ap",
    "eer",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "ece",
    "brier",
    "threshold",
    "confusion",
    "by_group",
)

ECE_BINS = 15
"""Equal-width bins of the fake probability for the expected calibration error."""

ThresholdRule = Literal["youden", "eer", "accuracy"]


def _as_arrays(y_true: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert labels (0/1) and scores (finite floats) to 1-D arrays."""
    y = np.asarray(y_true).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"y_true and scores differ in length ({y.size} vs {s.size})")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0 (real) and 1 (fake)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite numbers (fake probabilities in [0, 1])")
    return y.astype(np.int64), s


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.size) and 0 < int(y.sum()) < y.size


def _ratio(num: int, den: int) -> float | None:
    return float(num) / float(den) if den else None


def _eer_from_roc(fpr: np.ndarray, tpr: np.ndarray) -> tuple[float, int]:
    """EER interpolated on the ROC polyline, and the index of the first point with FPR >= FNR."""
    diff = (1.0 - tpr) - fpr  # FNR - FPR: +1 at the first ROC point, -1 at the last
    i = int(np.argmax(diff <= 0.0))
    if diff[i] == 0.0 or i == 0:
        return float(fpr[i]), i
    d0, d1 = diff[i - 1], diff[i]
    t = d0 / (d0 - d1)
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1])), i


def eer(y_true: ArrayLike, scores: ArrayLike) -> float | None:
    """Equal error rate: where FPR == FNR (1 - TPR), linearly interpolated between ROC points.

    ``None`` when only one class is present.
    """
    y, s = _as_arrays(y_true, scores)
    if not _both_classes(y):
        return None
    fpr, tpr, _ = roc_curve(y, s)
    return _eer_from_roc(fpr, tpr)[0]


def _confusion(y: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    if not y.size:
        return {"tn": 0, "fp": 0, "fn": 0, "tp": 0}
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}


def _metrics(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, Any]:
    """All metrics but ``by_group`` for validated arrays."""
    both = _both_classes(y)
    conf = _confusion(y, (s >= threshold).astype(np.int64))
    tn, fp, fn, tp = conf["tn"], conf["fp"], conf["fn"], conf["tp"]
    return {
        "n": int(y.size),
        "auc": float(roc_auc_score(y, s)) if both else None,
        # AP, like AUC, ranks fakes above reals: with one class it is undefined (with fakes
        # only it would be 1.0 whatever the scores), so a one-class group shows "-"
        "ap": float(average_precision_score(y, s)) if both else None,
        "eer": _eer_from_roc(*roc_curve(y, s)[:2])[0] if both else None,
        "accuracy": _ratio(tp + tn, y.size),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "ece": _ece(y, s, ECE_BINS) if y.size else None,
        "brier": float(np.mean((s - y) ** 2)) if y.size else None,
        "threshold": float(threshold),
        "confusion": conf,
    }


def calibration_bins(
    y_true: ArrayLike, scores: ArrayLike, bins: int = ECE_BINS
) -> list[dict[str, float | int]]:
    """The reliability diagram's data: for each non-empty equal-width bin of the fake
    probability, its range, ``n``, the mean score and the share of fakes in it."""
    y, s = _as_arrays(y_true, scores)
    index = np.clip((s * bins).astype(np.int64), 0, bins - 1)  # p = 1.0 in the last bin
    out = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            out.append(
                {
                    "low": b / bins,
                    "high": (b + 1) / bins,
                    "n": int(mask.sum()),
                    "mean_probability": float(s[mask].mean()),
                    "fake_share": float(y[mask].mean()),
                }
            )
    return out


def _ece(y: np.ndarray, s: np.ndarray, bins: int) -> float:
    total = sum(
        b["n"] * abs(b["fake_share"] - b["mean_probability"]) for b in calibration_bins(y, s, bins)
    )
    return float(total / y.size)


def expected_calibration_error(
    y_true: ArrayLike, scores: ArrayLike, bins: int = ECE_BINS
) -> float | None:
    """ECE: over ``bins`` equal-width bins of the fake probability, the gap between the share
    of fakes and the mean probability in each bin, weighted by the bin's share of examples
    (0 = calibrated: of the examples scored about 0.9, about 90% are fake). None when empty."""
    y, s = _as_arrays(y_true, scores)
    return _ece(y, s, bins) if y.size else None


def brier_score(y_true: ArrayLike, scores: ArrayLike) -> float | None:
    """Mean squared gap between the fake probability and the label (0 best, 0.25 = always 0.5)."""
    y, s = _as_arrays(y_true, scores)
    return float(np.mean((s - y) ** 2)) if y.size else None


def compute_metrics(
    y_true: ArrayLike,
    scores: ArrayLike,
    threshold: float = 0.5,
    groups: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Standard detection metrics for labels (1 = fake) and fake probabilities.

    Returns a JSON-serialisable dict with the keys in :data:`METRIC_KEYS`; ``by_group`` maps
    each group name (e.g. the manipulation method, see :func:`group_of`) to the same metrics
    without ``by_group``, and is empty when ``groups`` is None. Undefined values are ``None``.
    """
    y, s = _as_arrays(y_true, scores)
    out = _metrics(y, s, threshold)
    by_group: dict[str, dict[str, Any]] = {}
    if groups is not None:
        g = np.asarray([str(x) for x in groups], dtype=object)
        if g.size != y.size:
            raise ValueError(f"groups and y_true differ in length ({g.size} vs {y.size})")
        for name in sorted(set(g.tolist())):
            mask = g == name
            by_group[name] = _metrics(y[mask], s[mask], threshold)
    out["by_group"] = by_group
    return out


def _roc_points(y_true: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, ...]:
    """Full ROC (every distinct score a threshold), first (infinite) point dropped."""
    y, s = _as_arrays(y_true, scores)
    if not _both_classes(y):
        raise ValueError("choosing a threshold needs both real (0) and fake (1) examples")
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    return y, fpr[1:], tpr[1:], thr[1:]


def _between(thr: np.ndarray, k: int) -> float:
    """A threshold that labels exactly the scores >= thr[k] as fake, midway to the next score."""
    if k + 1 < thr.size:
        return float((thr[k] + thr[k + 1]) / 2.0)
    return float(thr[k])


def eer_threshold(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Threshold at the ROC point nearest to the equal error rate.

    Raises ``ValueError`` unless both classes are present.
    """
    _, fpr, tpr, thr = _roc_points(y_true, scores)
    k = int(np.argmin(np.abs((1.0 - tpr) - fpr)))
    return _between(thr, k)


def best_threshold(y_true: ArrayLike, scores: ArrayLike, rule: ThresholdRule = "youden") -> float:
    """Choose a decision threshold on validation data.

    ``youden`` maximises TPR - FPR, ``eer`` balances FPR and FNR, ``accuracy`` maximises
    accuracy. The threshold lies midway between two adjacent validation scores, so it labels
    them as the chosen ROC point does. Raises ``ValueError`` unless both classes are present.
    """
    if rule == "eer":
        return eer_threshold(y_true, scores)
    y, fpr, tpr, thr = _roc_points(y_true, scores)
    if rule == "youden":
        k = int(np.argmax(tpr - fpr))
    elif rule == "accuracy":
        pos = int(y.sum())
        neg = y.size - pos
        k = int(np.argmax(tpr * pos + (1.0 - fpr) * neg))
    else:
        raise ValueError(f"unknown threshold rule {rule!r}; use 'youden', 'eer' or 'accuracy'")
    return _between(thr, k)


def group_of(filename: str | PurePath) -> str:
    """Group of a file from its name: the prefix before ``__`` (``"Deepfakes__1_2.mp4"`` ->
    ``"Deepfakes"``), or ``""`` when the name has none."""
    name = PurePath(filename).name
    prefix, sep, _ = name.partition("__")
    return prefix if sep else ""
