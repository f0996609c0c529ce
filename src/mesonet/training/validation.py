"""Validation on every source after each epoch, and the choice of the best epoch.

The best epoch is the one with the highest selection score (:func:`selection_score`: the
minimum or mean of the per-source validation AUCs, or one source's AUC); its metrics, at a
threshold chosen on validation, go to the model card.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from mesonet.evaluation import best_threshold, compute_metrics
from mesonet.models.meso4 import MesoNet
from mesonet.training.batches import iter_batches, to_model_input
from mesonet.training.config import TrainConfig
from mesonet.training.reporter import TrainReporter
from mesonet.training.rundata import RunData
from mesonet.training.steps import autocast, batch_loss, rounded

MIN_AUC_GAIN = 1e-4  # smaller val AUC gains do not count as improvement


@torch.no_grad()
def predict(
    model: MesoNet,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    precision: str = "fp32",
    reporter: TrainReporter | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, logits) of every batch, in eval mode."""
    model.eval()
    labels, logits = [], []
    for images, y in batches:
        with autocast(precision):
            z = model.logits(to_model_input(images))
        labels.append(y.numpy())
        logits.append(z.float().numpy())
        if reporter is not None:
            reporter.phase_advance(len(y))
    return np.concatenate(labels), np.concatenate(logits)


def _val_loss(labels: np.ndarray, logits: np.ndarray, kind: str) -> float:
    y, z = torch.from_numpy(labels), torch.from_numpy(logits)
    return float(batch_loss(z, y, torch.ones(2), kind))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z.astype(np.float64)))


def selection_score(per_source: dict[str, dict[str, Any]], rule: str) -> float:
    """The number ``best`` is chosen by: the ``min`` or ``mean`` of the per-source validation
    AUCs, or one source's AUC (sources holding one class have no AUC and are skipped)."""
    if rule in per_source:
        auc = per_source[rule]["auc"]
        return -math.inf if auc is None else float(auc)
    aucs = [v["auc"] for v in per_source.values() if v["auc"] is not None]
    if not aucs:
        return -math.inf
    return float(min(aucs) if rule == "min" else np.mean(aucs))


def validate(
    model: MesoNet,
    data: RunData,
    config: TrainConfig,
    reporter: TrainReporter,
    epoch: int,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Validation on every source: (row fields, labels, probabilities)."""
    threads = 0 if data.val.fully_cached else config.workers
    batches = iter_batches(data.val, range(len(data.val)), config.batch_size, threads)
    reporter.phase_start("val", len(data.val), epoch)
    y, z = predict(model, batches, config.precision, reporter)
    reporter.phase_end()
    p = _sigmoid(z)
    pooled = compute_metrics(y, p)
    per_source = {}
    for i, name in enumerate(data.val_names):
        mask = data.val_ids == i
        m = compute_metrics(y[mask], p[mask])
        per_source[name] = {
            "auc": rounded(m["auc"]),
            "acc": rounded(m["accuracy"]),
            "n": int(mask.sum()),
        }
    aucs = [v["auc"] for v in per_source.values() if v["auc"] is not None]
    fields = {
        "val_loss": rounded(_val_loss(y, z, config.loss)),
        "val_auc": rounded(pooled["auc"]),
        "val_acc": rounded(pooled["accuracy"]),
        "val_ap": rounded(pooled["ap"]),
        "val_eer": rounded(pooled["eer"]),
        "sources": per_source,
        "val_auc_mean": rounded(float(np.mean(aucs))) if aucs else None,
        "val_auc_min": rounded(float(min(aucs))) if aucs else None,
        "score": rounded(selection_score(per_source, config.select)),
    }
    return fields, y, p


SELECT_TEXT = {
    "min": "the highest minimum of the per-source validation AUCs",
    "mean": "the highest mean of the per-source validation AUCs",
}


def select_text(rule: str) -> str:
    """The selection rule in words, for logs and model cards."""
    return SELECT_TEXT.get(rule, f"the highest validation AUC on {rule}")


def best_metrics(
    y: np.ndarray, p: np.ndarray, fields: dict[str, Any], config: TrainConfig, epoch: int
) -> dict[str, Any]:
    """The metrics of a new best ``epoch`` (``fields``: its validation row fields), at the
    threshold ``config.threshold_rule`` picks on validation; for the card and summary."""
    threshold = best_threshold(y, p, config.threshold_rule)
    metrics = compute_metrics(y, p, threshold)
    metrics.pop("by_group", None)
    metrics = {k: rounded(v) for k, v in metrics.items()}
    metrics.update(
        epoch=epoch,
        sources=fields["sources"],
        score=fields["score"],
        select=config.select,
        val_auc_mean=fields["val_auc_mean"],
        val_auc_min=fields["val_auc_min"],
    )
    return metrics
