"""Faces: detection (swappable backends), eye-levelled crops, tracking across frames."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mesonet.faces.align import DEFAULT_MARGIN, align_face, crop_whole, eye_angle
from mesonet.faces.detector import LANDMARK_NAMES, CachingDetector, Face, FaceDetector
from mesonet.faces.mtcnn import MTCNNDetector
from mesonet.faces.tracking import assign_tracks, box_iou

__all__ = [
    "DEFAULT_MARGIN",
    "CachingDetector",
    "DETECTORS",
    "LANDMARK_NAMES",
    "Face",
    "FaceDetector",
    "MTCNNDetector",
    "align_face",
    "assign_tracks",
    "box_iou",
    "create_detector",
    "crop_whole",
    "eye_angle",
]

DETECTORS: dict[str, Callable[..., FaceDetector]] = {"mtcnn": MTCNNDetector}
"""Detector backends by name; add one here to make it selectable."""


def create_detector(name: str = "mtcnn", **kwargs: Any) -> FaceDetector:
    """Build the face detector called ``name`` with backend-specific ``kwargs``."""
    try:
        factory = DETECTORS[name.lower()]
    except KeyError:
        known = ", ".join(sorted(DETECTORS))
        raise ValueError(f"unknown face detector {name!r} (known: {known})") from None
    return factory(**kwargs)
