"""Greedy face tracking across sampled frames, so scores can be pooled per person.

Frames are usually sampled far apart (32 over a whole video), so matching uses box
overlap (IoU) first and falls back to centre distance relative to face size (optionally only
between faces of a similar size), and a track survives a few frames without a detection (a
missed face, a turned head, a motion-blurred frame), the distance it may have moved growing
with the gap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mesonet.faces.detector import Face

__all__ = ["assign_tracks", "box_iou"]


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes (0 when disjoint)."""
    ax1, ay1 = a[0] + a[2], a[1] + a[3]
    bx1, by1 = b[0] + b[2], b[1] + b[3]
    iw = min(ax1, bx1) - max(a[0], b[0])
    ih = min(ay1, by1) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    id: int
    face: Face
    last_frame: int


def _center_distance(a: Face, b: Face) -> float:
    """Distance between box centres in units of the larger box's longer side."""
    (ax, ay), (bx, by) = a.center, b.center
    scale = max(a.box[2], a.box[3], b.box[2], b.box[3], 1e-9)
    return math.hypot(ax - bx, ay - by) / scale


def _scale_ratio(a: Face, b: Face) -> float:
    """How many times larger one face is than the other (>= 1; sides, not areas)."""
    small, large = sorted((math.sqrt(a.area), math.sqrt(b.area)))
    return large / small if small > 0 else math.inf


def assign_tracks(
    faces_per_frame: list[list[Face]],
    iou_threshold: float = 0.3,
    max_distance: float = 0.5,
    max_gap: int = 2,
    max_scale: float | None = None,
    gap_growth: float = 0.0,
) -> list[list[int]]:
    """Give every face a track id, same shape as ``faces_per_frame``.

    Frame by frame, each (live track, face) pair is a candidate when the boxes'
    IoU >= ``iou_threshold`` or their centres are within ``max_distance`` face sizes
    (times ``(1 + gap) ** gap_growth`` after ``gap`` frames without the track, so a face
    may have moved further while it was missed) and, if ``max_scale`` is set, their sizes
    differ by at most that factor; candidates are taken greedily, best IoU first (then
    nearest), each track and face at most once. Unmatched faces start new tracks. A track
    not seen for more than ``max_gap`` consecutive frames ends. Ids count up from 0 and
    are never reused.
    """
    tracks: list[_Track] = []
    next_id = 0
    result: list[list[int]] = []
    for frame, faces in enumerate(faces_per_frame):
        tracks = [t for t in tracks if frame - t.last_frame <= max_gap + 1]
        candidates = []
        for ti, track in enumerate(tracks):
            reach = max_distance * (frame - track.last_frame) ** gap_growth
            for fi, face in enumerate(faces):
                iou = box_iou(track.face.box, face.box)
                distance = _center_distance(track.face, face)
                near = distance <= reach and (
                    max_scale is None or _scale_ratio(track.face, face) <= max_scale
                )
                if iou >= iou_threshold or near:
                    candidates.append((-iou, distance, ti, fi))
        candidates.sort()
        ids: list[int | None] = [None] * len(faces)
        used_tracks: set[int] = set()
        for _, _, ti, fi in candidates:
            if ti in used_tracks or ids[fi] is not None:
                continue
            used_tracks.add(ti)
            ids[fi] = tracks[ti].id
            tracks[ti].face = faces[fi]
            tracks[ti].last_frame = frame
        for fi, face in enumerate(faces):
            if ids[fi] is None:
                ids[fi] = next_id
                tracks.append(_Track(next_id, face, frame))
                next_id += 1
        result.append([i for i in ids if i is not None])
    return result
