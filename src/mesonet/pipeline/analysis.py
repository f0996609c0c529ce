"""One file through the stages: read, find faces, score, build the record (and annotate).

An :class:`Analysis` is the stages wired under one set of settings. The
:class:`~mesonet.pipeline.Detector` makes one from its settings of the moment for each file
(or batch of images) it analyses, so a setting changed between calls (as the web service
does on a copy of its detector per request) applies to the next one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mesonet.budget import AnalysisClock, AnalysisLimits
from mesonet.faces import Face
from mesonet.pipeline.faces import FaceFinder, FrameFaces, whole_face
from mesonet.pipeline.read import ImageBatch, Loaded, load_image, open_video
from mesonet.pipeline.records import Records, error_record
from mesonet.pipeline.score import Scorer, score_all, score_stream
from mesonet.results import MediaResult

if TYPE_CHECKING:
    from mesonet.pipeline.detector import Detector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Analysis:
    """The stages wired under one set of settings: a file in, its record out.

    Args:
        finder: the faces of images; video_finder: the faces of video frames.
        scorer: the model's scorer (crops -> fake probabilities).
        records: builds the records (model name, threshold, video rules).
        batch_size: crops scored at once along a video.
        frames, fps, redetect_s, limits: which video frames are analysed, how often the
            detector runs on them, the budget of one file.
        crop_on_load: images are cut to the model's crop as they are decoded (the whole image
            is the face and no annotated copy needs the full-size pixels).
        annotate_dir: where annotated copies go (None: none); ``names``: the output names
            given so far (shared by every analysis of a detector, so none is overwritten).
        temporal: a video model and its rule (:mod:`mesonet.pipeline.temporal`), which then
            analyses every video; None: frame evidence only.
    """

    finder: FaceFinder
    video_finder: FaceFinder
    scorer: Scorer
    records: Records
    batch_size: int = 64
    frames: int = 32
    fps: float | None = None
    redetect_s: float = 0.2
    limits: AnalysisLimits = field(default_factory=AnalysisLimits)
    crop_on_load: bool = False
    annotate_dir: Path | None = None
    names: dict[str, str] = field(default_factory=dict)
    temporal: Any = None
    explainer: Any = None

    @classmethod
    def of(cls, detector: Detector) -> Analysis:
        """The stages under ``detector``'s settings now (its face detectors are built the
        first time a face is looked for)."""
        d = detector
        if d.faces == "none":
            detect = detect_video = None
        else:

            def detect(images: list[np.ndarray]) -> list[list[Face]]:
                return d.face_detector.detect(images)

            def detect_video(images: list[np.ndarray]) -> list[list[Face]]:
                return d.video_face_detector.detect(images)

        records = Records(
            model=d.model_name,
            threshold=d.threshold,
            card_threshold=d.card_threshold,
            bands=d.verdict_bands,
            detected=d.faces != "none",
            min_face=d.min_face_size if d.faces != "none" else None,
            aggregate=d.aggregate,
            track_share=d.track_share,
            track_size=d.track_size,
            min_face_px=d.judge_px,
            min_sharpness=d.judge_sharpness,
            image_rule=d.image_rule,
            backend=d.backend,
        )
        return cls(
            finder=FaceFinder(detect, d.margin, d.resize),
            video_finder=FaceFinder(detect_video, d.margin, d.resize),
            scorer=d.scorer,
            records=records,
            batch_size=d.batch_size,
            frames=d.frames,
            fps=d.fps,
            redetect_s=d.redetect_s,
            limits=d.limits,
            crop_on_load=d.faces == "none" and d.annotate_dir is None,
            annotate_dir=d.annotate_dir,
            names=d._annotated,
            temporal=d.temporal,
            explainer=explainer_of(d),
        )

    def load(self, path: Path) -> Loaded:
        """Decode one image for :meth:`images` (see :func:`~mesonet.pipeline.read.load_image`)."""
        return load_image(path, self.crop_on_load, self.finder.resize)

    def image(self, path: Path, image: np.ndarray) -> MediaResult:
        """The record of one decoded image."""
        (frame,) = score_all(self.finder.find([image]), self.scorer)
        return self._annotate(self.records.image(path, frame), image, [frame])

    def images(
        self, batch: ImageBatch, retry: Callable[[Path, str], MediaResult]
    ) -> list[MediaResult]:
        """The records of images decoded ahead by :meth:`load` (or the exception each
        raised), their faces scored in one batch; if the batch fails, each image is analysed
        again alone by ``retry(path, "image")``."""
        pairs = list(zip(batch.paths, batch.loaded, strict=True))
        readable = [(p, im[0], im[1]) for p, im in pairs if not isinstance(im, Exception)]
        try:
            if self.crop_on_load:  # boxes in source pixels
                found = [
                    (FrameFaces(0, 0.0, [whole_face(*size)]), [crop]) for _, crop, size in readable
                ]
            else:
                found = self.finder.find([image for _, image, _ in readable])
            frames = score_all(found, self.scorer)
            done = {
                p: self._annotate(self.records.image(p, frame), image, [frame])
                for (p, image, _), frame in zip(readable, frames, strict=True)
            }
        except Exception:  # noqa: BLE001 - one odd image must not sink the batch: go one by one
            log.debug("batch failed, retrying one by one", exc_info=True)
            done = {p: retry(p, "image") for p, _, _ in readable}
        return [
            error_record(p, "image", im, self.records.model, self.records.backend)
            if isinstance(im, Exception)
            else done[p]
            for p, im in pairs
        ]

    def video(self, path: Path, clock: AnalysisClock | None = None) -> MediaResult:
        """The record of one video: frames decoded ahead, faces found (or interpolated) and
        scored ``batch_size`` crops at a time, so only a few frames are held at once."""
        clock = clock or self.limits.start()
        if self.temporal is not None:
            return self.temporal.video(self, path, clock)
        info, indices, frames = open_video(path, self.frames, self.fps, self.limits, clock)
        try:
            last = indices[-1] if indices else -1
            found = self.video_finder.video(frames, last, info.fps, self.redetect_s, clock)
            analysed = score_stream(found, self.scorer, self.batch_size)
        finally:
            frames.close()
        return self._annotate(self.records.video(path, info, indices, analysed), path, analysed)

    def _annotate(self, result: MediaResult, source: Any, frames: Any = ()) -> MediaResult:
        """Explain ``frames``' faces, annotate ``source`` (pixels, a video's path), the maps
        drawn over the faces they explain: if asked."""
        shown = []
        if self.explainer is not None and frames:
            shown = self.explainer.attach(result, frames, source, self.finder, self.limits)
        if self.annotate_dir is not None:
            from mesonet import annotate

            threshold, out = self.records.threshold, self.annotate_dir
            if result.kind != "video":
                annotate.write_annotated_image(
                    source, result, threshold, out, names=self.names, evidence=shown
                )
            else:
                video_threshold = None
                if self.temporal is not None:  # the chart draws the video model's own
                    video_threshold = float(self.temporal.model.card.threshold)
                annotate.write_annotated_video(
                    source,
                    result,
                    threshold,
                    out,
                    names=self.names,
                    video_threshold=video_threshold,
                    evidence=shown,
                )
        return result


def explainer_of(detector: Detector) -> Any:
    """The detector's :class:`~mesonet.pipeline.explain.Explainer` (None unless its
    ``explain`` is a folder, or True for maps kept in the record)."""
    explain = getattr(detector, "explain", None)
    if explain is None or explain is False:
        return None
    from mesonet.pipeline.explain import Explainer

    return Explainer(
        detector.scorer.logits,
        None if explain is True else Path(explain),
        detector._annotated,
        detector.margin,
        detector.faces != "none",
    )
