"""Error responses of the web service: every one is JSON ``{"detail": "one readable line"}``."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


MAX_DETAIL_CHARS = 500
"""Longest error message a response carries (the rest is cut, with "...")."""
_SERVER_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s/'\"()\[\],:;]+/)+")
"""The folders of an absolute path (``/srv/x/`` in ``/srv/x/model.xml``)."""


def public_text(text: str, names: dict[str, str] | None = None) -> str:
    """``text`` fit for a response body: each key of ``names`` (the upload's path on the
    server) replaced by its value (the client's file name), every other absolute path cut to
    its file name (no server paths), on one line of at most :data:`MAX_DETAIL_CHARS`."""
    names = names or {}
    marks = [f"\x00{i}\x00" for i in range(len(names))]
    for mark, path in zip(marks, names, strict=True):
        text = text.replace(path, mark)
    text = " ".join(_SERVER_PATH.sub("", text).split())
    for mark, name in zip(marks, names.values(), strict=True):
        text = text.replace(mark, name)
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 3] + "..."


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


def add_error_handlers(app: FastAPI) -> None:
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
