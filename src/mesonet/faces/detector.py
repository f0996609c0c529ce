"""The face record and the detector interface every backend implements."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["LANDMARK_NAMES", "CachingDetector", "Face", "FaceDetector"]

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


class CachingDetector:
    """A :class:`FaceDetector` that remembers its answer for each image it has seen.

    Images are known by their content (a hash of their pixels), so the same video frames
    decoded again by another :class:`~mesonet.pipeline.Detector` are not searched twice: for
    scoring one set of videos with several models (``tools/ensemble_search.py``). The cache
    grows with every new image (a few hundred bytes each) and is never emptied.
    """

    def __init__(self, inner: FaceDetector) -> None:
        self.inner = inner
        self.cache: dict[bytes, list[Face]] = {}

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """The inner detector's faces, found once per distinct image."""
        keys = [_digest(image) for image in images]
        todo = {k: image for k, image in zip(keys, images, strict=True) if k not in self.cache}
        if todo:
            found = self.inner.detect(list(todo.values()))
            self.cache.update(zip(todo, found, strict=True))
        return [list(self.cache[k]) for k in keys]


def _digest(image: np.ndarray) -> bytes:
    digest = hashlib.blake2b(repr((image.shape, image.dtype.str)).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(image).data)
    return digest.digest()
