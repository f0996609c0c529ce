"""A video's face tracks, their quality, and which of them decide the video's score.

A video's verdict follows the people in it, not a stray detection: a one-frame false face
(a hand, a poster), a motion-blurred frame of the presenter split off as a "new person" or
a small blurred bystander must not decide it. The rules, in order:

1. **False faces are dropped** before they are scored (:func:`plausible_faces`): boxes whose
   side (square root of the area) is under ``MIN_FACE_SIDE`` of the frame's shorter side,
   and five landmarks in a layout no face has (eyes not above the mouth, left and right
   swapped, points far outside the box). The detector's confidence floor applies first.
2. **Faces are linked into tracks** (:func:`link_tracks`, over
   :func:`~mesonet.faces.assign_tracks`): by box overlap, or by a centre within
   ``LINK_DISTANCE`` face sizes for faces of similar size (at most ``LINK_SCALE`` times
   apart); a track survives ``GAP_FRAMES`` analysed frames (or ``GAP_S`` seconds, whichever
   is more) without its face, and may have moved further meanwhile.
3. **Each track is summarised** (:func:`summarise_tracks`): frames covered, share of the
   analysed frames, median face size and detector confidence, and its score under the
   chosen aggregation (:mod:`mesonet.aggregate`).
4. **Only tracks that matter decide** (:func:`choose_decisive`): those covering at least
   ``track_share`` of the analysed frames (the longest track when none does), and of those
   the ones whose faces are at least ``track_size`` times as large as the largest one's (a
   small face in the background is reported, never decides). The video takes the most
   suspicious of them: one forged face makes a forged video.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from mesonet.aggregate import track_scores
from mesonet.defaults import TRACK_SHARE as TRACK_SHARE
from mesonet.defaults import TRACK_SIZE as TRACK_SIZE
from mesonet.errors import MesonetError
from mesonet.faces import Face, assign_tracks
from mesonet.results import FaceResult, TrackResult

MIN_FACE_SIDE = 0.06
"""Faces smaller than this fraction of the frame's shorter side are dropped."""
LINK_DISTANCE = 1.0
LINK_SCALE = 1.5
LINK_IOU = 0.3
GAP_FRAMES = 3
GAP_S = 1.0
GAP_GROWTH = 0.5


def check_rules(track_share: float, track_size: float) -> None:
    """Raise a one-line error unless both are fractions in [0, 1]."""
    for name, value in (("track_share", track_share), ("track_size", track_size)):
        if not 0.0 <= value <= 1.0:
            raise MesonetError(f"{name} must be between 0 and 1, not {value}")


def _landmarks_plausible(face: Face) -> bool:
    """Five landmarks laid out as on a face (lenient: profiles and tilts pass)."""
    if len(face.landmarks) != 5:
        return True  # a detector without landmarks: nothing to check
    x, y, w, h = face.box
    (lex, ley), (rex, rey), (_, ny), (mlx, mly), (mrx, mry) = face.landmarks
    margin_x, margin_y = 0.25 * w, 0.25 * h
    inside = all(
        x - margin_x <= px <= x + w + margin_x and y - margin_y <= py <= y + h + margin_y
        for px, py in face.landmarks
    )
    eyes_y, mouth_y = (ley + rey) / 2, (mly + mry) / 2
    return (
        inside
        and lex < rex
        and mlx < mrx
        and mouth_y - eyes_y >= 0.1 * h
        and eyes_y - 0.1 * h <= ny <= mouth_y + 0.1 * h
    )


def plausible_faces(
    faces: Sequence[Face], frame_shape: Sequence[int], min_side: float = MIN_FACE_SIDE
) -> list[Face]:
    """The faces of one frame (``frame_shape`` = image.shape) that can be faces."""
    floor = min_side * min(frame_shape[0], frame_shape[1])
    return [f for f in faces if math.sqrt(f.area) >= floor and _landmarks_plausible(f)]


def link_tracks(
    faces_per_frame: Sequence[Sequence[Face]], times_s: Sequence[float]
) -> list[list[int]]:
    """Track ids for the faces of each analysed frame (at ``times_s``), same shape."""
    max_gap = GAP_FRAMES
    if len(times_s) > 1:
        step = (times_s[-1] - times_s[0]) / (len(times_s) - 1)
        if step > 0:
            max_gap = max(GAP_FRAMES, math.ceil(GAP_S / step))
    return assign_tracks(
        [list(faces) for faces in faces_per_frame],
        iou_threshold=LINK_IOU,
        max_distance=LINK_DISTANCE,
        max_gap=max_gap,
        max_scale=LINK_SCALE,
        gap_growth=GAP_GROWTH,
    )


def summarise_tracks(
    faces: Sequence[FaceResult], frames_analyzed: int, rule: str, threshold: float
) -> list[TrackResult]:
    """One :class:`TrackResult` per track id in ``faces``, by id (none eligible yet)."""
    by_track: dict[int, list[FaceResult]] = defaultdict(list)
    for face in faces:
        by_track[face.track or 0].append(face)
    scores = track_scores(faces, rule, threshold)
    tracks = []
    for track, members in sorted(by_track.items()):
        frames = len({f.frame for f in members})
        confidences = [f.confidence for f in members if f.confidence is not None]
        tracks.append(
            TrackResult(
                id=track,
                frames=frames,
                share=round(frames / max(frames_analyzed, 1), 4),
                median_size=round(float(np.median([_side(f) for f in members])), 1),
                confidence=round(float(np.median(confidences)), 4) if confidences else None,
                fake_probability=round(scores[track], 6),
            )
        )
    return tracks


def _side(face: FaceResult) -> float:
    return math.sqrt(max(face.box[2], 0.0) * max(face.box[3], 0.0))


def choose_decisive(
    tracks: Sequence[TrackResult],
    track_share: float = TRACK_SHARE,
    track_size: float = TRACK_SIZE,
) -> TrackResult:
    """Mark the tracks that can decide (``eligible``) and the one that does (``decisive``).

    Eligible: share >= ``track_share`` (the longest tracks when none reaches it), then
    median size >= ``track_size`` x the largest of those. The most suspicious eligible track
    decides (the longer one on a tie). ``tracks`` must not be empty.
    """
    if not tracks:
        raise ValueError("a video without tracks has no decisive track")
    candidates = [t for t in tracks if t.share >= track_share - 1e-9]
    if not candidates:
        longest = max(t.frames for t in tracks)
        candidates = [t for t in tracks if t.frames == longest]
    largest = max(t.median_size for t in candidates)
    candidates = [t for t in candidates if t.median_size >= track_size * largest - 1e-9]
    eligible = {t.id for t in candidates}
    for track in tracks:
        track.eligible = track.id in eligible
        track.decisive = False
    decisive = max(candidates, key=lambda t: (t.fake_probability, t.frames, -t.id))
    decisive.decisive = True
    return decisive
