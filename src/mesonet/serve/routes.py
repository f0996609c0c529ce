"""The web service's endpoints: detection, the models and health, the page and its files.

Every handler finds the app's :class:`~mesonet.serve.service.Service` in ``app.state``.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.requests import ClientDisconnect

from mesonet.aggregate import AGGREGATIONS
from mesonet.media import media_kind
from mesonet.serve.errors import ErrorBody, ServiceError
from mesonet.serve.options import MAX_FRAMES, parse_include, parse_options
from mesonet.serve.service import Service
from mesonet.serve.upload import UploadError, receive_upload

API = "/api/v1"

router = APIRouter()


def _service(request: Request) -> Service:
    return request.app.state.service


def static_dir() -> Path:
    """The page's files (served under ``/static``)."""
    return Path(str(resources.files("mesonet.serve") / "static"))


_ERRORS: dict[int | str, dict[str, Any]] = {
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
                    "video_model": {
                        "type": "string",
                        "description": "A bundled video model (GET /api/v1/models, "
                        "video_models): each face track with a window of consecutive frames "
                        "also gets a temporal_probability; default: none.",
                    },
                    "video_rule": {
                        "type": "string",
                        "enum": ["frames", "temporal", "mean"],
                        "description": "With video_model, how a track's frame and temporal "
                        "evidence combine (default mean).",
                    },
                    "explain": {
                        "type": "boolean",
                        "description": "true: each explained face (an image's most "
                        "suspicious 8, a video's deciding track's 3 most suspicious) gets "
                        "explain: its evidence map over its crop as a PNG data URL (at most "
                        "64 KB), peak_region, peak and peak_logit_drop (default false).",
                    },
                },
            }
        }
    },
}


# --------------------------------------------------------------------------- detection


@router.post(
    f"{API}/detect",
    summary="Detect forged faces in one image or video",
    responses=_ERRORS,
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
    service = _service(request)
    extras = parse_include(include)
    if service.receiving >= service.max_uploads:
        raise ServiceError(
            503,
            f"the server is receiving {service.max_uploads} uploads already: try again in a minute",
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


# --------------------------------------------------------------------------- models and health


@router.get(f"{API}/models", summary="The served model and the bundled ones")
def models(request: Request) -> dict[str, Any]:
    """``serving``: the model answering requests (card and defaults); ``default``: the
    bundled default's name; ``bundled``: every bundled model's card (a request picks one
    with the form field ``model``); ``video_models``: the bundled video models (form field
    ``video_model``); ``int8``: the bundled models a request picking them is scored in int8
    by (their cards record an AUC change within 0.005 on every dev set, and this server runs
    them so: never without a cache; their metrics are the fp32 ones)."""
    from mesonet.models import default_model_name, list_models
    from mesonet.pipeline.temporal import bundled_video_models

    cards = list_models()
    return {
        "serving": _service(request).model_info(),
        "default": default_model_name(),
        "bundled": [dataclasses.asdict(card) for card in cards],
        "video_models": bundled_video_models(),
        "int8": _service(request).int8_models(cards),
    }


@router.get("/healthz", summary="Liveness, the served model and the limits")
def healthz(request: Request) -> dict[str, Any]:
    """Always 200 while the server runs; the page reads the limits from here."""
    service = _service(request)
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


# --------------------------------------------------------------------------- the page


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(static_dir() / "index.html")


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:  # for clients that ask before reading the page's <link>
    return FileResponse(static_dir() / "favicon.svg", media_type="image/svg+xml")


@router.get("/docs", include_in_schema=False)
def docs() -> FileResponse:
    return FileResponse(static_dir() / "docs.html")
