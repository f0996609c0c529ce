"""The hooks through which the training loop reports progress (it prints nothing itself)."""

from __future__ import annotations

from typing import Any


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
