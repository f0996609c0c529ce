"""The results table tells a video's frame and temporal evidence when a video model ran."""

from __future__ import annotations

import copy

from mesonet.output import _summary_row
from tests.test_temporal_outputs import temporal_result  # noqa: F401 - fixture used by name
from tests.test_video_model import (  # noqa: F401 - module fixtures used by name below
    two_track_video,
    video_model_file,
)


def test_the_table_shows_the_deciding_tracks_two_kinds_of_evidence(temporal_result):  # noqa: F811
    decisive = temporal_result.decisive_track
    detail = _summary_row(temporal_result)[-1]
    assert decisive.temporal_probability is not None
    assert f"frames {decisive.frame_probability:.3f}" in detail
    assert f"temporal {decisive.temporal_probability:.3f} ({temporal_result.evidence})" in detail
    frames_only = copy.deepcopy(temporal_result)
    frames_only.video_model = None
    for track in frames_only.tracks:  # frame evidence only: nothing about it
        track.temporal_probability = None
    assert "temporal" not in _summary_row(frames_only)[-1]
