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
import queue
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mesonet.aggregate import AGGREGATIONS, decision_threshold, flagged_segments
from mesonet.budget import AnalysisClock, AnalysisLimits
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
from mesonet.models.calibration import default_bands, verdict_for
from mesonet.results import FaceResult, MediaResult
from mesonet.scoring import create_model_scorer
from mesonet.video import (
    TRACK_SHARE,
    TRACK_SIZE,
    check_rules,
    choose_decisive,
    link_tracks,
    plausible_faces,
    summarise_tracks,
)

log = logging.getLogger(__name__)

FACE_MODES = ("detect", "none")
CROP_SIZE = 256
PREFETCH_FRAMES = 8
"""Decoded video frames waiting for the detector (bounded: ~22 MB at 720p)."""


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
        track_share: a face track decides a video's score only when it covers at least this
            share of the analysed frames (the longest track when none does); shorter tracks
            are still reported. See :mod:`mesonet.video`.
        track_size: ... and only when its median face size is at least this fraction of the
            largest such track's (small faces in the background never decide).
        face_detector: a :class:`~mesonet.faces.FaceDetector`; default MTCNN built from
            ``min_face_size`` and ``face_confidence``.
        margin: crop side as a multiple of the face box (1.3, as the authors).
        batch_size: faces per forward pass.
        annotate_dir: if set, write annotated copies of every input there.
        backend: inference engine for the model (see :mod:`mesonet.backends`); ``"auto"``
            takes the fastest exact one installed.
        redetect_s: when video frames are analysed closer together than this (seconds),
            the face detector runs only on frames this far apart and the faces of the frames
            between are interpolated from the detections around them (matched by overlap);
            0 detects on every analysed frame.
        video_detect_side: video frames are shrunk so their longer side is at most this
            many pixels for face detection (the default MTCNN only; images use its own 640).
            Detection cost grows with the pixel count: 320 finds faces from 48 px up at
            720p and 72 px at 1080p (MesoNet's crops are 256 px). None: as images.
        trust_unverified: load a weights file whose card carries no sha256 (refused
            otherwise); every record then names the model ``"<name> (unverified)"``.
        limits: the largest video frame decoded, and the wall time and memory one file's
            analysis may take (:class:`~mesonet.budget.AnalysisLimits`; default 8.3 MP,
            300 s, 2 GB); over them, the file gets an error record.
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
        backend: str = "auto",
        redetect_s: float = 0.2,
        video_detect_side: int | None = 320,
        trust_unverified: bool = False,
        limits: AnalysisLimits | None = None,
        track_share: float = TRACK_SHARE,
        track_size: float = TRACK_SIZE,
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
        if not redetect_s >= 0:
            raise MesonetError(f"redetect_s must be 0 or more, not {redetect_s}")
        check_rules(track_share, track_size)
        self.track_share = float(track_share)
        self.track_size = float(track_size)
        if not isinstance(model, torch.nn.Module):
            model = load_model(model, trust_unverified=trust_unverified)
        self.model = model
        self.model.eval().to(memory_format=torch.channels_last)
        self.scorer = create_model_scorer(self.model, backend, batch_size)
        self.backend = self.scorer.name
        self.redetect_s = float(redetect_s)
        card = getattr(self.model, "card", None)
        self.model_name = card.name if card is not None else type(self.model).__name__
        if getattr(self.model, "unverified", False):
            self.model_name += " (unverified)"
        self.resize = getattr(card, "resize", "auto")
        self.threshold = float(
            threshold if threshold is not None else getattr(card, "threshold", 0.5)
        )
        if not 0.0 <= self.threshold <= 1.0:
            raise MesonetError(f"threshold must be between 0 and 1, not {self.threshold}")
        self.card_threshold = float(getattr(card, "threshold", 0.5))
        self.verdict_bands = getattr(card, "verdict_bands", None) or default_bands(
            self.card_threshold
        )
        self.faces = faces
        self.frames = frames
        self.fps = fps
        self.aggregate = aggregate
        self.margin = margin
        self.batch_size = batch_size
        self.annotate_dir = Path(annotate_dir) if annotate_dir is not None else None
        self.limits = limits if limits is not None else AnalysisLimits()
        self._annotated: dict[str, str] = {}  # annotated output names given -> their inputs
        self._face_detector = face_detector
        self._detector_options = {"min_face_size": min_face_size, "confidence": face_confidence}
        self.video_detect_side = video_detect_side
        self._video_face_detector = face_detector  # the caller's detector serves both

    # ------------------------------------------------------------------ building blocks

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
        if self._video_face_detector is None:
            if self.video_detect_side is None:
                self._video_face_detector = self.face_detector
            else:
                self._video_face_detector = create_detector(
                    "mtcnn", **self._detector_options, max_side=self.video_detect_side
                )
        return self._video_face_detector

    def score_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Fake probabilities of uint8 RGB 256 x 256 crops, in batches of ``batch_size``."""
        if len(crops) == 0:
            return np.zeros(0, dtype=np.float32)
        scores = self.scorer(np.stack(crops) if not isinstance(crops, np.ndarray) else crops)
        if not np.isfinite(scores).all():
            raise MesonetError(
                "the model gave a non-finite score (NaN or infinity): its weights are broken"
            )
        return scores

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

    def verdict(self, probability: float, rule: str | None = None) -> str:
        """``likely real``, ``uncertain`` or ``likely forged``: the card's verdict bands,
        moved with the decision threshold when it is not the card's."""
        cut = decision_threshold(rule, self.threshold) if rule else self.threshold
        return verdict_for(probability, cut, self.verdict_bands, self.card_threshold)

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
            result.verdict = self.verdict(probability)
            result.faces = sorted(faces, key=lambda f: -f.fake_probability)
        if self.annotate_dir is not None:
            from mesonet.annotate import write_annotated_image

            write_annotated_image(
                image, result, self.threshold, self.annotate_dir, names=self._annotated
            )
        return result

    def _load_image(self, path: Path) -> tuple[np.ndarray, tuple[int, int]]:
        """Decode one image (in a worker thread): its pixels and its (width, height).

        With ``faces='none'`` (and no annotation) the pixels are already the model's crop,
        so a batch waiting to be scored holds 196 KB per image, whatever the image size.
        """
        image = read_image(path)
        size = (image.shape[1], image.shape[0])
        if self._crop_on_load:
            image = crop_whole(image, CROP_SIZE, self.resize)
        return image, size

    @property
    def _crop_on_load(self) -> bool:
        # the whole image is the crop and nobody needs the full-size pixels afterwards
        return self.faces == "none" and self.annotate_dir is None

    def _predict_images(
        self, paths: Sequence[Path], loaded: Sequence[tuple | Exception] | None = None
    ) -> list[MediaResult]:
        """Several images at once: decoded in parallel threads, faces scored in one batch.

        ``loaded``: the images already decoded by :meth:`_load_image` (or the exception each
        raised), as :meth:`predict_items` prefetches them.
        """
        if loaded is None:
            if len(paths) == 1:
                return [self.predict(paths[0], "image")]
            with ThreadPoolExecutor(max_workers=min(len(paths), os.cpu_count() or 1)) as pool:
                loaded = list(pool.map(self._guarded(self._load_image), paths))
        readable = [
            (p, im[0], im[1])
            for p, im in zip(paths, loaded, strict=True)
            if not isinstance(im, Exception)
        ]
        try:
            if self._crop_on_load:
                frames = self._score_whole([(crop, size) for _, crop, size in readable])
            else:
                frames = self._score_frames([(0, 0.0, image) for _, image, _ in readable])
            done = {
                p: self._image_result(p, image, frame)
                for (p, image, _), frame in zip(readable, frames, strict=True)
            }
        except Exception:  # noqa: BLE001 - one odd image must not sink the batch: go one by one
            log.debug("batch failed, retrying one by one", exc_info=True)
            done = {p: self.predict(p, "image") for p, _, _ in readable}
        return [
            self._error(p, "image", im) if isinstance(im, Exception) else done[p]
            for p, im in zip(paths, loaded, strict=True)
        ]

    def _score_whole(self, crops: Sequence[tuple[np.ndarray, tuple[int, int]]]) -> list[FrameFaces]:
        """Score whole images already cut to the model's crop; boxes in source pixels."""
        scores = self.score_crops([crop for crop, _ in crops]).tolist()
        return [
            FrameFaces(0, 0.0, [Face((0.0, 0.0, float(w), float(h)), (), 1.0)], [score])
            for (_, (w, h)), score in zip(crops, scores, strict=True)
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

    def _predict_video(self, path: Path, clock: AnalysisClock | None = None) -> MediaResult:
        clock = clock or self.limits.start()
        info = probe_video(path, limits=self.limits, clock=clock)
        indices = sample_frame_indices(info, self.frames, self.fps)
        frames = _prefetch(
            iter_video_frames(path, indices, limits=self.limits, clock=clock), PREFETCH_FRAMES
        )
        try:
            analysed = self._analyse_frames(frames, indices[-1] if indices else -1, info.fps, clock)
        finally:
            frames.close()
        result = self._video_result(path, info, indices, analysed)
        if self.annotate_dir is not None:
            from mesonet.annotate import write_annotated_video

            write_annotated_video(
                path, result, self.threshold, self.annotate_dir, names=self._annotated
            )
        return result

    def _analyse_frames(
        self,
        frames: Iterator[Any],
        last_index: int,
        fps: float,
        clock: AnalysisClock | None = None,
    ) -> list[FrameFaces]:
        """Detect (or interpolate), crop and score decoded video frames, in order.

        The detector runs on a frame when ``redetect_s`` has passed since the last detection
        (counted in frames at ``fps``; always on the first and the last wanted frame); frames
        in between get faces interpolated
        from the detections on both sides. Crops are scored ``batch_size`` at a time, so only
        a few frames and one batch of crops are held at once.
        """
        analysed: list[FrameFaces] = []
        crops: list[np.ndarray] = []
        unscored: list[FrameFaces] = []  # frames whose crops wait in `crops`

        def add(frame: Any, faces: list[Face]) -> None:
            if self.faces == "none":
                h, w = frame.image.shape[:2]
                faces = [Face((0.0, 0.0, float(w), float(h)), (), 1.0)]
                crops.append(crop_whole(frame.image, CROP_SIZE, self.resize))
            else:
                crops.extend(align_face(frame.image, f, CROP_SIZE, self.margin) for f in faces)
            record = FrameFaces(frame.index, frame.time_s, faces)
            analysed.append(record)
            unscored.append(record)
            if len(crops) >= self.batch_size:
                flush()

        def flush() -> None:
            scores = iter(self.score_crops(crops).tolist())
            for record in unscored:
                record.scores = [next(scores) for _ in record.faces]
            crops.clear()
            unscored.clear()

        key: tuple[Any, list[Face]] | None = None  # the last frame the detector ran on
        between: list[Any] = []  # frames since then, waiting for the next detection
        for frame in frames:
            if clock is not None:
                clock.check()  # time spent detecting counts too, not only decoding
            due = (
                self.faces == "none"
                or key is None
                or frame.index >= last_index
                or (frame.index - key[0].index) / fps >= self.redetect_s - 1e-6
            )
            if not due:
                between.append(frame)
                continue
            faces = (
                []
                if self.faces == "none"
                else plausible_faces(
                    self.video_face_detector.detect([frame.image])[0], frame.image.shape
                )
            )
            for middle in between:
                weight = (middle.index - key[0].index) / max(frame.index - key[0].index, 1)
                add(middle, interpolate_faces(key[1], faces, weight))
            between = []
            add(frame, faces)
            key = (frame, faces)
        for middle in between:  # the stream ended before the last wanted frame
            add(middle, list(key[1]) if key is not None else [])
        if crops or unscored:
            flush()
        return analysed

    def _video_result(
        self, path: Path, info: VideoInfo, indices: list[int], analysed: list[FrameFaces]
    ) -> MediaResult:
        tracks = link_tracks([f.faces for f in analysed], [f.time_s for f in analysed])
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
            result.tracks = summarise_tracks(faces, len(analysed), self.aggregate, self.threshold)
            probability = choose_decisive(
                result.tracks, self.track_share, self.track_size
            ).fake_probability
            result.status = "ok"
            result.fake_probability = probability
            result.label = self._label(probability, self.aggregate)
            result.verdict = self.verdict(probability, self.aggregate)
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
        clock = self.limits.start()
        try:
            if kind == "image":
                image = read_image(path)
                clock.check()
                (frame,) = self._score_frames([(0, 0.0, image)])
                return self._image_result(path, image, frame)
            if kind == "video":
                return self._predict_video(path, clock)
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
        """Results for discovered inputs, in order; images are batched ``batch_size`` at a time.

        Image decoding runs in a thread pool one batch ahead of scoring, so the decoder and
        the model work at the same time; at most two batches are in memory.
        """
        workers = max(1, min(os.cpu_count() or 1, 8))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mesonet-decode")
        ahead: deque[tuple[list[Path], list[Future]]] = deque()
        load = self._guarded(self._load_image)

        def submit(paths: list[Path]) -> None:
            ahead.append((paths, [pool.submit(load, p) for p in paths]))

        def finish(keep: int) -> Iterator[MediaResult]:
            while len(ahead) > keep:
                paths, futures = ahead.popleft()
                yield from self._predict_images(paths, [f.result() for f in futures])

        try:
            images: list[Path] = []
            for item in items:
                if item.kind == "image":
                    images.append(item.path)
                    if len(images) >= self.batch_size:
                        submit(images)
                        images = []
                        yield from finish(keep=1)
                    continue
                if images:
                    submit(images)
                    images = []
                yield from finish(keep=0)
                yield self.predict(item.path, item.kind)
            if images:
                submit(images)
            yield from finish(keep=0)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def predict_many(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        recursive: bool = False,
        limits: Limits | None = None,
    ) -> Iterator[MediaResult]:
        """Results for every media file named by ``paths`` (files or folders), as they finish."""
        yield from self.predict_items(discover(paths, recursive=recursive, limits=limits))


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


_DONE = object()


def _prefetch(iterator: Iterator[Any], depth: int) -> Iterator[Any]:
    """Run ``iterator`` in a background thread, ``depth`` items ahead of the consumer.

    Video decoding (FFmpeg, GIL released) then overlaps face detection and scoring. An
    exception in the producer is re-raised in the consumer; closing the returned generator
    (or dropping it) stops the producer.
    """
    items: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            outcome: Any = _DONE
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            outcome = exc
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
        while not stop.is_set():
            try:
                items.put(outcome, timeout=0.1)
                return
            except queue.Full:
                continue

    thread = threading.Thread(target=produce, name="mesonet-video-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
