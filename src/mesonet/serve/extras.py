"""The page's optional extras: JPEG face crops for the gallery and the most suspicious frame.

Only sent with ``?include=crops``; the default API response is exactly the CLI record.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mesonet.media import iter_video_frames, read_image, resize_max_side
from mesonet.results import FaceResult, MediaResult

MAX_CROPS = 32
"""At most this many crops (the most suspicious faces) per response."""
CROP_SIDE = 128
FRAME_SIDE = 960
CROP_MARGIN = 1.2
JPEG_QUALITY = 85


def jpeg_base64(image: np.ndarray) -> str:
    """An RGB image as base64 JPEG text."""
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return base64.b64encode(data.tobytes()).decode("ascii")


def face_crop(image: np.ndarray, face: FaceResult, side: int = CROP_SIDE) -> np.ndarray:
    """A square crop around the face box (with a margin), resized to ``side`` pixels."""
    height, width = image.shape[:2]
    x, y, w, h = face.box
    half = max(w, h) * CROP_MARGIN / 2
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = max(int(cx - half), 0), max(int(cy - half), 0)
    x1, y1 = min(int(cx + half), width), min(int(cy + half), height)
    crop = image[y0:y1, x0:x1]
    if crop.size == 0:
        crop = image
    return cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)


def annotated_extra(path: Path, result: MediaResult, threshold: float) -> dict[str, Any]:
    """``{"threshold", "crops": [{"face", "jpeg"}], "frame": {...} | None}`` for ``result``.

    ``face`` indexes ``result.faces``; ``frame`` is the frame (the image itself for images)
    of the most suspicious face behind the score (for a video, on its decisive track),
    shrunk to at most ``FRAME_SIDE`` pixels, with its source ``width`` and ``height`` so the
    record's boxes can be drawn on it. Video frames are decoded one at a time and dropped
    once cropped.
    """
    extra: dict[str, Any] = {"threshold": threshold, "crops": [], "frame": None}
    faces = result.faces
    if not faces:
        return extra
    by_score = sorted(range(len(faces)), key=lambda i: -faces[i].fake_probability)
    chosen = sorted(by_score[:MAX_CROPS])
    deciding = {id(f) for f in result.deciding_faces()}
    top = next(i for i in by_score if id(faces[i]) in deciding)

    def frame_of(i: int) -> int:
        return faces[i].frame or 0

    wanted: dict[int, list[int]] = {}
    for i in chosen:
        wanted.setdefault(frame_of(i), []).append(i)
    wanted.setdefault(frame_of(top), [])
    if result.kind == "video":
        frames = ((f.index, f.image) for f in iter_video_frames(path, sorted(wanted)))
    else:
        frames = iter([(0, read_image(path))])
    crops: dict[int, str] = {}
    for index, image in frames:
        for i in wanted.get(index, []):
            crops[i] = jpeg_base64(face_crop(image, faces[i]))
        if index == frame_of(top):
            height, width = image.shape[:2]
            extra["frame"] = {
                "face": top,
                "frame": faces[top].frame,
                "time_s": faces[top].time_s,
                "width": width,
                "height": height,
                "jpeg": jpeg_base64(resize_max_side(image, FRAME_SIDE)),
            }
    extra["crops"] = [{"face": i, "jpeg": crops[i]} for i in chosen if i in crops]
    return extra
