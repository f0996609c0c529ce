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

The pieces live beside it: :mod:`~mesonet.training.rundata` (the data of a run),
:mod:`~mesonet.training.model_setup` (initial model, optimizer), :mod:`~mesonet.training.steps`
(one epoch of steps), :mod:`~mesonet.training.validation` (per-source validation, best
epoch), :mod:`~mesonet.training.checkpoint` (``last.pt``, RNG states) and
:mod:`~mesonet.training.card` (the model card); their public names are importable from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mesonet.destinations import check_output_dir, check_outputs_in, write_output
from mesonet.evaluation import plot_training_curves
from mesonet.models import create_model, save_model
from mesonet.models.meso4 import MesoNet
from mesonet.training.card import inherited_license, run_card
from mesonet.training.checkpoint import (
    CHECKPOINT,
    RunState,
    checkpoint_config,
    checkpoint_payload,
    checkpoint_to_resume,
    load_checkpoint,
    restore,
    save_checkpoint,
    seed_everything,
)
from mesonet.training.config import TrainConfig
from mesonet.training.errors import TrainingError
from mesonet.training.model_setup import compile_model, initial_model, optimizer_and_scheduler
from mesonet.training.reporter import TrainReporter
from mesonet.training.rundata import RunData, as_sources, data_folder, load_run_data
from mesonet.training.sources import SourceSpec, check_sources
from mesonet.training.steps import rounded, step_lr, train_epoch
from mesonet.training.validation import (
    MIN_AUC_GAIN,
    best_metrics,
    select_text,
    selection_score,
    validate,
)

BEST = "best.safetensors"
LOG = "log.jsonl"
CURVES = "curves.png"
SUMMARY = "summary.json"

__all__ = [  # other code imports these from here
    "TrainReporter",
    "TrainResult",
    "checkpoint_config",
    "inherited_license",
    "initial_model",
    "load_checkpoint",
    "selection_score",
    "step_lr",
    "train",
]


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


@dataclass
class _Run:
    """What every epoch of one run works with."""

    sources: Sequence[SourceSpec]
    out_dir: Path
    config: TrainConfig
    data: RunData
    model: MesoNet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    reporter: TrainReporter
    command: str

    @property
    def title(self) -> str:
        """The title of the training curves: the model and its training sources."""
        trained_on = ", ".join(s.label for s in self.sources if not s.holdout)
        return f"{self.config.arch} on {trained_on}"


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Use ``n`` torch threads (0 = every core) for the run, then restore the old setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n or os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_output(path, "".join(json.dumps(r) + "\n" for r in rows), "training log")


# --------------------------------------------------------------------------- the loop


def train(
    data: str | Path | SourceSpec | Sequence[str | Path | SourceSpec],
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    reporter: TrainReporter | None = None,
    command: str = "",
    force: bool = False,
) -> TrainResult:
    """Train ``config.arch`` on ``data``, writing checkpoints to ``out_dir``.

    ``data`` is a folder or zip, or several :class:`SourceSpec` (weights, held-out sources).
    With ``resume``, continue the run in ``out_dir`` from its ``last.pt`` (same epoch count,
    optimizer and scheduler state, history); otherwise ``out_dir`` must not hold a run or a
    model yet, unless ``force`` (its files are then replaced as the new run writes them).
    ``out_dir`` is checked before any data is read (:func:`check_run_folder`). ``command`` is
    recorded in the model card. Returns where the files went and the best epoch.
    """
    config = config or TrainConfig()
    config.validate()  # again: a config's fields may have been changed since it was made
    reporter = reporter or TrainReporter()
    sources = as_sources(data)
    check_sources(sources)
    out_dir = Path(out_dir)
    config.card_name(out_dir)
    inputs = [Path(s.path) for s in sources]
    if config.init and Path(config.init).exists():  # a file, not a bundled name
        inputs.append(Path(config.init))
    check_run_folder(out_dir, inputs, resume=resume, force=force)
    ckpt = checkpoint_to_resume(out_dir, config, sources, resume, force)
    for spec in sources:
        if not Path(spec.path).exists():
            raise TrainingError(f"data not found: {spec.path}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_threads(config.threads))
        folders = [stack.enter_context(data_folder(Path(s.path), config)) for s in sources]
        return _run(sources, folders, out_dir, config, ckpt, reporter, command)


def check_run_folder(
    out_dir: Path, inputs: Sequence[Path] = (), *, resume: bool = False, force: bool = False
) -> None:
    """Refuse (exit 2), before any data is read, a training folder that cannot take the run's
    files (see :func:`mesonet.destinations.check_output_dir`; missing parents are created as
    the run starts, as other trainers do), one of whose files is a link,
    a folder or a device, or that holds a model (``best.safetensors`` or ``summary.json``)
    while neither ``resume`` nor ``force`` is given."""
    check_output_dir(out_dir, "training folder", inputs=inputs, create=False, parents=True)
    check_outputs_in(out_dir, (CHECKPOINT, BEST, LOG, CURVES, SUMMARY), "training output")
    held = [name for name in (BEST, SUMMARY) if (out_dir / name).exists()]
    if held and not (resume or force):
        raise TrainingError(
            f"{out_dir} already holds a model ({', '.join(held)}): pass --force to replace "
            "it, --resume to continue its run, or choose another --out"
        )


def _run(
    sources: Sequence[SourceSpec],
    folders: Sequence[Path],
    out_dir: Path,
    config: TrainConfig,
    ckpt: dict[str, Any] | None,
    reporter: TrainReporter,
    command: str,
) -> TrainResult:
    """Load the data, build (or restore) the model, run the epochs left, write the summary."""
    data = load_run_data(sources, folders, config, reporter)
    reporter.message(f"best epoch: {select_text(config.select)}")

    seed_everything(config.seed)  # the initial weights depend on the seed alone
    if ckpt is None:
        model = initial_model(config)
    else:
        model = create_model(config.arch, config.input_size or None)
    model = model.to(memory_format=torch.channels_last)
    optimizer, scheduler = optimizer_and_scheduler(model, config)
    run = _Run(sources, out_dir, config, data, model, optimizer, scheduler, reporter, command)
    state = _start(run, ckpt)
    _write_jsonl(out_dir / LOG, state.history)
    if config.compile:
        compile_model(model, reporter)

    stopped_early = state.bad_epochs >= config.patience > 0
    for epoch in range(state.epoch + 1, config.epochs + 1):
        if stopped_early:
            break
        _run_epoch(run, state, epoch)
        stopped_early = state.bad_epochs >= config.patience > 0
        if stopped_early:
            reporter.message(
                f"stopping early: no gain in the selection score for {state.bad_epochs} epochs "
                f"(best {state.best_score:.4f} at epoch {state.best_epoch})"
            )
    return _finish(run, state, stopped_early)


def _start(run: _Run, ckpt: dict[str, Any] | None) -> RunState:
    """The state the run starts from: ``ckpt``'s when resuming; else a fresh one, holding an
    epoch-0 row with the validation of the initial weights when they are not random."""
    if ckpt is not None:
        state = restore(ckpt, run.model, run.optimizer, run.scheduler)
        run.reporter.message(
            f"resuming after epoch {state.epoch} (best score {state.best_score:.4f})"
        )
        return state
    state = RunState()
    if run.config.init:
        fields, _, _ = validate(run.model, run.data, run.config, run.reporter, 0)
        row = {
            "epoch": 0,
            "train_loss": None,
            **fields,
            "lr": None,
            "note": f"initial weights {Path(run.config.init).name}",
        }
        state.history.append(row)
        run.reporter.epoch_end(row)
    return state


def _run_epoch(run: _Run, state: RunState, epoch: int) -> None:
    """Train and validate ``epoch``; keep the weights if they are the best so far; write
    ``last.pt``, the log and the curves."""
    config, out_dir = run.config, run.out_dir
    epoch_started = time.perf_counter()
    row, state.step, throughput = train_epoch(
        run.model, run.optimizer, run.data, config, epoch, state.step, run.reporter
    )
    fields, y, p = validate(run.model, run.data, config, run.reporter, epoch)
    row.update(fields)
    row["seconds"] = rounded(time.perf_counter() - epoch_started)  # training and validation
    score = fields["score"]
    if config.schedule == "plateau":
        run.scheduler.step(score)
    row["best"] = score > state.best_score + MIN_AUC_GAIN
    if row["best"]:
        state.best_score, state.best_epoch, state.bad_epochs = score, epoch, 0
        metrics = state.best_metrics = best_metrics(y, p, fields, config, epoch)
        card = run_card(
            config, out_dir, run.sources, run.data, run.command, metrics, epoch, throughput
        )
        save_model(run.model, out_dir / BEST, card)
    else:
        state.bad_epochs += 1
    state.history.append(row)
    state.epoch = epoch
    save_checkpoint(
        out_dir / CHECKPOINT,
        checkpoint_payload(state, run.model, run.optimizer, run.scheduler, config, run.sources),
    )
    _write_jsonl(out_dir / LOG, state.history)
    plot_training_curves(state.history, out_dir / CURVES, title=run.title)
    run.reporter.epoch_end(row)


def _finish(run: _Run, state: RunState, stopped_early: bool) -> TrainResult:
    """The run's result, also written to ``summary.json``."""
    out_dir, config = run.out_dir, run.config
    result = TrainResult(
        out_dir=out_dir,
        best_path=out_dir / BEST if (out_dir / BEST).exists() else None,
        checkpoint_path=out_dir / CHECKPOINT,
        best_epoch=state.best_epoch,
        best_metrics=state.best_metrics,
        epochs_run=state.epoch,
        stopped_early=stopped_early,
        history=state.history,
    )
    summary = {
        "best_epoch": state.best_epoch,
        "best_val_metrics": state.best_metrics,
        "epochs_run": result.epochs_run,
        "stopped_early": stopped_early,
        "best": str(result.best_path) if result.best_path else None,
        "select_rule": select_text(config.select),
        "sources": [s.to_dict() for s in run.sources],
        "config": config.to_dict(),
        "command": run.command,
    }
    write_output(out_dir / SUMMARY, json.dumps(summary, indent=2), "training summary")
    return result
