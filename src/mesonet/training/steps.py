"""One epoch of Adam steps, and the pieces validation shares with it: the loss, the
precision (autocast) and the rounding of numbers for the logs."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mesonet.models.meso4 import MesoNet
from mesonet.training.batches import iter_batches, to_model_input
from mesonet.training.checkpoint import epoch_seed, seed_everything
from mesonet.training.config import TrainConfig
from mesonet.training.reporter import TrainReporter
from mesonet.training.rundata import RunData


def class_weights(labels: np.ndarray, balance: str) -> torch.Tensor:
    """Loss weight per class (real, fake): ``n / (2 n_class)`` for ``weight``, else ones."""
    counts = np.bincount(labels.astype(np.int64), minlength=2).astype(np.float64)
    if balance != "weight" or counts.min() == 0:
        return torch.ones(2)
    return torch.tensor(counts.sum() / (2.0 * counts), dtype=torch.float32)


def batch_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, kind: str):
    """Weighted mean of BCE-with-logits, or of the squared error on probabilities (paper)."""
    logits = logits.float()
    if kind == "mse":
        per = (torch.sigmoid(logits) - labels) ** 2
    else:
        per = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (per * weights[labels.long()]).mean()


def autocast(precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def rounded(value: Any) -> Any:
    """Floats rounded to 6 decimals for the logs (others, NaN and infinities as they are)."""
    return round(value, 6) if isinstance(value, float) and math.isfinite(value) else value


def step_lr(config: TrainConfig, step: int) -> float:
    """The paper's schedule: ``lr`` times ``lr_factor`` for every ``lr_step`` iterations done,
    never below ``min_lr``."""
    return max(config.lr * config.lr_factor ** (step // config.lr_step), config.min_lr)


def train_epoch(
    model: MesoNet,
    optimizer: torch.optim.Optimizer,
    data: RunData,
    config: TrainConfig,
    epoch: int,
    step: int,
    reporter: TrainReporter,
) -> tuple[dict[str, Any], int, float]:
    """One epoch of training: (log row, step, images per second)."""
    started = time.perf_counter()
    seed = epoch_seed(config.seed, epoch)
    seed_everything(seed)  # dropout; batches are seeded one by one in iter_batches
    indices = list(data.sampler(config, seed))
    drawn = np.array([data.train.label(i) for i in indices], dtype=np.float32)
    weights = class_weights(drawn, config.balance)
    model.train()
    total_loss, seen = 0.0, 0
    lr = optimizer.param_groups[-1]["lr"]  # the head's (the body's may be scaled down)
    reporter.phase_start("train", len(indices), epoch)
    for images, labels in iter_batches(
        data.train, indices, config.batch_size, config.workers, seed
    ):
        if config.schedule == "step":
            lr = step_lr(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
        x = to_model_input(images)
        with autocast(config.precision):
            logits = model.logits(x)
        loss = batch_loss(logits, labels, weights, config.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        value = loss.item()
        total_loss += value * len(labels)
        seen += len(labels)
        reporter.phase_advance(len(labels), value)
    reporter.phase_end()
    train_seconds = time.perf_counter() - started
    throughput = seen / train_seconds if train_seconds > 0 else 0.0
    row = {
        "epoch": epoch,
        "train_loss": rounded(total_loss / max(seen, 1)),
        "synthetic": int(np.sum(np.asarray(indices) >= len(data.train))),
        "lr": lr,
        "step": step,
        "seconds": train_seconds,
        "images_per_s": rounded(throughput),
    }
    return row, step, throughput
