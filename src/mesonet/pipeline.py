"""Detector: media file -> faces -> batched scores -> aggregated :class:`MediaResult`.

The CLI, the web service and the Python API all call this one class::

    from mesonet import Detector
    detector = Detector()                      # the bundled default model
    result = detector.predict("clip.mp4")      # MediaResult
    for result in detector.predict_many(["a.jpg", "folder/"]):  # streams, one per file
        print(result.path, result.label, result.fake_probability)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mesonet.aggregate import (
    AGGREGATIONS,
    decision_threshold,
    flagged_segments,
    track_scores,
)
from mesonet.errors import MesonetError
from mesonet.faces import (
    DEFAULT_MARGIN,
    Face,
    FaceDetector,
    align_face,
    assign_tracks,
    create_detector,
    crop_whole,
)
from mesonet.inputs import Input, Limits, discover
from mesonet.media import (
    MediaError,
    VideoInfo,
    iter_video_frames,
    media_kind,
    probe_video,
    read_image,
    sample_frame_indices,
)
from mesonet.models import MesoNet, load_model
from mesonet.results import FaceResult, MediaResult

log = logging.getLogger(__name__)

FACE_MODES = ("detect", "none")
CROP_SIZE = 256


@dataclass
class FrameFaces:
    """The faces found on one analysed frame (or the image), with their scores."""

    index: int
    time_s: float
    faces: list[Face]
    scores: list[float] = field(default_factory=list)


def to_batch(crops: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 RGB crops (N x 256 x 256 x 3) -> float32 N x 3 x 256 x 256 in [0, 1], channels-last."""
    array = np.stack(crops)
    batch = torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255.0)
    return batch.contiguous(memory_format=torch.channels_last)


class Detector:
    """Scores the faces in images and videos with a MesoNet model.

    Args:
        model: a bundled model name, a ``.safetensors`` path, a loaded model, or None for the
            bundled default.
        threshold: fake when ``fake_probability >= threshold``; default: the model card's.
        faces: ``"detect"`` (MTCNN, aligned crops) or ``"none"`` (the whole image is the
            crop, for datasets of face crops).
        frames: frames sampled evenly from each video (ignored when ``fps`` is given).
        fps: sample this many frames per second of video instead.
        aggregate: how frame scores become a track score (see :mod:`mesonet.aggregate`).
        face_detector: a :class:`~mesonet.faces.FaceDetector`; default MTCNN built from
            ``min_face_size`` and ``face_confidence``.
        margin: crop side as a multiple of the face box (1.3, as the authors).
        batch_size: faces per forward pass.
        annotate_dir: if set, write annotated copies of every input there.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | MesoNet | None = None,
        *,
        threshold: float | None = None,
        faces: str = "detect",
        frames: int = 32,
        fps: float | None = None,
        aggregate: str = "mean",
        face_detector: FaceDetector | None = None,
        min_face_size: int = 40,
        face_confidence: float = 0.9,
        margin: float = DEFAULT_MARGIN,
        batch_size: int = 64,
        annotate_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if faces not in FACE_MODES:
            raise MesonetError(f"faces must be one of {', '.join(FACE_MODES)}, not {faces!r}")
        if aggregate not in AGGREGATIONS:
            raise MesonetError(
                f"aggregate must be one of {', '.join(AGGREGATIONS)}, not {aggregate!r}"
            )
        if frames < 1:
            raise MesonetError(f"frames must be at least 1, not {frames}")
        if fps is not None and not fps > 0:
            raise MesonetError(f"fps must be positive, not {fps}")
        self.model = model if isinstance(model, torch.nn.Module) else load_model(model)
        self.model.eval().to(memory_format=torch.channels_last)
        card = getattr(self.model, "card", None)
        self.model_name = card.name if card is not None else type(self.model).__name__
        self.resize = getattr(card, "resize", "auto")
        self.threshold = float(
            threshold if threshold is not None else getattr(card, "threshold", 0.5)
        )
        if not 0.0 <= self.threshold <= 1.0:
            raise MesonetError(f"threshold must be between 0 and 1, not {self.threshold}")
        self.faces = faces
        self.frames = frames
        self.fps = fps
        self.aggregate = aggregate
        self.margin = margin
        self.batch_size = batch_size
        self.annotate_dir = Path(annotate_dir) if annotate_dir is not None else None
        self._face_detector = face_detector
        self._detector_options = {"min_face_size": min_face_size, "confidence": face_confidence}

    # ------------------------------------------------------------------ building blocks

    @property
    def face_detector(self) -> FaceDetector:
        """The face detector, built on first use (``faces='none'`` never needs one)."""
        if self._face_detector is None:
            self._face_detector = create_detector("mtcnn", **self._detector_options)
        return self._face_detector

    def score_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Fake probabilities of uint8 RGB 256 x 256 crops, in batches of ``batch_size``."""
        scores = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch_size):
                batch = to_batch(crops[start : start + self.batch_size])
                scores.append(self.model(batch).float().numpy())
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)

    def _faces_and_crops(
        self, images: Sequence[np.ndarray]
    ) -> list[tuple[list[Face], list[np.ndarray]]]:
        """Faces found on each image and their aligned crops."""
        if self.faces == "none":
            out = []
            for image in images:
                h, w = image.shape[:2]
                whole = Face(box=(0.0, 0.0, float(w), float(h)), landmarks=(), confidence=1.0)
                out.append(([whole], [crop_whole(image, CROP_SIZE, self.resize)]))
            return out
        detections = self.face_detector.detect(images)
        return [
            (faces, [align_face(image, f, CROP_SIZE, self.margin) for f in faces])
            for image, faces in zip(images, detections, strict=True)
        ]

    def _score_frames(self, frames: Sequence[tuple[int, float, np.ndarray]]) -> list[FrameFaces]:
        """Detect, crop and score a chunk of frames ``(index, time_s, image)``."""
        found = self._faces_and_crops([image for _, _, image in frames])
        crops = [crop for _, frame_crops in found for crop in frame_crops]
        scores = iter(self.score_crops(crops).tolist())
        return [
            FrameFaces(index, time_s, faces, [next(scores) for _ in faces])
            for (index, time_s, _), (faces, _) in zip(frames, found, strict=True)
        ]

    def _label(self, probability: float, rule: str | None = None) -> str:
        cut = decision_threshold(rule, self.threshold) if rule else self.threshold
        return "fake" if probability >= cut else "real"

    # ------------------------------------------------------------------ per kind

    def _image_result(self, path: Path, image: np.ndarray, frame: FrameFaces) -> MediaResult:
        faces = [
            FaceResult(
                box=[round(v, 1) for v in face.box],
                confidence=None if self.faces == "none" else round(face.confidence, 4),
                fake_probability=round(score, 6),
            )
            for face, score in zip(frame.faces, frame.scores, strict=True)
        ]
        result = MediaResult(path=str(path), kind="image", status="no_face", model=self.model_name)
        if faces:
            probability = max(f.fake_probability for f in faces)  # the most suspicious face
            result.status = "ok"
            result.fake_probability = probability
            result.label = self._label(probability)
            result.faces = sorted(faces, key=lambda f: -f.fake_probability)
        if self.annotate_dir is not None:
            from mesonet.annotate import write_annotated_image

            write_annotated_image(image, result, self.threshold, self.annotate_dir)
        return result

    def _predict_images(self, paths: Sequence[Path]) -> list[MediaResult]:
        """Several images at once: decoded in parallel threads, faces scored in one batch."""
        if len(paths) == 1:
            return [self.predict(paths[0], "image")]
        with ThreadPoolExecutor(max_workers=min(len(paths), os.cpu_count() or 1)) as pool:
            loaded = list(pool.map(self._guarded(read_image), paths))
        readable = [
            (p, im) for p, im in zip(paths, loaded, strict=True) if isinstance(im, np.ndarray)
        ]
        try:
            frames = self._score_frames([(0, 0.0, image) for _, image in readable])
            done = {
                p: self._image_result(p, image, frame)
                for (p, image), frame in zip(readable, frames, strict=True)
            }
        except Exception:  # noqa: BLE001 - one odd image must not sink the batch: go one by one
            log.debug("batch failed, retrying one by one", exc_info=True)
            done = {p: self.predict(p, "image") for p, _ in readable}
        return [
            done[p] if isinstance(im, np.ndarray) else self._error(p, "image", im)
            for p, im in zip(paths, loaded, strict=True)
        ]

    @staticmethod
    def _guarded(func):
        """``func`` returning its exception instead of raising it (for pool.map)."""

        def call(*args):
            try:
                return func(*args)
            except Exception as exc:  # noqa: BLE001 - turned into an error record by the caller
                return exc

        return call

    def _predict_video(self, path: Path) -> MediaResult:
        info = probe_video(path)
        indices = sample_frame_indices(info, self.frames, self.fps)
        analysed: list[FrameFaces] = []
        chunk: list[tuple[int, float, np.ndarray]] = []
        for frame in iter_video_frames(path, indices):
            chunk.append((frame.index, frame.time_s, frame.image))
            if len(chunk) == 8:  # bounded memory: a few frames at a time
                analysed.extend(self._score_frames(chunk))
                chunk = []
        if chunk:
            analysed.extend(self._score_frames(chunk))
        result = self._video_result(path, info, indices, analysed)
        if self.annotate_dir is not None:
            from mesonet.annotate import write_annotated_video

            write_annotated_video(path, result, self.threshold, self.annotate_dir)
        return result

    def _video_result(
        self, path: Path, info: VideoInfo, indices: list[int], analysed: list[FrameFaces]
    ) -> MediaResult:
        tracks = assign_tracks([f.faces for f in analysed])
        faces = [
            FaceResult(
                box=[round(v, 1) for v in face.box],
                confidence=None if self.faces == "none" else round(face.confidence, 4),
                fake_probability=round(score, 6),
                frame=frame.index,
                time_s=round(frame.time_s, 3),
                track=track,
            )
            for frame, frame_tracks in zip(analysed, tracks, strict=True)
            for face, score, track in zip(frame.faces, frame.scores, frame_tracks, strict=True)
        ]
        result = MediaResult(
            path=str(path),
            kind="video",
            status="no_face",
            model=self.model_name,
            faces=faces,
            frames_analyzed=len(analysed),
            duration_s=round(info.duration_s, 3),
            aggregation=self.aggregate,
        )
        if faces:
            per_track = track_scores(faces, self.aggregate, self.threshold)
            probability = max(per_track.values())  # the most suspicious track
            result.status = "ok"
            result.fake_probability = round(probability, 6)
            result.label = self._label(probability, self.aggregate)
            gap = info.duration_s / max(len(indices), 1)
            result.segments = [
                s
                for s in flagged_segments(faces, self.threshold, gap)
                if s.start_s < info.duration_s
            ]
            for segment in result.segments:
                segment.end_s = min(segment.end_s, round(info.duration_s, 3))
        return result

    # ------------------------------------------------------------------ public API

    def predict(self, path: str | os.PathLike[str], kind: str | None = None) -> MediaResult:
        """The verdict on one image or video; bad input gives ``status='error'``, never raises."""
        path = Path(path)
        kind = kind or media_kind(path)
        try:
            if kind == "image":
                image = read_image(path)
                (frame,) = self._score_frames([(0, 0.0, image)])
                return self._image_result(path, image, frame)
            if kind == "video":
                return self._predict_video(path)
            reason = "not an image or video mesonet can read"
            if not path.exists():
                reason = "file not found"
            elif path.is_dir():
                reason = "is a folder (pass it as an input to predict_many)"
            raise MediaError(reason)
        except Exception as exc:  # noqa: BLE001 - every failure becomes the file's error record
            return self._error(path, kind, exc)

    def _error(self, path: Path, kind: str | None, exc: Exception) -> MediaResult:
        """The error record for a file that failed with ``exc``."""
        if isinstance(exc, MesonetError | MediaError):
            message = str(exc)
        else:  # a decoder's own failure: keep the detail for debugging, one line for the user
            log.debug("unexpected failure on %s", path, exc_info=exc)
            message = f"could not process the file ({type(exc).__name__}: {exc})"
        return MediaResult(
            path=str(path),
            kind=kind if kind in ("image", "video") else None,
            status="error",
            model=self.model_name,
            error=" ".join(message.split()) or "unknown error",
        )

    def predict_items(self, items: Iterable[Input]) -> Iterator[MediaResult]:
        """Results for discovered inputs, in order; images are batched ``batch_size`` at a time."""
        images: list[Path] = []
        for item in items:
            if item.kind == "image":
                images.append(item.path)
                if len(images) >= self.batch_size:
                    yield from self._predict_images(images)
                    images = []
                continue
            if images:
                yield from self._predict_images(images)
                images = []
            yield self.predict(item.path, item.kind)
        if images:
            yield from self._predict_images(images)

    def predict_many(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        recursive: bool = False,
        limits: Limits | None = None,
    ) -> Iterator[MediaResult]:
        """Results for every media file named by ``paths`` (files or folders), as they finish."""
        yield from self.predict_items(discover(paths, recursive=recursive, limits=limits))
