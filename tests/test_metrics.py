"""Metrics agree with scikit-learn, EER on hand-computed cases, undefined values are None."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from mesonet.evaluation import (
    METRIC_KEYS,
    best_threshold,
    compute_metrics,
    eer,
    eer_threshold,
    group_of,
)


def _random(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0.0, 1.0)
    return y, s


def _walk(value: object) -> list[object]:
    """Every leaf value of nested dicts."""
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _walk(v)]
    return [value]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.62])
def test_agrees_with_sklearn(seed: int, threshold: float) -> None:
    y, s = _random(seed)
    m = compute_metrics(y, s, threshold=threshold)
    pred = (s >= threshold).astype(int)
    assert list(m) == list(METRIC_KEYS)
    assert m["n"] == len(y)
    assert m["auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["ap"] == pytest.approx(average_precision_score(y, s))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["recall"] == pytest.approx(recall_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert m["confusion"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    assert m["threshold"] == threshold
    assert m["by_group"] == {}
    assert 0.0 < m["eer"] < 0.5


def test_values_are_plain_json() -> None:
    y, s = _random(3, 50)
    m = compute_metrics(y, s, groups=["a", "b"] * 25)
    for leaf in _walk(m):
        assert leaf is None or type(leaf) in (int, float), type(leaf)
    json.dumps(m, allow_nan=False)


def test_label_is_fake_at_threshold() -> None:
    m = compute_metrics([0, 1], [0.5, 0.5], threshold=0.5)
    assert m["confusion"] == {"tn": 0, "fp": 1, "fn": 0, "tp": 1}


@pytest.mark.parametrize(
    ("y", "s", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 0.0),  # perfectly separable
        ([0, 0, 1, 1], [0.8, 0.9, 0.1, 0.2], 1.0),  # perfectly inverted
        ([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5], 0.5),  # no information: the diagonal
        ([0, 0, 0, 1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.7, 0.8, 0.9], 0.0),
        # Vertex: ROC passes through FPR = FNR = 1/4.
        ([0, 0, 0, 0, 1, 1, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.4, 0.8, 0.9, 0.95], 0.25),
        # Interpolated on a vertical ROC segment at FPR = 1/3 (FNR falls from 1/2 to 0).
        ([0, 0, 0, 1, 1], [0.1, 0.5, 0.6, 0.55, 0.9], 1 / 3),
        # Interpolated on a horizontal segment at TPR = 1/2 (FPR rises from 0 to 1).
        ([0, 1, 1], [0.3, 0.5, 0.2], 0.5),
    ],
)
def test_eer_hand_computed(y: list[int], s: list[float], expected: float) -> None:
    assert eer(y, s) == pytest.approx(expected)
    assert compute_metrics(y, s)["eer"] == pytest.approx(expected)


def test_eer_of_uninformative_scores_is_near_half() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 4000)
    assert eer(y, rng.random(4000)) == pytest.approx(0.5, abs=0.04)


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_is_none_not_crash(label: int) -> None:
    m = compute_metrics([label] * 5, [0.2, 0.4, 0.6, 0.8, 0.9])
    assert m["auc"] is None and m["ap"] is None  # ranking metrics need both classes
    assert m["eer"] is None
    assert m["n"] == 5
    assert m["accuracy"] == pytest.approx(0.6 if label else 0.4)
    if label == 0:
        assert m["recall"] is None
        assert m["precision"] == 0.0
    else:
        assert m["recall"] == pytest.approx(0.6)
    json.dumps(m, allow_nan=False)


def test_zero_division_is_none() -> None:
    m = compute_metrics([0, 0, 1], [0.1, 0.2, 0.3], threshold=0.9)  # nothing called fake
    assert m["precision"] is None
    assert m["recall"] == 0.0
    assert m["f1"] == 0.0


def test_empty_input() -> None:
    m = compute_metrics([], [], groups=[])
    assert m["n"] == 0
    assert m["confusion"] == {"tn": 0, "fp": 0, "fn": 0, "tp": 0}
    assert all(m[k] is None for k in ("auc", "ap", "eer", "accuracy", "precision", "recall", "f1"))


def test_by_group_splits() -> None:
    y, s = _random(4, 120)
    groups = np.array(["Deepfakes", "Face2Face", ""])[np.arange(120) % 3]
    m = compute_metrics(y, s, threshold=0.45, groups=list(groups))
    assert sorted(m["by_group"]) == ["", "Deepfakes", "Face2Face"]
    assert sum(g["n"] for g in m["by_group"].values()) == 120
    for name, gm in m["by_group"].items():
        mask = groups == name
        assert "by_group" not in gm
        alone = compute_metrics(y[mask], s[mask], threshold=0.45)
        del alone["by_group"]
        assert gm == alone
        assert gm["auc"] == pytest.approx(roc_auc_score(y[mask], s[mask]))
        assert gm["confusion"]["tp"] == int(((s[mask] >= 0.45) & (y[mask] == 1)).sum())
    total = {k: sum(g["confusion"][k] for g in m["by_group"].values()) for k in m["confusion"]}
    assert total == m["confusion"]


def test_by_group_single_class_group() -> None:
    m = compute_metrics([0, 1, 1], [0.2, 0.9, 0.7], groups=["real", "Deepfakes", "Deepfakes"])
    assert m["by_group"]["real"]["auc"] is None
    assert m["by_group"]["Deepfakes"]["recall"] == 1.0


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="length"):
        compute_metrics([0, 1], [0.5])
    with pytest.raises(ValueError, match="0 \\(real\\) and 1"):
        compute_metrics([0, 2], [0.5, 0.5])
    with pytest.raises(ValueError, match="finite"):
        compute_metrics([0, 1], [0.5, math.nan])
    with pytest.raises(ValueError, match="groups"):
        compute_metrics([0, 1], [0.5, 0.5], groups=["a"])


@pytest.mark.parametrize("rule", ["youden", "eer", "accuracy"])
def test_threshold_separates_separable_data(rule: str) -> None:
    y = [0, 0, 0, 1, 1]
    s = [0.05, 0.2, 0.3, 0.7, 0.95]
    t = best_threshold(y, s, rule=rule)
    assert 0.3 < t <= 0.7
    assert compute_metrics(y, s, threshold=t)["accuracy"] == 1.0


def test_best_threshold_accuracy_matches_brute_force() -> None:
    y, s = _random(5, 200)
    t = best_threshold(y, s, rule="accuracy")
    best = max(accuracy_score(y, s >= c) for c in np.unique(s))
    assert accuracy_score(y, s >= t) == pytest.approx(best)


def test_best_threshold_youden_matches_brute_force() -> None:
    y, s = _random(6, 200)

    def youden(c: float) -> float:
        return recall_score(y, s >= c) - float(((s >= c) & (y == 0)).sum()) / (y == 0).sum()

    t = best_threshold(y, s, rule="youden")
    assert youden(t) == pytest.approx(max(youden(c) for c in np.unique(s)))


def test_eer_threshold_balances_errors() -> None:
    y, s = _random(8, 400)
    t = eer_threshold(y, s)
    c = compute_metrics(y, s, threshold=t)["confusion"]
    fpr = c["fp"] / (c["fp"] + c["tn"])
    fnr = c["fn"] / (c["fn"] + c["tp"])
    assert abs(fpr - fnr) < 0.03
    assert best_threshold(y, s, rule="eer") == t


def test_threshold_errors() -> None:
    with pytest.raises(ValueError, match="both"):
        best_threshold([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="rule"):
        best_threshold([0, 1], [0.2, 0.3], rule="f1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("Deepfakes__183_253.mp4", "Deepfakes"),
        ("/data/fake/NeuralTextures__01__02.mp4", "NeuralTextures"),
        ("real/183.mp4", ""),
        ("dir__x/plain.jpg", ""),
        ("__odd.jpg", ""),
    ],
)
def test_group_of(name: str, group: str) -> None:
    assert group_of(name) == group
