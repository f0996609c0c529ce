"""Annotated output: H.264 videos a browser can play, and a timeline chart that explains itself."""

from __future__ import annotations

import av

from mesonet.annotate import timeline_figure
from mesonet.results import FaceResult, MediaResult, Segment


def test_annotated_video_is_h264(annotated_video):
    assert annotated_video.exists()
    with av.open(str(annotated_video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in container.decode(stream)) >= 1
    timeline = annotated_video.name.replace(".annotated.mp4", ".timeline.png")
    assert annotated_video.with_name(timeline).stat().st_size > 0


def test_encoder_ships_with_the_dependency():
    assert av.codec.Codec("libx264", "w").name == "libx264"


def test_timeline_chart_has_time_axis_threshold_and_legend():
    faces = [
        FaceResult([0, 0, 10, 10], 0.9, p, frame=i, time_s=i * 0.5, track=t)
        for i, (p, t) in enumerate([(0.2, 0), (0.7, 0), (0.9, 1), (0.4, 1)])
    ]
    result = MediaResult(
        "v.mp4",
        "video",
        "ok",
        "m",
        0.8,
        "fake",
        faces,
        4,
        2.0,
        "mean",
        [Segment(0.5, 1.0, 0.8, 0)],
    )
    ax = timeline_figure(result, 0.42).axes[0]
    assert ax.get_xlabel() == "time (s)" and ax.get_xlim() == (0.0, 2.0)
    assert ax.get_ylabel() == "p(fake)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["flagged", "face #0", "face #1", "threshold 0.42"]
