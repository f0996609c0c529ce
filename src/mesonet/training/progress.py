"""A rich progress bar for the training loop (the CLI passes one drawing on stderr)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mesonet.training.reporter import TrainReporter


def training_progress(console: Console) -> Progress:
    """A Progress with the columns :class:`RichReporter` fills."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def format_row(row: dict[str, Any]) -> str:
    """One line per epoch: losses, val AUC/accuracy, learning rate and speed."""

    def num(key: str, fmt: str) -> str:
        value = row.get(key)
        return "-" if value is None else format(value, fmt)

    line = (
        f"epoch {row['epoch']}: train loss {num('train_loss', '.4f')}, "
        f"val loss {num('val_loss', '.4f')}, val AUC {num('val_auc', '.4f')}, "
        f"val acc {num('val_acc', '.4f')}"
    )
    sources = row.get("sources") or {}
    if len(sources) > 1:
        per = ", ".join(
            f"{name} {'-' if v.get('auc') is None else format(v['auc'], '.3f')}"
            for name, v in sources.items()
        )
        line += f"; AUC by source: {per} (min {num('val_auc_min', '.3f')})"
    if row.get("lr") is not None:
        line += f", lr {row['lr']:.0e}, {num('images_per_s', '.1f')} img/s, "
        line += f"{num('seconds', '.0f')} s"
    if row.get("best"):
        line += " (best)"
    if row.get("note"):
        line += f" ({row['note']})"
    return line


class RichReporter(TrainReporter):
    """Shows each phase as a bar and prints one line per epoch above it."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._task: Any = None
        self._started = 0.0
        self._done = 0
        self._loss = 0.0
        self._phase = ""

    def message(self, text: str) -> None:
        self.progress.console.print(text, highlight=False, soft_wrap=True)

    def phase_start(self, name: str, total: int, epoch: int = 0) -> None:
        label = {"decode": "decoding images", "train": f"epoch {epoch} train", "val": "validating"}
        self._phase, self._started, self._done, self._loss = name, time.perf_counter(), 0, 0.0
        self._task = self.progress.add_task(label.get(name, name), total=total, info="")

    def phase_advance(self, images: int, loss: float | None = None) -> None:
        if self._task is None:
            return
        self._done += images
        info = f"{self._done / max(time.perf_counter() - self._started, 1e-9):.0f} img/s"
        if loss is not None:
            self._loss = loss if self._loss == 0.0 else 0.9 * self._loss + 0.1 * loss
            info = f"loss {self._loss:.4f}, " + info
        self.progress.update(self._task, advance=images, info=info)

    def phase_end(self) -> None:
        if self._task is not None:
            self.progress.remove_task(self._task)
            self._task = None

    def epoch_end(self, row: dict[str, Any]) -> None:
        self.progress.console.print(format_row(row), highlight=False, soft_wrap=True)
