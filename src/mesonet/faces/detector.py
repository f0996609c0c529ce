"""The face record and the detector interface every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["LANDMARK_NAMES", "Face", "FaceDetector"]

LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""Order of :attr:`Face.landmarks`. "Left" is the image's left (the subject's right)."""


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixel coordinates of the image it was found in.

    ``box`` is ``(x, y, w, h)``; ``landmarks`` holds the five points named in
    :data:`LANDMARK_NAMES` (may be empty for a detector without landmarks);
    ``confidence`` is the detector's score in [0, 1].
    """

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    confidence: float

    @property
    def center(self) -> tuple[float, float]:
        """Centre of the box."""
        x, y, w, h = self.box
        return (x + w / 2.0, y + h / 2.0)

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return max(self.box[2], 0.0) * max(self.box[3], 0.0)

    def scaled(self, factor: float) -> Face:
        """The same face with every coordinate multiplied by ``factor``.

        Use it to map faces found on a resized frame back to the source pixels.
        """
        x, y, w, h = self.box
        return Face(
            box=(x * factor, y * factor, w * factor, h * factor),
            landmarks=tuple((px * factor, py * factor) for px, py in self.landmarks),
            confidence=self.confidence,
        )


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces in a batch of RGB uint8 frames (H x W x 3), one list per frame."""

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Return the faces of each image, most confident first, in its own pixels."""
        ...
