"""Building the record of each file: the scored faces of an image, or a video's faces linked
into tracks, the decisive track's score (rules in :mod:`mesonet.video`) and its flagged
segments; labels and verdicts at the decision threshold; error records.

>>> records = Records("meso4.df", *card_thresholds(model.card))
>>> records.image(Path("face.jpg"), frame)          # MediaResult
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesonet.aggregate import decision_threshold, flagged_segments
from mesonet.errors import MesonetError
from mesonet.judge import (
    IMAGE_RULES,
    MIN_FACE_PX,
    MIN_SHARPNESS,
    face_px,
    file_reason,
    unjudged_reason,
)
from mesonet.media import MediaError, VideoInfo
from mesonet.models.calibration import default_bands, verdict_for
from mesonet.pipeline.faces import FrameFaces
from mesonet.results import FaceResult, MediaResult
from mesonet.video import TRACK_SHARE, TRACK_SIZE, choose_decisive, link_tracks, summarise_tracks

log = logging.getLogger(__name__)


def model_label(model: Any) -> str:
    """The name records give ``model``: its card's (its class's without a card), marked
    ``"(unverified)"`` when its weights were loaded without a checksum."""
    card = getattr(model, "card", None)
    name = card.name if card is not None else type(model).__name__
    if getattr(model, "unverified", False):
        name += " (unverified)"
    return name


def card_thresholds(
    card: Any, threshold: float | None = None
) -> tuple[float, float, Mapping[str, Any]]:
    """The decision threshold (``threshold``, else the card's, else 0.5), the card's own
    threshold and its verdict bands (default bands around it when it has none)."""
    chosen = float(threshold if threshold is not None else getattr(card, "threshold", 0.5))
    if not 0.0 <= chosen <= 1.0:
        raise MesonetError(f"threshold must be between 0 and 1, not {chosen}")
    card_threshold = float(getattr(card, "threshold", 0.5))
    bands = getattr(card, "verdict_bands", None) or default_bands(card_threshold)
    return chosen, card_threshold, bands


@dataclass(frozen=True)
class Records:
    """Builds the records of one model's results under one set of settings.

    Args:
        model: the model's name in the records.
        threshold: fake when ``fake_probability >= threshold``.
        card_threshold, bands: the card's threshold and the verdict bands measured around it.
        detected: the faces come from a detector (their confidence is reported; None when
            the whole image was the face).
        min_face: the smallest face the detector looks for (pixels), which tells why an
            image too small has none (None: not known).
        aggregate, track_share, track_size: the video rules (:mod:`mesonet.video`).
        min_face_px, min_sharpness: faces below either are reported but not judged
            (:mod:`mesonet.judge`); 0 judges every face.
        image_rule: how an image's judged faces make its score (:data:`IMAGE_RULES`).
        backend: the engine that scores (each record names it; None: not known).
    """

    model: str
    threshold: float
    card_threshold: float
    bands: Mapping[str, Any]
    detected: bool = True
    min_face: int | None = None
    aggregate: str = "mean"
    track_share: float = TRACK_SHARE
    track_size: float = TRACK_SIZE
    min_face_px: float = MIN_FACE_PX
    min_sharpness: float = MIN_SHARPNESS
    image_rule: str = "weighted"
    backend: str | None = None

    def label(self, probability: float, rule: str | None = None) -> str:
        """``fake`` or ``real`` at the threshold (a video rule's own cut with ``rule``)."""
        cut = decision_threshold(rule, self.threshold) if rule else self.threshold
        return "fake" if probability >= cut else "real"

    def verdict(self, probability: float, rule: str | None = None) -> str:
        """``likely real``, ``uncertain`` or ``likely forged``: the card's verdict bands,
        moved with the decision threshold when it is not the card's."""
        cut = decision_threshold(rule, self.threshold) if rule else self.threshold
        return verdict_for(probability, cut, self.bands, self.card_threshold)

    def no_face_reason(self, what: str, size: tuple[int, int] | None) -> str:
        """Why a record has no face: the image (or the video's frames) smaller than the
        smallest face the detector looks for, else none found."""
        if size is not None and self.min_face is not None and min(size) < self.min_face:
            return (
                f"{what} {size[0]}x{size[1]} px, smaller than the detector's minimum face "
                f"({self.min_face} px)"
            )
        return "no face found"

    def _face(self, face: Any, score: float, sharp: float | None, **video: Any) -> FaceResult:
        reason = unjudged_reason(face_px(face.box), sharp, self.min_face_px, self.min_sharpness)
        return FaceResult(
            box=[round(v, 1) for v in face.box],
            confidence=round(face.confidence, 4) if self.detected else None,
            fake_probability=round(score, 6),
            **video,
            sharpness=None if sharp is None else round(sharp, 4),
            judged=reason is None,
            not_judged=reason,
        )

    def _faces_of(
        self, found: FrameFaces, tracks: Sequence[int | None] | None = None, **video: Any
    ) -> list[FaceResult]:
        """The records of the faces ``found`` on a frame (a video's with their ``tracks``)."""
        n = len(found.faces)
        sharps = found.sharpness or [None] * n
        tracks = tracks if tracks is not None else [None] * n
        return [
            self._face(face, score, sharp, track=track, **video)
            for face, score, sharp, track in zip(
                found.faces, found.scores, sharps, tracks, strict=True
            )
        ]

    def image(self, path: Path, frame: FrameFaces) -> MediaResult:
        """An image's record: its judged faces decide by :attr:`image_rule`; with none
        judged, the verdict is ``uncertain`` and ``note`` says why."""
        faces = self._faces_of(frame)
        result = MediaResult(
            path=str(path), kind="image", status="no_face", model=self.model, backend=self.backend
        )
        result.error = None if faces else self.no_face_reason("image", frame.size)
        if faces:
            judged = [f for f in faces if f.judged]
            probability = image_score(judged or faces, self.image_rule)
            result.status = "ok"
            result.fake_probability = probability
            result.label = self.label(probability)
            result.verdict = self.verdict(probability)
            if not judged:
                unjudged(result, faces)
            result.faces = sorted(faces, key=lambda f: (not f.judged, -f.fake_probability))
        return result

    def video(
        self, path: Path, info: VideoInfo, indices: list[int], analysed: Sequence[FrameFaces]
    ) -> MediaResult:
        """A video's record from its analysed frames (sampled at ``indices``): faces linked
        into tracks, the decisive track's score, the flagged segments."""
        tracks = link_tracks([f.faces for f in analysed], [f.time_s for f in analysed])
        faces = [
            face
            for frame, frame_tracks in zip(analysed, tracks, strict=True)
            for face in self._faces_of(
                frame, frame_tracks, frame=frame.index, time_s=round(frame.time_s, 3)
            )
        ]
        result = MediaResult(
            path=str(path),
            kind="video",
            status="no_face",
            model=self.model,
            backend=self.backend,
            faces=faces,
            frames_analyzed=len(analysed),
            duration_s=round(info.duration_s, 3),
            aggregation=self.aggregate,
        )
        if not faces:
            result.error = self.no_face_reason("frames", (info.width, info.height))
        if faces:
            result.tracks = summarise_tracks(faces, len(analysed), self.aggregate, self.threshold)
            judged = judge_tracks(result.tracks, faces)
            decisive = choose_decisive(judged or result.tracks, self.track_share, self.track_size)
            judged_ids = {t.id for t in judged}
            for track in result.tracks:
                track.eligible = track.eligible and track.id in judged_ids
            probability = decisive.fake_probability
            result.status = "ok"
            result.fake_probability = probability
            result.label = self.label(probability, self.aggregate)
            result.verdict = self.verdict(probability, self.aggregate)
            if not judged:
                unjudged(result, faces)
            gap = info.duration_s / max(len(indices), 1)
            result.segments = [
                s
                for s in flagged_segments(faces, self.threshold, gap)
                if s.start_s < info.duration_s
            ]
            for segment in result.segments:
                segment.end_s = min(segment.end_s, round(info.duration_s, 3))
        return result


def unjudged(result: MediaResult, faces: Sequence[FaceResult]) -> None:
    """A file none of whose faces can be judged: ``uncertain``, and a note saying why."""
    result.verdict = "uncertain"
    result.note = file_reason(
        [f.not_judged or "" for f in faces],
        [face_px(f.box) for f in faces],
        [f.sharpness for f in faces],
    )


def image_score(faces: Sequence[FaceResult], rule: str = "max") -> float:
    """An image's score from its faces by ``rule`` (:data:`IMAGE_RULES`)."""
    if rule == "max":
        return max(f.fake_probability for f in faces)
    if rule == "largest":
        return max(faces, key=lambda f: (face_px(f.box), f.fake_probability)).fake_probability
    if rule == "weighted":
        import math

        eps = 1e-6
        weights = [face_px(f.box) * (f.confidence or 1.0) for f in faces]
        logits = [
            math.log(max(f.fake_probability, eps) / max(1 - f.fake_probability, eps)) for f in faces
        ]
        mean = sum(w * z for w, z in zip(weights, logits, strict=True)) / sum(weights)
        return round(1 / (1 + math.exp(-mean)), 6)
    raise MesonetError(f"image rule must be one of {', '.join(IMAGE_RULES)}, not {rule!r}")


def judge_tracks(tracks: Sequence[Any], faces: Sequence[FaceResult]) -> list[Any]:
    """The tracks most of whose faces can be judged; the others get ``not_judged``."""
    judged = []
    for track in tracks:
        members = [f for f in faces if (f.track or 0) == track.id]
        reasons = [f.not_judged for f in members if not f.judged]
        if len(reasons) * 2 > len(members):
            kind = "too small" if all(r.startswith("too small") for r in reasons) else "too blurred"
            track.not_judged = f"most faces {kind} to judge ({len(reasons)} of {len(members)})"
        else:
            judged.append(track)
    return judged


MAX_DETAIL_CHARS = 200
"""Most characters of an unexpected exception's message in an error record: its first line
only (a failed trace's message is a graph dump of hundreds of kilobytes)."""


def first_line(exc: BaseException) -> str:
    """The first non-blank line of ``exc``'s message, cut to :data:`MAX_DETAIL_CHARS`."""
    line = next((t.strip() for t in str(exc).splitlines() if t.strip()), "")
    return line if len(line) <= MAX_DETAIL_CHARS else line[: MAX_DETAIL_CHARS - 3] + "..."


def error_record(
    path: Path, kind: str | None, exc: Exception, model: str, backend: str | None = None
) -> MediaResult:
    """The error record for a file that failed with ``exc`` (``backend``: the engine that
    would have scored it)."""
    if isinstance(exc, MesonetError | MediaError):
        message = str(exc)
    else:  # a decoder's own failure: keep the detail for debugging, one line for the user
        log.debug("unexpected failure on %s", path, exc_info=exc)
        message = f"could not process the file ({type(exc).__name__}: {first_line(exc)})"
    return MediaResult(
        path=str(path),
        kind=kind if kind in ("image", "video") else None,
        status="error",
        model=model,
        backend=backend,
        error=" ".join(message.split()) or "unknown error",
    )
