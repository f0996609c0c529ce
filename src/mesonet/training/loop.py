"""The training loop: data -> epochs of Adam steps -> validation -> checkpoints and the best model.

Files written to the output folder:

- ``last.pt``: model, optimizer, scheduler, epoch, RNG states, best metric and history, written
  atomically after every epoch; plain tensors and containers, so ``torch.load(...,
  weights_only=True)`` reads it and ``resume=True`` continues exactly where it stopped;
- ``best.safetensors``: the weights with the best validation AUC and a model card (training
  data, split, config, command, seed, epochs; validation metrics; a threshold chosen on val);
- ``log.jsonl`` (one row per epoch), ``curves.png`` and, at the end, ``summary.json``.

Randomness is re-seeded from ``(seed, epoch)`` at every epoch start (torch, numpy, random, the
sampler, the workers and albumentations), so an interrupted run resumed from ``last.pt``
gives the same weights as an uninterrupted one. Progress goes to a :class:`TrainReporter`;
nothing here prints.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import multiprocessing
import os
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, WeightedRandomSampler

from mesonet.evaluation import best_threshold, compute_metrics, plot_training_curves
from mesonet.models import ModelCard, create_model, load_model, save_model
from mesonet.models.meso4 import MesoNet
from mesonet.training.augment import build_augment
from mesonet.training.config import TrainConfig, from_mapping
from mesonet.training.data import (
    DataSplit,
    FaceDataset,
    collate_batch,
    extract_zip,
    find_dataset,
    subsample,
    to_model_input,
)
from mesonet.training.errors import TrainingError

CHECKPOINT = "last.pt"
BEST = "best.safetensors"
LOG = "log.jsonl"
CURVES = "curves.png"
SUMMARY = "summary.json"
CHECKPOINT_FORMAT = 1
MIN_AUC_GAIN = 1e-4  # smaller val AUC gains do not count as improvement


class TrainReporter:
    """Hooks the loop calls to show progress; this base class ignores them all."""

    def message(self, text: str) -> None:
        """A one-line note (data found, resuming, early stop...)."""

    def phase_start(self, name: str, total: int, epoch: int = 0) -> None:
        """A phase begins: ``decode`` (filling the cache), ``train`` or ``val`` of ``epoch``."""

    def phase_advance(self, images: int, loss: float | None = None) -> None:
        """``images`` more images done in the current phase; ``loss`` of the last batch."""

    def phase_end(self) -> None:
        """The current phase is over."""

    def epoch_end(self, row: dict[str, Any]) -> None:
        """An epoch finished; ``row`` is what ``log.jsonl`` gets."""


@dataclass
class TrainResult:
    """Where a run left its files and how it went."""

    out_dir: Path
    best_path: Path | None
    checkpoint_path: Path
    best_epoch: int
    best_metrics: dict[str, Any]
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------- checkpoints


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
    """Write ``payload`` with torch.save to a temporary file, then rename it over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A ``last.pt`` written by :func:`train`, read without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"no checkpoint to resume from: {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged or foreign file
        raise TrainingError(f"{path}: not a readable mesonet checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path}: not a mesonet training checkpoint")
    return ckpt


def checkpoint_config(out_dir: str | Path) -> TrainConfig:
    """The config a run in ``out_dir`` was started with (the base for ``--resume``)."""
    return from_mapping(load_checkpoint(Path(out_dir) / CHECKPOINT)["config"])


# --------------------------------------------------------------------------- helpers


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % 2**31


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _worker_init(worker_id: int) -> None:
    """Seed a DataLoader worker (and its augmentation) from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**31
    np.random.seed(seed)
    random.seed(seed)
    cv2.setNumThreads(1)
    info = torch.utils.data.get_worker_info()
    if info is not None and isinstance(info.dataset, FaceDataset):
        info.dataset.reseed(seed)


def _loader(
    dataset: FaceDataset,
    batch_size: int,
    workers: int,
    sampler: torch.utils.data.Sampler,
    seed: int,
) -> DataLoader:
    generator = torch.Generator().manual_seed(seed + 1)
    context = None
    if workers and "fork" in multiprocessing.get_all_start_methods():
        context = "fork"  # workers share the decoded-image cache instead of pickling it
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_batch,
        worker_init_fn=_worker_init if workers else None,
        generator=generator,
        multiprocessing_context=context,
        prefetch_factor=2 if workers else None,
    )


def _train_sampler(dataset: FaceDataset, balance: str, seed: int) -> torch.utils.data.Sampler:
    generator = torch.Generator().manual_seed(seed)
    if balance == "sampler":
        counts = np.bincount(dataset.labels.astype(np.int64), minlength=2)
        weights = 1.0 / counts[dataset.labels.astype(np.int64)]
        return WeightedRandomSampler(
            torch.from_numpy(weights), len(dataset), replacement=True, generator=generator
        )
    return RandomSampler(dataset, generator=generator)


def class_weights(labels: np.ndarray, balance: str) -> torch.Tensor:
    """Loss weight per class (real, fake): ``n / (2 n_class)`` for ``weight``, else ones."""
    counts = np.bincount(labels.astype(np.int64), minlength=2).astype(np.float64)
    if balance != "weight" or counts.min() == 0:
        return torch.ones(2)
    return torch.tensor(counts.sum() / (2.0 * counts), dtype=torch.float32)


def _loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, kind: str):
    """Weighted mean of BCE-with-logits, or of the squared error on probabilities (paper)."""
    logits = logits.float()
    if kind == "mse":
        per = (torch.sigmoid(logits) - labels) ** 2
    else:
        per = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (per * weights[labels.long()]).mean()


def _autocast(precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_model(model: MesoNet, reporter: TrainReporter) -> bool:
    """Run ``model.logits`` through ``torch.compile``; False (eager kept) where it cannot.

    The compiled function is an instance attribute, so weights, ``state_dict`` and
    checkpoints are those of the plain model. Inductor needs a C++ compiler on CPU: a probe
    compiles a one-line function first, and a machine without one trains in eager mode.
    """
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(4))
    except Exception as exc:  # noqa: BLE001 - any failure means: no compiler backend here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reporter.message(f"torch.compile is not available here ({reason[:200]}); eager mode")
        return False
    model.logits = torch.compile(model.logits)
    reporter.message("torch.compile: the first steps of training and validation compile (~30 s)")
    return True


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Use ``n`` torch threads (0 = every core) for the run, then restore the old setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n or os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _data_folder(data: Path, config: TrainConfig) -> Iterator[Path]:
    """``data`` itself, or a temporary folder holding the zip's safe extraction."""
    if data.is_file() and data.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory(prefix="mesonet-data-") as tmp:
            yield extract_zip(data, tmp, config.max_zip_bytes, config.max_zip_ratio)
    else:
        yield data


def initial_model(config: TrainConfig) -> MesoNet:
    """A fresh model of ``config.arch``, holding ``config.init``'s weights when given.

    ``init`` may be the authors' Keras ``.h5`` (converted to fake-probability output), a
    ``.safetensors`` file or a bundled model name.
    """
    model = create_model(config.arch)
    if not config.init:
        return model
    if config.init.lower().endswith(".h5"):
        from mesonet.keras_import import convert_keras_weights

        source = convert_keras_weights(config.init, arch=config.arch)
    else:
        source = load_model(config.init)
    if source.arch != config.arch:
        raise TrainingError(
            f"--init {config.init} holds {source.arch} weights but arch is {config.arch}"
        )
    model.load_state_dict(source.state_dict())
    return model


@torch.no_grad()
def predict(
    model: MesoNet,
    loader: DataLoader,
    precision: str = "fp32",
    reporter: TrainReporter | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, logits) of every batch of ``loader``, in eval mode."""
    model.eval()
    labels, logits = [], []
    for images, y in loader:
        with _autocast(precision):
            z = model.logits(to_model_input(images))
        labels.append(y.numpy())
        logits.append(z.float().numpy())
        if reporter is not None:
            reporter.phase_advance(len(y))
    return np.concatenate(labels), np.concatenate(logits)


def _val_loss(labels: np.ndarray, logits: np.ndarray, kind: str) -> float:
    y, z = torch.from_numpy(labels), torch.from_numpy(logits)
    return float(_loss(z, y, torch.ones(2), kind))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z.astype(np.float64)))


def _round(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) and math.isfinite(value) else value


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


def _card(
    config: TrainConfig,
    out_dir: Path,
    data: Path,
    split: DataSplit,
    command: str,
    metrics: dict[str, Any],
    epoch: int,
    throughput: float,
) -> ModelCard:
    init = config.init or "random initialisation"
    return ModelCard(
        name=config.name or f"{config.arch}.{out_dir.name}",
        arch=config.arch,
        description=(
            f"{config.arch} trained with `mesonet train` on {data.name}, "
            f"starting from {init}; best validation AUC at epoch {epoch}."
        ),
        threshold=float(metrics["threshold"]),
        training={
            "data": str(data),
            "split": split.describe(),
            "command": command,
            "config": config.to_dict(),
            "seed": config.seed,
            "epochs": epoch,
            "max_epochs": config.epochs,
            "init": config.init,
            "train_images_per_s": _round(throughput),
            "threshold_rule": config.threshold_rule,
        },
        metrics={"split": "val", **metrics, "command": command},
        source="mesonet train",
        license=inherited_license(config.init),
    )


AUTHORS_LICENSE = "Apache-2.0 (fine-tuned from the MesoNet authors' weights)"


@functools.lru_cache(maxsize=8)
def inherited_license(init: str) -> str:
    """The licence trained weights inherit from ``init``: the authors' .h5 files are
    Apache-2.0; a .safetensors or bundled model passes its card's licence on; none: ''."""
    if not init:
        return ""
    if init.lower().endswith(".h5"):
        return AUTHORS_LICENSE
    try:
        return load_model(init).card.license
    except Exception:  # noqa: BLE001 - training already loaded it; a card is not worth failing for
        return ""


# --------------------------------------------------------------------------- the loop


def train(
    data: str | Path,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    reporter: TrainReporter | None = None,
    command: str = "",
) -> TrainResult:
    """Train ``config.arch`` on ``data`` (folder or zip), writing checkpoints to ``out_dir``.

    With ``resume``, continue the run in ``out_dir`` from its ``last.pt`` (same epoch count,
    optimizer and scheduler state, history); otherwise ``out_dir`` must not hold a run yet.
    ``command`` is recorded in the model card. Returns where the files went and the best epoch.
    """
    config = config or TrainConfig()
    reporter = reporter or TrainReporter()
    data, out_dir = Path(data), Path(out_dir)
    ckpt_path = out_dir / CHECKPOINT
    ckpt: dict[str, Any] | None = None
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        if ckpt["config"]["arch"] != config.arch:
            raise TrainingError(
                f"{ckpt_path} holds a {ckpt['config']['arch']} run, not {config.arch}"
            )
    elif ckpt_path.exists():
        raise TrainingError(
            f"{out_dir} already holds a training run: pass --resume to continue it, "
            "or choose another --out"
        )
    if not data.exists():
        raise TrainingError(f"data not found: {data}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with _data_folder(data, config) as folder, _threads(config.threads):
        return _run(data, folder, out_dir, config, ckpt, reporter, command)


def _run(
    data: Path,
    folder: Path,
    out_dir: Path,
    config: TrainConfig,
    ckpt: dict[str, Any] | None,
    reporter: TrainReporter,
    command: str,
) -> TrainResult:
    split = find_dataset(folder, config.val_fraction, config.seed)
    split.train = subsample(split.train, config.max_train, config.seed)
    split.val = subsample(split.val, config.max_val, config.seed + 1)
    described = split.describe()
    reporter.message(
        f"data: {split.layout}; train {described['train']['total']} images "
        f"({described['train']['real']} real, {described['train']['fake']} fake), "
        f"validation {described['val']['total']}"
    )
    train_ds = FaceDataset(split.train, build_augment(config.augment), config.cache)
    val_ds = FaceDataset(split.val, None, config.cache)
    if config.cache:
        reporter.phase_start("decode", len(train_ds) + len(val_ds))
        threads = config.threads or os.cpu_count() or 1
        train_ds.preload(threads, reporter.phase_advance)
        val_ds.preload(threads, reporter.phase_advance)
        reporter.phase_end()

    _seed_everything(config.seed)  # the initial weights depend on the seed alone
    model = initial_model(config) if ckpt is None else create_model(config.arch)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="max",
        factor=config.lr_factor,
        patience=config.lr_patience,
        threshold=MIN_AUC_GAIN,
        threshold_mode="abs",
        min_lr=config.min_lr,
    )
    weights = class_weights(train_ds.labels, config.balance)
    val_workers = 0 if val_ds.fully_cached else config.workers
    val_loader = _loader(
        val_ds, config.batch_size, val_workers, SequentialSampler(val_ds), config.seed
    )

    start_epoch, step, best_auc, best_epoch, bad_epochs = 0, 0, -math.inf, 0, 0
    best_metrics: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        best_auc, best_epoch = float(ckpt["best_auc"]), int(ckpt["best_epoch"])
        bad_epochs, best_metrics = int(ckpt["bad_epochs"]), dict(ckpt["best_metrics"])
        history = list(ckpt["history"])
        _set_rng_state(ckpt["rng"])
        reporter.message(f"resuming after epoch {start_epoch} (best val AUC {best_auc:.4f})")
    elif config.init:
        reporter.phase_start("val", len(val_ds), 0)
        y, z = predict(model, val_loader, config.precision, reporter)
        reporter.phase_end()
        m = compute_metrics(y, _sigmoid(z))
        row = {
            "epoch": 0,
            "train_loss": None,
            "val_loss": _round(_val_loss(y, z, config.loss)),
            "val_auc": _round(m["auc"]),
            "val_acc": _round(m["accuracy"]),
            "lr": None,
            "note": f"initial weights {Path(config.init).name}",
        }
        history.append(row)
        reporter.epoch_end(row)
    _write_jsonl(out_dir / LOG, history)
    if config.compile:
        compile_model(model, reporter)

    stopped_early = bad_epochs >= config.patience > 0
    done = start_epoch
    throughput = 0.0
    for epoch in range(start_epoch + 1, config.epochs + 1):
        if stopped_early:
            break
        row, y, z, step, throughput = _epoch(
            model, optimizer, train_ds, val_loader, weights, config, epoch, step, reporter
        )
        scores = _sigmoid(z)
        auc = compute_metrics(y, scores)["auc"]
        auc = -math.inf if auc is None else auc
        scheduler.step(auc)
        row["best"] = auc > best_auc + MIN_AUC_GAIN
        if row["best"]:
            best_auc, best_epoch, bad_epochs = auc, epoch, 0
            threshold = best_threshold(y, scores, config.threshold_rule)
            best_metrics = compute_metrics(y, scores, threshold)
            best_metrics.pop("by_group", None)
            best_metrics = {k: _round(v) for k, v in best_metrics.items()}
            best_metrics["epoch"] = epoch
            card = _card(config, out_dir, data, split, command, best_metrics, epoch, throughput)
            save_model(model, out_dir / BEST, card)
        else:
            bad_epochs += 1
        history.append(row)
        done = epoch
        stopped_early = bad_epochs >= config.patience > 0
        save_checkpoint(
            out_dir / CHECKPOINT,
            {
                "format": CHECKPOINT_FORMAT,
                "epoch": epoch,
                "step": step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "best_auc": best_auc,
                "best_epoch": best_epoch,
                "bad_epochs": bad_epochs,
                "best_metrics": best_metrics,
                "history": history,
                "config": config.to_dict(),
                "rng": _rng_state(),
            },
        )
        _write_jsonl(out_dir / LOG, history)
        plot_training_curves(history, out_dir / CURVES, title=f"{config.arch} on {data.name}")
        reporter.epoch_end(row)
        if stopped_early:
            reporter.message(
                f"stopping early: no val AUC gain for {bad_epochs} epochs "
                f"(best {best_auc:.4f} at epoch {best_epoch})"
            )
    result = TrainResult(
        out_dir=out_dir,
        best_path=out_dir / BEST if (out_dir / BEST).exists() else None,
        checkpoint_path=out_dir / CHECKPOINT,
        best_epoch=best_epoch,
        best_metrics=best_metrics,
        epochs_run=done,
        stopped_early=stopped_early,
        history=history,
    )
    summary = {
        "best_epoch": best_epoch,
        "best_val_metrics": best_metrics,
        "epochs_run": result.epochs_run,
        "stopped_early": stopped_early,
        "best": str(result.best_path) if result.best_path else None,
        "config": config.to_dict(),
        "command": command,
    }
    (out_dir / SUMMARY).write_text(json.dumps(summary, indent=2))
    return result


def _epoch(
    model: MesoNet,
    optimizer: torch.optim.Optimizer,
    train_ds: FaceDataset,
    val_loader: DataLoader,
    weights: torch.Tensor,
    config: TrainConfig,
    epoch: int,
    step: int,
    reporter: TrainReporter,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray, int, float]:
    """One epoch of training then validation: (log row, val labels, val logits, step, img/s)."""
    started = time.perf_counter()
    seed = _epoch_seed(config.seed, epoch)
    _seed_everything(seed)
    train_ds.reseed(seed)
    loader = _loader(
        train_ds,
        config.batch_size,
        config.workers,
        _train_sampler(train_ds, config.balance, seed),
        seed,
    )
    lr = optimizer.param_groups[0]["lr"]
    model.train()
    total_loss, seen = 0.0, 0
    reporter.phase_start("train", len(train_ds), epoch)
    for images, labels in loader:
        x = to_model_input(images)
        with _autocast(config.precision):
            logits = model.logits(x)
        loss = _loss(logits, labels, weights, config.loss)
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

    reporter.phase_start("val", len(val_loader.dataset), epoch)
    y, z = predict(model, val_loader, config.precision, reporter)
    reporter.phase_end()
    m = compute_metrics(y, _sigmoid(z))
    row = {
        "epoch": epoch,
        "train_loss": _round(total_loss / max(seen, 1)),
        "val_loss": _round(_val_loss(y, z, config.loss)),
        "val_auc": _round(m["auc"]),
        "val_acc": _round(m["accuracy"]),
        "val_ap": _round(m["ap"]),
        "val_eer": _round(m["eer"]),
        "lr": lr,
        "step": step,
        "seconds": _round(time.perf_counter() - started),
        "images_per_s": _round(throughput),
    }
    return row, y, z, step, throughput
