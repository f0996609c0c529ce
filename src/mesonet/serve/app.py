"""The web service: ``POST /api/v1/detect`` and a page to drop files on, over one Detector.

A thin shell, like the CLI: the record it returns is ``Detector.predict(...).to_dict()``.
Uploads stream to a temporary folder the app owns (removed again whatever happens);
inference runs in worker threads, at most ``max_in_flight`` at once, each with its own
:class:`~mesonet.pipeline.Detector` (the face detector is not thread-safe) sharing one model.
Requests over that wait up to ``queue_timeout_s`` and then get a 503.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import dataclasses
import logging
import math
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.staticfiles import StaticFiles

from mesonet.aggregate import AGGREGATIONS
from mesonet.budget import AnalysisLimits
from mesonet.media import media_kind
from mesonet.serve.extras import annotated_extra
from mesonet.serve.upload import (
    READ_IDLE_S,
    READ_TOTAL_S,
    Upload,
    UploadError,
    receive_upload,
)

log = logging.getLogger(__name__)

API = "/api/v1"
MAX_FRAMES = 300
"""Most frames a request may ask for (the CLI's default is 32)."""
INCLUDES = ("crops",)
MAX_UPLOADS = 32
"""Default: uploads received at once; more are answered 503 at once (each holds a
connection, a descriptor and a temporary file while it arrives)."""
SECURITY_HEADERS = {
    # the page loads only its own scripts, styles and fonts; pictures are its own or data: URLs
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
MAX_OTHER_MODELS = 4
"""Models besides the served one kept loaded for requests that pick them."""


class ErrorBody(BaseModel):
    """Every error response: one readable line."""

    detail: str


class ServiceError(Exception):
    """An error response with a status code and a readable message."""

    def __init__(self, status_code: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers


@dataclasses.dataclass
class Options:
    """Per-request overrides of the served detector's settings."""

    frames: int | None = None
    threshold: float | None = None
    aggregate: str | None = None
    track_share: float | None = None
    model: str | None = None  # a bundled model name, or bundled names joined by "+"


def parse_options(fields: dict[str, str]) -> Options:
    """Validate the optional form fields; raise a 422 ServiceError saying what is wrong."""
    options = Options()
    value = fields.get("frames", "").strip()
    if value:
        try:
            options.frames = int(value)
        except ValueError:
            options.frames = None
        if options.frames is None or not 1 <= options.frames <= MAX_FRAMES:
            raise ServiceError(
                422, f"frames must be a whole number from 1 to {MAX_FRAMES}, not {value!r}"
            )
    options.threshold = _fraction(fields, "threshold")
    value = fields.get("aggregate", "").strip()
    if value:
        if value not in AGGREGATIONS:
            raise ServiceError(
                422, f"aggregate must be one of {', '.join(AGGREGATIONS)}, not {value!r}"
            )
        options.aggregate = value
    options.track_share = _fraction(fields, "track_share")
    value = fields.get("model", "").strip()
    if value:
        options.model = check_model_name(value)
    return options


def _fraction(fields: dict[str, str], name: str) -> float | None:
    """The optional form field ``name`` as a number from 0 to 1 (None when absent)."""
    value = fields.get(name, "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise ServiceError(422, f"{name} must be a number from 0 to 1, not {value!r}")
    return number


def check_model_name(value: str) -> str:
    """A bundled model name, or an ensemble of bundled names (``a+b``): clients may not make
    the server load files by path. Raises a 422 ServiceError naming the bundled models."""
    from mesonet.models import bundled_models

    names = bundled_models()
    parts = [part.strip() for part in value.split("+")]
    if len(value) > 500 or len(parts) > 8 or not all(part in names for part in parts):
        raise ServiceError(
            422,
            f"model must be a bundled model ({', '.join(names) or 'none'}) or bundled names "
            f"joined by +, not {value[:100]!r}",
        )
    nested = [p for p in parts if names[p].suffix == ".json"] if len(parts) > 1 else []
    if nested:
        raise ServiceError(
            422,
            f"model {value[:100]!r}: {', '.join(nested)} is an ensemble and cannot be a "
            "member of another ensemble; name it alone",
        )
    return "+".join(parts)


def parse_include(include: str | None) -> set[str]:
    """``?include=crops`` (comma-separated) -> the set of extras asked for."""
    wanted = {part.strip() for part in (include or "").split(",") if part.strip()}
    unknown = wanted - set(INCLUDES)
    if unknown:
        raise ServiceError(
            422, f"include must be one of {', '.join(INCLUDES)}, not {', '.join(sorted(unknown))}"
        )
    return wanted


def _card_dict(model: Any) -> dict[str, Any] | None:
    card = getattr(model, "card", None)
    return dataclasses.asdict(card) if card is not None else None


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
        built = [factory() for _ in range(max_in_flight)]
        self.first = built[0]  # for the model's name, card and defaults
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
        detector = self.first
        return {
            "name": getattr(detector, "model_name", "unknown"),
            "card": _card_dict(getattr(detector, "model", None)),
            "threshold": getattr(detector, "threshold", None),
            "frames": getattr(detector, "frames", None),
            "aggregate": getattr(detector, "aggregate", None),
            "track_share": getattr(detector, "track_share", None),
            "track_size": getattr(detector, "track_size", None),
        }

    # ------------------------------------------------------------------ inference

    def _checkout(self, model: str | None) -> tuple[Any, queue.Queue[Any]]:
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
            build = pool.empty() and built[0] < self.max_in_flight
            if build:
                built[0] += 1
        if build:
            try:
                return self.model_factory(model), pool
            except BaseException:
                with self._pools_lock:
                    built[0] -= 1
                raise
        return pool.get(timeout=60), pool

    def _work(self, upload: Upload, kind: str, options: Options, crops: bool) -> dict[str, Any]:
        """Runs in a worker thread: predict, build the record (and extras), remove the file."""
        try:
            detector, pool = self._checkout(options.model)
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
            if result.error:
                result.error = result.error.replace(str(upload.path), upload.filename)
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


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every response (pure ASGI, so the
    upload's body still streams to the handler)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _static_dir() -> Path:
    return Path(str(resources.files("mesonet.serve") / "static"))


def create_app(
    model: str | os.PathLike[str] | Any | None = None,
    max_upload_mb: float = 200,
    max_in_flight: int = 2,
    queue_timeout_s: float = 60.0,
    *,
    detector_factory: Callable[[], Any] | None = None,
    model_factory: Callable[[str], Any] | None = None,
    tmp_dir: str | os.PathLike[str] | None = None,
    trust_unverified: bool = False,
    read_idle_s: float = READ_IDLE_S,
    read_total_s: float = READ_TOTAL_S,
    max_uploads: int = MAX_UPLOADS,
    limits: AnalysisLimits | None = None,
) -> FastAPI:
    """The FastAPI app serving ``model`` (a bundled name, a path, a loaded model or None).

    Args:
        model: what ``Detector(model)`` accepts; loaded once and shared by the workers.
        max_upload_mb: larger uploads get 413 (reading stops at the limit).
        max_in_flight: analyses running at once (one worker thread and detector each).
        queue_timeout_s: how long a request waits for a free worker before its 503.
        detector_factory: builds each worker's detector instead (tests use stubs).
        model_factory: builds a detector for a bundled model a request picks (form field
            ``model``); default ``Detector(name)``, or none with a ``detector_factory``.
        tmp_dir: where uploads are written while analysed; default a fresh folder,
            removed when the app shuts down.
        trust_unverified: serve weights whose card carries no sha256 (refused otherwise);
            every record then names the model ``"<name> (unverified)"``.
        read_idle_s: an upload that sends nothing for this long gets 408 (connection closed).
        read_total_s: an upload still arriving after this long gets 408.
        max_uploads: uploads received at once; more get 503 at once.
        limits: largest video frame, wall time and memory of one analysis (default
            :class:`~mesonet.budget.AnalysisLimits`); over them, the request gets 422.
    """
    if detector_factory is None:
        from mesonet.models import load_model
        from mesonet.pipeline import Detector

        loaded = (
            model
            if hasattr(model, "forward")
            else load_model(model, trust_unverified=trust_unverified)
        )

        def detector_factory() -> Any:
            return Detector(loaded, limits=limits)

        if model_factory is None:

            def model_factory(name: str) -> Any:
                return Detector(name)

    service = Service(
        detector_factory,
        max_upload_mb,
        max_in_flight,
        queue_timeout_s,
        Path(tmp_dir) if tmp_dir is not None else None,
        read_idle_s,
        read_total_s,
        max_uploads,
        model_factory,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        title="mesonet",
        summary="Deepfake detection for images and videos with MesoNet.",
        description=(
            "Upload an image or a video to `POST /api/v1/detect`; the response is the same "
            "record `mesonet predict --format json` prints (`fake_probability`: 1 = forged)."
        ),
        version=_version(),
        docs_url=None,  # FastAPI's pages load their scripts from a CDN: ours are local
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    _add_error_handlers(app)
    app.add_middleware(SecurityHeaders)
    errors = {
        code: {"model": ErrorBody, "description": text}
        for code, text in (
            (400, "Malformed multipart body."),
            (408, "The upload stalled or took too long (read timeouts)."),
            (413, "The file is over the upload limit."),
            (415, "Not an image or video (or not sent as multipart/form-data)."),
            (422, "Undecodable file (the record's error) or invalid form values."),
            (503, "All workers busy for longer than the queue timeout, or too many uploads."),
        )
    }

    @app.post(
        f"{API}/detect",
        summary="Detect forged faces in one image or video",
        responses=errors,
        openapi_extra={"requestBody": _DETECT_BODY},
    )
    async def detect(
        request: Request,
        include: str | None = Query(
            None, description="`crops`: add `annotated` (face crops, frame) for the page."
        ),
    ) -> JSONResponse:
        """The ``mesonet predict`` record of the uploaded file (``path`` = its name).

        Status ``ok`` and ``no_face`` answer 200; an undecodable file answers 422 with the
        record's error as ``detail``.
        """
        extras = parse_include(include)
        if service.receiving >= service.max_uploads:
            raise ServiceError(
                503,
                f"the server is receiving {service.max_uploads} uploads already: "
                "try again in a minute",
                headers={"Retry-After": "30", "Connection": "close"},
            )
        service.receiving += 1
        try:
            upload = await receive_upload(
                request,
                service.tmp_dir,
                service.max_bytes,
                idle_s=service.read_idle_s,
                total_s=service.read_total_s,
            )
        except UploadError as exc:
            # the rest of the body is not read: the connection cannot serve another request
            raise ServiceError(exc.status_code, exc.detail, {"Connection": "close"}) from None
        except ClientDisconnect:
            raise ServiceError(400, "the client disconnected during the upload") from None
        finally:
            service.receiving -= 1
        try:
            options = parse_options(upload.fields)
            kind = media_kind(upload.path)
            if kind is None:
                raise ServiceError(
                    415,
                    f"{upload.filename}: not an image or video mesonet can read "
                    "(JPEG, PNG, WebP, BMP, GIF, TIFF; MP4, MOV, WebM, MKV, AVI...)",
                )
        except BaseException:
            upload.path.unlink(missing_ok=True)
            raise
        record = await service.detect(upload, kind, options, "crops" in extras)
        if record["status"] == "error":
            raise ServiceError(422, f"{upload.filename}: {record['error']}")
        return JSONResponse(record)

    @app.get(f"{API}/models", summary="The served model and the bundled ones")
    def models() -> dict[str, Any]:
        """``serving``: the model answering requests (card and defaults); ``default``: the
        bundled default's name; ``bundled``: every bundled model's card (a request picks one
        with the form field ``model``)."""
        from mesonet.models import default_model_name, list_models

        return {
            "serving": service.model_info(),
            "default": default_model_name(),
            "bundled": [dataclasses.asdict(card) for card in list_models()],
        }

    @app.get("/healthz", summary="Liveness, the served model and the limits")
    def healthz() -> dict[str, Any]:
        """Always 200 while the server runs; the page reads the limits from here."""
        return {
            "status": "ok",
            "model": service.model_info()["name"],
            "max_upload_mb": service.max_upload_mb,
            "max_in_flight": service.max_in_flight,
            "in_flight": service.in_flight,
            "max_uploads": service.max_uploads,
            "receiving": service.receiving,
            "read_idle_s": service.read_idle_s,
            "read_total_s": service.read_total_s,
            "max_frames": MAX_FRAMES,
            "aggregations": list(AGGREGATIONS),
        }

    static = _static_dir()

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:  # for clients that ask before reading the page's <link>
        return FileResponse(static / "favicon.svg", media_type="image/svg+xml")

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(static / "docs.html")

    app.mount("/static", StaticFiles(directory=static), name="static")
    return app


_DETECT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "The image or video.",
                    },
                    "frames": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_FRAMES,
                        "description": "Frames sampled evenly from a video (default 32).",
                    },
                    "threshold": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": 1,
                        "description": "Fake when fake_probability >= threshold "
                        "(default: the model card's).",
                    },
                    "aggregate": {
                        "type": "string",
                        "enum": list(AGGREGATIONS),
                        "description": "Video score per face track (default mean).",
                    },
                    "track_share": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": 1,
                        "description": "A face track decides a video only when it covers at "
                        "least this share of the analysed frames (default 0.25; the longest "
                        "track when none does).",
                    },
                    "model": {
                        "type": "string",
                        "description": "A bundled model (GET /api/v1/models) or bundled "
                        "names joined by + (an ensemble); default: the served model.",
                    },
                },
            }
        }
    },
}


def _version() -> str:
    from mesonet import __version__

    return __version__


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is JSON ``{"detail": "one readable line"}``."""

    async def service_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"detail": detail}, exc.status_code, headers=exc.headers)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query"))
            parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error["msg"])
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, 422)

    async def server_error(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, 500)

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, server_error)
