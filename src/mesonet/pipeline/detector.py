"""The Detector: its settings, its face detectors and the public API over the stages.

Settings are plain attributes, read each time a file (or a batch of images) is analysed:
:meth:`Analysis.of <mesonet.pipeline.analysis.Analysis.of>` wires the stages under them, so
a setting changed between calls (the web service overrides some on a copy per request)
applies to the next file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from mesonet.aggregate import AGGREGATIONS
from mesonet.budget import AnalysisLimits
from mesonet.errors import MesonetError
from mesonet.faces import DEFAULT_MARGIN, FaceDetector
from mesonet.inputs import Input, Limits, discover
from mesonet.judge import MIN_FACE_PX, MIN_SHARPNESS, check_judging
from mesonet.media import media_kind, read_image
from mesonet.models.graph import load_for_prediction
from mesonet.pipeline.analysis import Analysis
from mesonet.pipeline.faces import FACE_MODES, FaceDetectors
from mesonet.pipeline.read import ImageBatch, guarded, read_ahead, unreadable
from mesonet.pipeline.records import card_thresholds, error_record, model_label
from mesonet.pipeline.score import score_crops
from mesonet.pipeline.temporal import VIDEO_WINDOWS, VideoEvidence
from mesonet.results import MediaResult
from mesonet.scoring import create_model_scorer
from mesonet.video import TRACK_SHARE, TRACK_SIZE, check_rules


class Detector(FaceDetectors, VideoEvidence):
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
        video_model, video_rule, video_windows: temporal evidence on videos, see
            :class:`~mesonet.pipeline.temporal.VideoEvidence` (default: none).
        judge_px, judge_sharpness: faces under this size (px, the larger side of the box)
            or sharpness (:func:`mesonet.judge.sharpness`) are reported but do not decide;
            a file with no face left is ``uncertain`` with a ``note`` (0 and 0: judge all).
        image_rule: how an image's judged faces make its score
            (:data:`~mesonet.pipeline.records.IMAGE_RULES`).
        explain: evidence maps (:mod:`mesonet.pipeline.explain`): a folder of PNGs, True: data URLs
    """

    def __init__(
        self,
        model: Any = None,
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
        video_model: Any = None,
        video_rule: str = "mean",
        video_windows: int = VIDEO_WINDOWS,
        explain: bool | str | os.PathLike[str] | None = None,
        judge_px: float = MIN_FACE_PX,
        judge_sharpness: float = MIN_SHARPNESS,
        image_rule: str = "weighted",
    ) -> None:
        check_settings(faces, aggregate, frames, fps, redetect_s, track_share, track_size)
        self.track_share, self.track_size = float(track_share), float(track_size)
        if model is None or isinstance(model, str | os.PathLike):  # its graphs, else weights
            model = load_for_prediction(model, backend, trust_unverified)
        self.set_video(model, video_model, video_rule, video_windows, trust_unverified)
        self.model = model.eval()
        if is_module(model):
            torch = sys.modules["torch"]
            self.model.to(memory_format=torch.channels_last)
        self.scorer = create_model_scorer(self.model, backend, batch_size)
        self.backend = self.scorer.name
        card = getattr(self.model, "card", None)
        self.model_name = model_label(self.model)
        self.resize = getattr(card, "resize", "auto")
        self.threshold, self.card_threshold, self.verdict_bands = card_thresholds(card, threshold)
        self.faces, self.frames, self.fps, self.aggregate = faces, frames, fps, aggregate
        self.margin, self.batch_size, self.redetect_s = margin, batch_size, float(redetect_s)
        self.annotate_dir = Path(annotate_dir) if annotate_dir is not None else None
        self.explain = explain if isinstance(explain, bool | None) else Path(explain)
        self.limits = limits if limits is not None else AnalysisLimits()
        self._annotated: dict[str, str] = {}  # annotated output names given -> their inputs
        self._detector_options = {"min_face_size": min_face_size, "confidence": face_confidence}
        self.video_detect_side = video_detect_side
        check_judging(judge_px, judge_sharpness, image_rule)
        self.judge_px, self.judge_sharpness = float(judge_px), float(judge_sharpness)
        self.image_rule = image_rule
        self._face_detector = self._video_face_detector = face_detector  # the caller's serves both

    def score_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Fake probabilities of uint8 RGB 256 x 256 crops, in batches of ``batch_size``."""
        return score_crops(self.scorer, crops)

    def verdict(self, probability: float, rule: str | None = None) -> str:
        """``likely real``, ``uncertain`` or ``likely forged``: the card's verdict bands,
        moved with the decision threshold when it is not the card's."""
        return Analysis.of(self).records.verdict(probability, rule)

    def predict(self, path: str | os.PathLike[str], kind: str | None = None) -> MediaResult:
        """The verdict on one image or video; bad input gives ``status='error'``, never raises.
        The record names the engine that scored it (``backend``)."""
        path = Path(path)
        kind = kind or media_kind(path)
        clock = self.limits.start()
        try:
            if kind == "image":
                image = read_image(path)
                clock.check()
                return Analysis.of(self).image(path, image)
            if kind == "video":
                return Analysis.of(self).video(path, clock)
            raise unreadable(path)
        except Exception as exc:  # noqa: BLE001 - every failure becomes the file's error record
            return error_record(path, kind, exc, self.model_name, self.backend)

    def predict_items(self, items: Iterable[Input]) -> Iterator[MediaResult]:
        """Results for discovered inputs, in order; images are batched ``batch_size`` at a time.

        Image decoding runs in a thread pool one batch ahead of scoring, so the decoder and
        the model work at the same time; at most two batches are in memory.
        """
        load = guarded(Analysis.of(self).load)
        with closing(read_ahead(items, self.batch_size, load)) as batches:
            for item in batches:
                if isinstance(item, ImageBatch):  # scored under the settings of now
                    yield from Analysis.of(self).images(item, retry=self.predict)
                else:
                    yield self.predict(item.path, item.kind)

    def predict_many(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        recursive: bool = False,
        limits: Limits | None = None,
    ) -> Iterator[MediaResult]:
        """Results for every media file named by ``paths`` (files or folders), as they finish."""
        yield from self.predict_items(discover(paths, recursive=recursive, limits=limits))


def check_settings(
    faces: str,
    aggregate: str,
    frames: int,
    fps: float | None,
    redetect_s: float,
    track_share: float,
    track_size: float,
) -> None:
    """Raise a one-line :class:`MesonetError` for the first setting out of its range."""
    if faces not in FACE_MODES:
        raise MesonetError(f"faces must be one of {', '.join(FACE_MODES)}, not {faces!r}")
    if aggregate not in AGGREGATIONS:
        raise MesonetError(f"aggregate must be one of {', '.join(AGGREGATIONS)}, not {aggregate!r}")
    if frames < 1:
        raise MesonetError(f"frames must be at least 1, not {frames}")
    if fps is not None and not fps > 0:
        raise MesonetError(f"fps must be positive, not {fps}")
    if not redetect_s >= 0:
        raise MesonetError(f"redetect_s must be 0 or more, not {redetect_s}")
    check_rules(track_share, track_size)


def is_module(model: Any) -> bool:
    """Whether ``model`` is a PyTorch module (only when PyTorch is loaded can it be one)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)
