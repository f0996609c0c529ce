"""The web service: ``POST /api/v1/detect`` and a page to drop files on, over one Detector.

A thin shell, like the CLI: the record it returns is ``Detector.predict(...).to_dict()``.
Uploads stream to a temporary folder the app owns (removed again whatever happens);
inference runs in worker threads, at most ``max_in_flight`` at once, each with its own
:class:`~mesonet.pipeline.Detector` (the face detector is not thread-safe) sharing one model.
Requests over that wait up to ``queue_timeout_s`` and then get a 503.

:func:`create_app` wires the parts: the endpoints (:mod:`~mesonet.serve.routes`), the
state behind them (:mod:`~mesonet.serve.service`), the error responses
(:mod:`~mesonet.serve.errors`) and the security headers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from mesonet.budget import AnalysisLimits
from mesonet.serve.detectors import detector_factories
from mesonet.serve.errors import add_error_handlers
from mesonet.serve.routes import router, static_dir
from mesonet.serve.service import MAX_UPLOADS, Service
from mesonet.serve.upload import READ_IDLE_S, READ_TOTAL_S

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
            ``model``); default ``Detector(name, limits=limits)``, built as the served
            model's are (:func:`~mesonet.serve.detectors.detector_factories`), or none with a
            ``detector_factory``.
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
        detector_factory, build = detector_factories(
            model, limits, trust_unverified=trust_unverified
        )
        model_factory = model_factory or build

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
    add_error_handlers(app)
    app.add_middleware(SecurityHeaders)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    return app


def _version() -> str:
    from mesonet import __version__

    return __version__
