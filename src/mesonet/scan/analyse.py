"""The per-file work of a scan, shared by every engine: a Detector over a list of inputs."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesonet.inputs import Input
from mesonet.pipeline import Detector
from mesonet.results import MediaResult
from mesonet.scan.sources import with_kind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorSpec:
    """How to build a scan's :class:`Detector`: a model name or path and keyword options.

    Small and picklable: each worker receives the spec and builds its own Detector, loading
    the model once from its file or bundled name (no model object travels with the work).
    """

    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, model: str | os.PathLike[str] | None = None, **options: Any) -> DetectorSpec:
        """A spec whose model file, if ``model`` names one, is given by absolute path."""
        if model is not None and Path(model).is_file():
            model = os.path.abspath(os.fspath(model))
        return cls(None if model is None else os.fspath(model), dict(options))

    def build(self) -> Detector:
        """The Detector (loads the model)."""
        return Detector(self.model, **self.options)


def analyse(detector: Detector, items: Sequence[Input]) -> Iterator[MediaResult]:
    """One result per item, in order, images scored in batches; never raises.

    Items of unknown kind (from manifests) get their kind from the file here, in the
    worker. If the batched path fails unexpectedly, the remaining items are analysed one
    by one (each failure then becomes that file's error record).
    """
    done = 0
    try:
        for result in detector.predict_items(with_kind(item) for item in items):
            done += 1
            yield result
    except Exception:  # noqa: BLE001 - the job goes on; per-file errors become records
        log.warning("batched analysis failed; going on one file at a time", exc_info=True)
        for item in items[done:]:
            yield detector.predict(item.path, item.kind)
