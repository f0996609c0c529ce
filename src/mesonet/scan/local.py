"""The local engine: one process, one Detector, results written as they come."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mesonet.inputs import Input
from mesonet.pipeline import Detector
from mesonet.scan.analyse import analyse


def run_local(
    detector: Detector,
    items: Sequence[Input],
    emit: Callable[[list[dict[str, Any]]], None],
) -> None:
    """Analyse ``items`` in order, handing each record to ``emit`` (which writes and flushes)
    as soon as it is ready; images are still scored ``detector.batch_size`` at a time."""
    for result in analyse(detector, items):
        emit([result.to_dict()])
