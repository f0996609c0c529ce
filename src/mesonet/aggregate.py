"""From per-frame face scores to a per-track and a per-video verdict, and flagged segments.

Rules (``--aggregate``):

- ``mean``: the mean fake probability over a track's frames (the paper's video score).
- ``vote``: the share of a track's frames scored fake at the threshold (the authors' code
  counts frames per class); compared with 0.5 it is a majority vote.
- ``confident``: the mean over the track's most decisive frames, those whose probability is
  furthest from 0.5 (the top third, at least one): unsure frames (blur, profile) weigh nothing.

Each face track is scored on its own; the video takes its most suspicious track among
those that cover a real share of it (:mod:`mesonet.video`), since one forged face makes a
forged video but a one-frame false detection must not.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from mesonet.results import FaceResult, Segment

AGGREGATIONS = ("mean", "vote", "confident")
CONFIDENT_SHARE = 1 / 3


def aggregate_scores(scores: Sequence[float], rule: str, threshold: float) -> float:
    """One score in [0, 1] for a track's frame scores under ``rule``."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no scores to aggregate")
    if rule == "mean":
        return float(values.mean())
    if rule == "vote":
        return float((values >= threshold).mean())
    if rule == "confident":
        keep = max(1, int(np.ceil(values.size * CONFIDENT_SHARE)))
        decisive = values[np.argsort(-np.abs(values - 0.5), kind="stable")[:keep]]
        return float(decisive.mean())
    raise ValueError(f"unknown aggregation {rule!r}: choose one of {', '.join(AGGREGATIONS)}")


def decision_threshold(rule: str, threshold: float) -> float:
    """The cut-off for an aggregated score: a vote share is compared with one half."""
    return 0.5 if rule == "vote" else threshold


def track_scores(faces: Sequence[FaceResult], rule: str, threshold: float) -> dict[int, float]:
    """Aggregated score per track id."""
    by_track: dict[int, list[float]] = defaultdict(list)
    for face in faces:
        by_track[face.track or 0].append(face.fake_probability)
    return {t: aggregate_scores(s, rule, threshold) for t, s in sorted(by_track.items())}


def flagged_segments(
    faces: Sequence[FaceResult], threshold: float, frame_gap_s: float
) -> list[Segment]:
    """Time ranges where a track's frames score at or above ``threshold``.

    Consecutive flagged samples of a track merge into one segment; a sample that is not
    flagged ends it. Each sample covers ``frame_gap_s`` (the sampling interval) around
    its time, so a single flagged frame still gives a range of non-zero length.
    """
    segments: list[Segment] = []
    by_track: dict[int, list[FaceResult]] = defaultdict(list)
    for face in faces:
        by_track[face.track or 0].append(face)
    half = frame_gap_s / 2
    for track, samples in sorted(by_track.items()):
        samples.sort(key=lambda f: f.time_s or 0.0)
        run: list[FaceResult] = []
        for face in [*samples, None]:
            if face is not None and face.fake_probability >= threshold:
                run.append(face)
                continue
            if run:
                segments.append(
                    Segment(
                        start_s=round(max(0.0, (run[0].time_s or 0.0) - half), 3),
                        end_s=round((run[-1].time_s or 0.0) + half, 3),
                        fake_probability=round(
                            float(np.mean([f.fake_probability for f in run])), 4
                        ),
                        track=track,
                    )
                )
                run = []
    return sorted(segments, key=lambda s: (s.start_s, s.track))
