"""The detectors the worker threads borrow: the served model's, built when the app starts,
and those of other bundled models a request picks, built on first use."""

from __future__ import annotations

import collections
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from mesonet.errors import MesonetError
from mesonet.serve.errors import ServiceError, public_text

MAX_OTHER_MODELS = 4
"""Models besides the served one kept loaded for requests that pick them."""


def detector_factories(
    model: Any, limits: Any = None, *, trust_unverified: bool = False
) -> tuple[Callable[[], Any], Callable[[str], Any]]:
    """The factories of the served model's detectors and of those a request picks (a
    bundled name, or names joined by +): both build through one function, so every detector
    gets the service's ``limits`` (an :class:`~mesonet.budget.AnalysisLimits`, or None for
    the defaults), whichever model it runs.

    ``model`` is what ``Detector`` accepts; it is loaded here, once, and shared by the
    served model's detectors.
    """
    from mesonet.models.graph import load_for_prediction
    from mesonet.pipeline import Detector

    def build(chosen: Any) -> Any:
        return Detector(chosen, limits=limits)

    named = model is None or isinstance(model, str | os.PathLike)
    served = load_for_prediction(model, trust_unverified=trust_unverified) if named else model
    return (lambda: build(served)), build


class DetectorPools:
    """One detector per worker slot for the served model and for each model a request picks."""

    def __init__(
        self,
        factory: Callable[[], Any],
        slots: int,
        model_factory: Callable[[str], Any] | None = None,
    ) -> None:
        self.slots = slots
        built = [factory() for _ in range(slots)]
        self.first = built[0]  # for the model's name, card and defaults
        # the engine each model's detectors run here (openvino-int8 is listed as such)
        self.backends = {getattr(self.first, "model_name", ""): getattr(self.first, "backend", "")}
        self.detectors: queue.Queue[Any] = queue.Queue()
        for detector in built:
            self.detectors.put(detector)
        # Other models a request picks: built on first use, one per slot, the least recently
        # used dropped beyond MAX_OTHER_MODELS.
        self.model_factory = model_factory
        self._pools: collections.OrderedDict[str, tuple[queue.Queue[Any], list[int]]] = (
            collections.OrderedDict()
        )
        self._pools_lock = threading.Lock()

    def checkout(self, model: str | None) -> tuple[Any, queue.Queue[Any]]:
        """A detector for ``model`` (None: the served one) and the pool to return it to."""
        if model is None or model == getattr(self.first, "model_name", None):
            return self.detectors.get(timeout=60), self.detectors
        if self.model_factory is None:
            raise ServiceError(422, "this server answers with its own model only")
        with self._pools_lock:
            pool, built = self._pools.setdefault(model, (queue.Queue(), [0]))
            self._pools.move_to_end(model)
            while len(self._pools) > MAX_OTHER_MODELS:
                self._pools.popitem(last=False)
            build = pool.empty() and built[0] < self.slots
            if build:
                built[0] += 1
        if build:
            try:
                detector = self.model_factory(model)
            except BaseException as exc:
                with self._pools_lock:
                    built[0] -= 1
                if isinstance(exc, MesonetError):  # a model refused: one line, no traceback
                    raise ServiceError(422, public_text(f"model {model!r}: {exc}")) from None
                raise
            self.backends[model] = getattr(detector, "backend", "")
            return detector, pool
        return pool.get(timeout=60), pool
