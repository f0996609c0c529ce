"""Checkpoints and resume: ``last.pt`` (weights, optimizer, scheduler, RNG states, history).

``last.pt`` holds plain tensors and containers, so ``torch.load(..., weights_only=True)``
reads it and ``resume=True`` continues exactly where a run stopped. Randomness is re-seeded
from ``(seed, epoch)`` at every epoch start (:func:`epoch_seed`, :func:`seed_everything`).
"""

from __future__ import annotations

import math
import pickle
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mesonet.destinations import replacing
from mesonet.models.meso4 import MesoNet
from mesonet.training.config import TrainConfig, from_mapping
from mesonet.training.errors import TrainingError
from mesonet.training.sources import SourceSpec, source_from_mapping

CHECKPOINT = "last.pt"
CHECKPOINT_FORMAT = 1


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain containers (weights_only-loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": [version, list(internal), gauss_next],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` with torch.save to a temporary file, then rename it over ``path``
    (:func:`mesonet.destinations.replacing`)."""
    with replacing(path, "checkpoint") as handle:
        torch.save(payload, handle)


def read_checkpoint(path: str | Path) -> Any:
    """What ``torch.load`` reads from ``path`` without unpickling arbitrary objects; a missing,
    empty, damaged or foreign file is a one-line :class:`TrainingError`."""
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise TrainingError(f"{path} is not a file, so not a checkpoint to resume from")
        raise TrainingError(f"no checkpoint to resume from: {path} not found")
    if path.stat().st_size == 0:
        raise TrainingError(f"{path} is empty (0 bytes): not a mesonet checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged or foreign file
        raise TrainingError(f"{path}: {_load_error(exc)}") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A ``last.pt`` written by :func:`~mesonet.training.loop.train`, read without unpickling
    arbitrary objects."""
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path}: not a mesonet training checkpoint")
    missing = [key for key in _PAYLOAD_KEYS if key not in ckpt]
    if missing or not isinstance(ckpt["config"], dict):
        what = f"it has no {', '.join(missing)}" if missing else "its config is not a table"
        raise TrainingError(f"{path}: a damaged mesonet checkpoint ({what})")
    return ckpt


_PAYLOAD_KEYS = (
    *("epoch", "step", "model", "optimizer", "scheduler", "best_auc", "best_epoch"),
    *("bad_epochs", "best_metrics", "history", "config", "rng"),
)


def _load_error(exc: Exception) -> str:
    """Why ``torch.load`` refused a file, in one line, without torch's advice to load it with
    ``weights_only=False`` (which would run whatever code the file holds)."""
    if isinstance(exc, pickle.UnpicklingError):
        return (
            "it holds objects other than tensors and plain containers, which are never "
            "unpickled (that could run code): not a mesonet checkpoint"
        )
    first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().split("\n")[0]
    first = first.split(". ")[0].rstrip(".")
    if "weights_only" in first or not first:
        first = type(exc).__name__
    elif len(first) > 160:
        first = first[:157] + "..."
    return f"damaged, or not a PyTorch file ({first})"


def checkpoint_config(out_dir: str | Path) -> TrainConfig:
    """The config a run in ``out_dir`` was started with (the base for ``--resume``)."""
    return from_mapping(load_checkpoint(Path(out_dir) / CHECKPOINT)["config"])


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % 2**31


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# --------------------------------------------------------------------------- resume


def checkpoint_to_resume(
    out_dir: Path,
    config: TrainConfig,
    sources: Sequence[SourceSpec],
    resume: bool,
    force: bool = False,
) -> dict[str, Any] | None:
    """With ``resume``, the run's ``last.pt`` (same arch and sources as asked); without it,
    None, after checking that ``out_dir`` holds no run yet (``force``: one to replace)."""
    ckpt_path = out_dir / CHECKPOINT
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        if ckpt["config"]["arch"] != config.arch:
            raise TrainingError(
                f"{ckpt_path} holds a {ckpt['config']['arch']} run, not {config.arch}"
            )
        before = [source_from_mapping(s).label for s in ckpt.get("sources", [])]
        if before and before != [s.label for s in sources]:
            raise TrainingError(
                f"{ckpt_path} was trained on {', '.join(before)}; resume it with the same sources"
            )
        return ckpt
    if ckpt_path.exists() and not force:
        raise TrainingError(
            f"{out_dir} already holds a training run: pass --resume to continue it, "
            "--force to replace it, or choose another --out"
        )
    return None


@dataclass
class RunState:
    """Where a run stands after ``epoch``: what ``last.pt`` keeps besides the weights and the
    optimizer's and scheduler's states."""

    epoch: int = 0
    step: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def restore(
    ckpt: dict[str, Any],
    model: MesoNet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau,
) -> RunState:
    """Load ``ckpt``'s weights, optimizer, scheduler and RNG states; the run's state."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    state = RunState(
        epoch=int(ckpt["epoch"]),
        step=int(ckpt["step"]),
        best_score=float(ckpt["best_auc"]),
        best_epoch=int(ckpt["best_epoch"]),
        bad_epochs=int(ckpt["bad_epochs"]),
        best_metrics=dict(ckpt["best_metrics"]),
        history=list(ckpt["history"]),
    )
    _set_rng_state(ckpt["rng"])
    return state


def checkpoint_payload(
    state: RunState,
    model: MesoNet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau,
    config: TrainConfig,
    sources: Sequence[SourceSpec],
) -> dict[str, Any]:
    """What ``last.pt`` holds after ``state.epoch`` (the RNG states as they are now)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "epoch": state.epoch,
        "step": state.step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "best_auc": state.best_score,
        "best_epoch": state.best_epoch,
        "bad_epochs": state.bad_epochs,
        "best_metrics": state.best_metrics,
        "history": state.history,
        "config": config.to_dict(),
        "sources": [s.to_dict() for s in sources],
        "rng": _rng_state(),
    }
