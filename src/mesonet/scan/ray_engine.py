"""The Ray engine: the same per-file work as the local engine, as a Ray Data pipeline.

::

    list (driver)  ->  units of work  ->  analyse: actor pool, one Detector per actor
                       (from_items)       (read, find faces, score in batches)
                   ->  write (driver: append + flush per unit, as results stream back)

One machine or a cluster runs the same code: ``address=None`` starts Ray on this machine
(or joins ``$RAY_ADDRESS``), ``address="auto"`` or ``"HOST:6379"`` joins a running
cluster. Each actor builds its Detector from a :class:`DetectorSpec` (the model loaded
once per actor, by path or bundled name). Media paths are absolute and must be readable
at the same path on every node (a shared filesystem).

Reading, face detection and scoring of a file run in one actor process: crops never
travel between processes (196 KB each), videos stream through the Detector in bounded
memory, and the records are exactly the local engine's.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mesonet.errors import MesonetError
from mesonet.inputs import Input
from mesonet.scan.analyse import DetectorSpec, analyse
from mesonet.scan.ray_noise import quiet_auth_notice, without_notices

RAY_HINT = "the ray engine needs Ray: pip install 'mesonet[ray]'"
TASK_RETRIES = 3
"""Retries of a unit whose actor died (OOM, a decoder crash); then its files are reported
as lost and the rest of the scan goes on."""


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - ray[data] must be installed, not just ray
    except ImportError as exc:
        raise MesonetError(RAY_HINT) from exc
    return ray


class Analyser:
    """A Ray Data actor: builds its Detector once, then analyses one unit per call."""

    def __init__(self, spec: DetectorSpec) -> None:
        import cv2

        # OpenCV (decoding, face detection) would use every core of the node from each
        # actor; keep it to the actor's share (Ray sets OMP_NUM_THREADS to it), as torch
        # and the scoring backends do.
        cv2.setNumThreads(int(os.environ.get("OMP_NUM_THREADS") or 0))
        self.detector = spec.build()

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        records: list[str] = []
        for unit in batch.to_pylist():
            items = [
                Input(path=Path(os.fsdecode(p)), kind=k or None)
                for p, k in zip(unit["paths"], unit["kinds"], strict=True)
            ]
            records.extend(
                json.dumps(result.to_dict(), ensure_ascii=False)
                for result in analyse(self.detector, items)
            )
        return pa.table({"record": records})


def _analyse_stage(ray: Any, dataset: Any, spec: DetectorSpec, workers: int) -> Any:
    """``dataset`` of units mapped to records by a pool of :class:`Analyser` actors."""
    options: dict[str, Any] = {
        "fn_constructor_kwargs": {"spec": spec},
        "batch_size": 1,
        "batch_format": "pyarrow",
        "num_cpus": 1,
        # `workers` actors from the start; fewer if the cluster lacks the CPUs
        "compute": ray.data.ActorPoolStrategy(
            min_size=1,
            max_size=workers,
            initial_size=workers,
            max_tasks_in_flight_per_actor=2,  # one running, one waiting: fair shares
        ),
    }
    with warnings.catch_warnings():
        # A unit is retried a few times, not forever (Ray Data's default), when its actor
        # dies, so a file that crashes its decoder cannot stall the scan. Ray 2.60 offers
        # this only through its deprecated remote-args keywords; without them, the default.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return dataset.map_batches(Analyser, max_task_retries=TASK_RETRIES, **options)
        except TypeError:
            return dataset.map_batches(Analyser, **options)


@contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Ray, connected: joins ``address`` (or starts a local instance when None); a session
    already initialised by the caller is used as is and left running."""
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {"address": address, "logging_level": logging.WARNING}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        options["include_dashboard"] = False  # a private single-machine instance
    quiet_auth_notice()  # "token authentication is enabled": no news (see scan.ray_noise)
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise MesonetError(f"cannot join the Ray cluster at {address}: {exc}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def run_ray(
    spec: DetectorSpec,
    units: Sequence[list[Input]],
    emit: Callable[[list[dict[str, Any]]], None],
    *,
    address: str | None = None,
    workers: int | None = None,
) -> None:
    """Analyse ``units`` on a Ray cluster; each unit's records go to ``emit`` as it ends.

    ``workers``: analysing actors (1 CPU each); default one per CPU of the cluster. Units
    whose actor dies more than :data:`TASK_RETRIES` times are dropped (the caller sees
    their inputs without records) instead of failing the scan.
    """
    if not units:
        return
    with ray_session(address) as ray:
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        workers = min(workers, len(units))  # no idle actors on small scans
        rows = [
            # paths as bytes: a file name need not be valid Unicode
            {"paths": [os.fsencode(i.path) for i in unit], "kinds": [i.kind or "" for i in unit]}
            for unit in units
        ]
        context = ray.data.DataContext.get_current()
        saved = context.max_errored_blocks
        context.max_errored_blocks = -1  # a lost unit must not sink the scan
        try:
            with without_notices():  # Ray Data's actors' core_worker notice (scan.ray_noise)
                dataset = _analyse_stage(
                    ray, ray.data.from_items(rows, override_num_blocks=len(rows)), spec, workers
                )
                batches = iter(dataset.iter_batches(batch_size=None, batch_format="pyarrow"))
                while True:
                    try:
                        batch = next(batches)
                    except StopIteration:
                        break
                    except Exception as exc:  # noqa: BLE001 - Ray's own failure, told in one line
                        raise MesonetError(_stopped(exc)) from exc
                    emit([json.loads(text) for text in batch.column("record").to_pylist()])
        finally:
            context.max_errored_blocks = saved


def _stopped(exc: Exception) -> str:
    """One line on why Ray stopped the scan, and how to go on."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = f"{type(exc).__name__}: {lines[-1] if lines else 'no detail'}"
    return (
        f"the Ray scan stopped ({reason}); the records written so far are kept: "
        "rerun the same command to resume"
    )
