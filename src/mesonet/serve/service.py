"""The state behind the web service: the worker threads and their detectors, the in-flight
limit, the upload folder (how a request flows through them: :mod:`mesonet.serve.app`)."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mesonet.serve.detectors import DetectorPools
from mesonet.serve.errors import ServiceError, public_text
from mesonet.serve.extras import annotated_extra
from mesonet.serve.options import Options
from mesonet.serve.upload import READ_IDLE_S, READ_TOTAL_S, Upload

log = logging.getLogger(__name__)

MAX_UPLOADS = 32
"""Default: uploads received at once; more are answered 503 at once (each holds a
connection, a descriptor and a temporary file while it arrives)."""


def _card_dict(model: Any) -> dict[str, Any] | None:
    """The served model's card for clients: an ensemble's members loaded from files are
    named by the file's name, not its path on the server (loaded cards hold absolute paths:
    see :func:`mesonet.models.load_model`)."""
    card = getattr(model, "card", None)
    if card is None:
        return None
    data = dataclasses.asdict(card)
    data["members"] = [
        {**m, "model": Path(m["model"]).name} if Path(str(m.get("model", ""))).is_absolute() else m
        for m in data.get("members", [])
    ]
    return data


class Service:
    """The state behind the app: detectors, the in-flight limit, the upload folder."""

    def __init__(
        self,
        factory: Callable[[], Any],
        max_upload_mb: float,
        max_in_flight: int,
        queue_timeout_s: float,
        tmp_dir: Path | None,
        read_idle_s: float = READ_IDLE_S,
        read_total_s: float = READ_TOTAL_S,
        max_uploads: int = MAX_UPLOADS,
        model_factory: Callable[[str], Any] | None = None,
    ) -> None:
        if not (read_idle_s > 0 and read_total_s > 0):
            raise ValueError("read_idle_s and read_total_s must be positive")
        if max_uploads < 1:
            raise ValueError(f"max_uploads must be at least 1, not {max_uploads}")
        self.read_idle_s = read_idle_s
        self.read_total_s = read_total_s
        self.max_uploads = max_uploads
        self.receiving = 0
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        if not max_upload_mb > 0:
            raise ValueError(f"max_upload_mb must be positive, not {max_upload_mb}")
        self.max_bytes = int(max_upload_mb * 1024 * 1024)
        self.max_upload_mb = max_upload_mb
        self.max_in_flight = max_in_flight
        self.queue_timeout_s = queue_timeout_s
        self.pools = DetectorPools(factory, max_in_flight, model_factory)
        self.own_tmp = tmp_dir is None
        self.tmp_dir = Path(tmp_dir or tempfile.mkdtemp(prefix="mesonet-uploads-"))
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.executor = ThreadPoolExecutor(max_in_flight, thread_name_prefix="mesonet-detect")
        self.in_flight = 0
        self._slots: asyncio.Semaphore | None = None

    @property
    def slots(self) -> asyncio.Semaphore:
        """The in-flight limit, made inside the running event loop on first use."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_in_flight)
        return self._slots

    def close(self) -> None:
        """Stop the worker threads and remove the upload folder if the app made it."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.own_tmp:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def model_info(self) -> dict[str, Any]:
        """The served model's card (or its name when it has none) and default settings."""
        detector = self.pools.first
        return {
            "name": getattr(detector, "model_name", "unknown"),
            "card": _card_dict(getattr(detector, "model", None)),
            "threshold": getattr(detector, "threshold", None),
            "backend": getattr(detector, "backend", None),  # openvino-int8: not exact scores
            "frames": getattr(detector, "frames", None),
            "aggregate": getattr(detector, "aggregate", None),
            "track_share": getattr(detector, "track_share", None),
            "track_size": getattr(detector, "track_size", None),
        }

    def int8_models(self, cards: list[Any]) -> list[str]:
        """The names of the bundled models (``cards``) a request is scored in int8 by: where
        this server has built the model's detectors, what they run; else what ``auto``
        would (:func:`~mesonet.models.graph.ships_int8`)."""
        from mesonet.models.graph import ships_int8

        built = self.pools.backends
        return [
            card.name
            for card in cards
            if (built[card.name] == "openvino-int8" if card.name in built else ships_int8(card))
        ]

    # ------------------------------------------------------------------ inference

    def _work(self, upload: Upload, kind: str, options: Options, crops: bool) -> dict[str, Any]:
        """Runs in a worker thread: predict, build the record (and extras), remove the file."""
        try:
            detector, pool = self.pools.checkout(options.model)
            try:
                if getattr(detector, "faces", None) == "detect":
                    _ = detector.face_detector  # build once per slot, shared by its copies
                worker = copy.copy(detector)
                for name, value in dataclasses.asdict(options).items():
                    if value is not None and name != "model":
                        setattr(worker, name, value)
                result = worker.predict(upload.path, kind)
                extra = None
                if crops and result.status != "error":
                    try:
                        extra = annotated_extra(upload.path, result, worker.threshold)
                    except Exception:  # noqa: BLE001 - the verdict stands without its pictures
                        log.warning("could not build the crops of %s", upload.filename)
                        extra = {"threshold": worker.threshold, "crops": [], "frame": None}
            finally:
                pool.put(detector)
            result.path = upload.filename
            if result.error:  # one line, the client's file name, no server path
                result.error = public_text(result.error, {str(upload.path): upload.filename})
            record = result.to_dict()
            if extra is not None:
                record["annotated"] = extra
            return record
        finally:
            upload.path.unlink(missing_ok=True)

    async def detect(self, upload: Upload, kind: str, options: Options, crops: bool) -> dict:
        """Wait for a free slot (503 after ``queue_timeout_s``), then predict in a thread.

        Once handed to the thread, the upload is the thread's to remove, and the slot is
        released when the thread ends, even if this request is cancelled meanwhile.
        """
        slots = self.slots
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await slots.acquire()
        except TimeoutError:
            upload.path.unlink(missing_ok=True)
            raise ServiceError(
                503,
                f"the server is busy ({self.max_in_flight} analyses running and more waiting): "
                "try again in a minute",
                headers={"Retry-After": "30"},
            ) from None
        except BaseException:
            upload.path.unlink(missing_ok=True)
            raise
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self.executor, self._work, upload, kind, options, crops)
        except BaseException:
            slots.release()
            upload.path.unlink(missing_ok=True)
            raise
        self.in_flight += 1

        def done(_: asyncio.Future) -> None:
            self.in_flight -= 1
            slots.release()

        future.add_done_callback(done)
        return await asyncio.shield(future)
