"""Finding and aligning faces: detection on images, and on video frames detection every
``redetect_s`` with the faces of the frames between interpolated; every face cut into the
model's aligned crop.

>>> finder = FaceFinder(create_detector("mtcnn").detect)   # FaceFinder() takes whole images
>>> [(frame, crops)] = finder.find([image])                # FrameFaces, aligned crops
>>> for frame, crops in finder.video(frames, last_index, fps=25.0, redetect_s=0.2): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mesonet.budget import AnalysisClock
from mesonet.faces import (
    DEFAULT_MARGIN,
    Face,
    FaceDetector,
    align_face,
    assign_tracks,
    create_detector,
    crop_whole,
)
from mesonet.video import plausible_faces

FACE_MODES = ("detect", "none")
CROP_SIZE = 256


@dataclass
class FrameFaces:
    """The faces found on one analysed frame (or the image), with their scores; ``size``:
    an image's (width, height), which tells why it has no face."""

    index: int
    time_s: float
    faces: list[Face]
    scores: list[float] = field(default_factory=list)
    size: tuple[int, int] | None = None
    sharpness: list[float] = field(default_factory=list)  # per face (mesonet.judge)


Found = tuple[FrameFaces, list[np.ndarray]]
"""A frame's faces (not scored yet) and their crops, one per face."""


def whole_face(width: int, height: int) -> Face:
    """The whole image as the one face (``faces='none'``: the inputs are face crops)."""
    return Face(box=(0.0, 0.0, float(width), float(height)), landmarks=(), confidence=1.0)


@dataclass(frozen=True)
class FaceFinder:
    """Finds the faces of images or video frames and cuts their aligned crops.

    Args:
        detect: finds the faces of a list of RGB images (a
            :meth:`~mesonet.faces.FaceDetector.detect`); None: the whole image is the one
            face, resized to the crop (``faces='none'``).
        margin: crop side as a multiple of the face box.
        resize: the model card's resize mode for whole images (see
            :func:`~mesonet.faces.crop_whole`).
    """

    detect: Callable[[list[np.ndarray]], list[list[Face]]] | None = None
    margin: float = DEFAULT_MARGIN
    resize: str = "auto"

    def crops(self, image: np.ndarray, faces: Sequence[Face]) -> list[np.ndarray]:
        """The model's 256 px crops of ``faces`` on ``image`` (the whole image without a
        detector)."""
        if self.detect is None:
            return [crop_whole(image, CROP_SIZE, self.resize)]
        return [align_face(image, f, CROP_SIZE, self.margin) for f in faces]

    def find(self, images: Sequence[np.ndarray]) -> list[Found]:
        """Faces found on each image and their aligned crops."""
        if self.detect is None:
            detections = [[whole_face(im.shape[1], im.shape[0])] for im in images]
        else:
            detections = self.detect(list(images))
        return [
            (
                FrameFaces(0, 0.0, faces, size=(image.shape[1], image.shape[0])),
                self.crops(image, faces),
            )
            for image, faces in zip(images, detections, strict=True)
        ]

    def video(
        self,
        frames: Iterable[Any],
        last_index: int,
        fps: float,
        redetect_s: float,
        clock: AnalysisClock | None = None,
    ) -> Iterator[Found]:
        """Detect (or interpolate) and crop the faces of decoded video frames, in order.

        The detector runs on a frame when ``redetect_s`` has passed since the last detection
        (counted in frames at ``fps``; always on the first and the last wanted frame, whose
        index is ``last_index``); frames in between get faces interpolated from the
        detections on both sides (:func:`interpolate_faces`). Faces that cannot be faces
        are dropped (:func:`~mesonet.video.plausible_faces`). Only the frames since the last
        detection are held; ``clock`` is checked on every frame (time spent detecting
        counts too, not only decoding).
        """
        key: tuple[Any, list[Face]] | None = None  # the last frame the detector ran on
        between: list[Any] = []  # frames since then, waiting for the next detection
        for frame in frames:
            if clock is not None:
                clock.check()
            due = (
                self.detect is None
                or key is None
                or frame.index >= last_index
                or (frame.index - key[0].index) / fps >= redetect_s - 1e-6
            )
            if not due:
                between.append(frame)
                continue
            if self.detect is None:
                faces = [whole_face(frame.image.shape[1], frame.image.shape[0])]
            else:
                faces = plausible_faces(self.detect([frame.image])[0], frame.image.shape)
            for middle in between:
                weight = (middle.index - key[0].index) / max(frame.index - key[0].index, 1)
                yield self._found(middle, interpolate_faces(key[1], faces, weight))
            between = []
            yield self._found(frame, faces)
            key = (frame, faces)
        for middle in between:  # the stream ended before the last wanted frame
            yield self._found(middle, list(key[1]) if key is not None else [])

    def _found(self, frame: Any, faces: list[Face]) -> Found:
        return FrameFaces(frame.index, frame.time_s, faces), self.crops(frame.image, faces)


class FaceDetectors:
    """A :class:`~mesonet.pipeline.Detector`'s face detectors, built on first use from
    ``_detector_options`` (MTCNN's settings) and ``video_detect_side``, unless the caller
    gave one (``_face_detector``, ``_video_face_detector``)."""

    _face_detector: FaceDetector | None
    _video_face_detector: FaceDetector | None
    _detector_options: dict[str, Any]
    video_detect_side: int | None

    @property
    def min_face_size(self) -> int | None:
        """The smallest face (in source pixels) the face detector looks for; None when a
        caller's detector does not say."""
        if self._face_detector is None:
            return self._detector_options.get("min_face_size")
        return getattr(self._face_detector, "min_face_size", None)

    @property
    def face_detector(self) -> FaceDetector:
        """The face detector, built on first use (``faces='none'`` never needs one)."""
        if self._face_detector is None:
            self._face_detector = create_detector("mtcnn", **self._detector_options)
        return self._face_detector

    @property
    def video_face_detector(self) -> FaceDetector:
        """The detector for video frames: one given by the caller, else an MTCNN working on
        frames shrunk to ``video_detect_side``."""
        if self._video_face_detector is None and self.video_detect_side is None:
            self._video_face_detector = self.face_detector
        elif self._video_face_detector is None:
            options = {**self._detector_options, "max_side": self.video_detect_side}
            self._video_face_detector = create_detector("mtcnn", **options)
        return self._video_face_detector


def interpolate_faces(before: list[Face], after: list[Face], weight: float) -> list[Face]:
    """Faces on a frame between two detections, ``weight`` of the way from ``before``.

    Faces are matched across the two detections as tracks are (box overlap, then centre
    distance); a matched pair is interpolated linearly (box and landmarks; the lower
    confidence), an unmatched face is kept on the frames nearer its own detection.
    """
    if not before and not after:
        return []
    ids_before, ids_after = assign_tracks([before, after], max_gap=0)
    partner = {i: face for i, face in zip(ids_after, after, strict=True)}
    out = []
    for track, face in zip(ids_before, before, strict=True):
        other = partner.pop(track, None)
        if other is None:
            if weight < 0.5:
                out.append(face)
            continue
        box = tuple(a + (b - a) * weight for a, b in zip(face.box, other.box, strict=True))
        landmarks = face.landmarks
        if len(face.landmarks) == len(other.landmarks):
            landmarks = tuple(
                (ax + (bx - ax) * weight, ay + (by - ay) * weight)
                for (ax, ay), (bx, by) in zip(face.landmarks, other.landmarks, strict=True)
            )
        out.append(Face(box, landmarks, min(face.confidence, other.confidence)))
    if weight >= 0.5:
        out.extend(partner.values())
    out.sort(key=lambda face: face.confidence, reverse=True)
    return out
