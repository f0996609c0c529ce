"""The video model's evidence in the outputs (issue 27): each scored window on the record,
the timeline chart drawing the temporal score beside the frame scores, and the temporal
fields kept by CSV and Parquet."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

from mesonet.annotate import timeline_figure
from mesonet.results import MediaResult, csv_header, to_csv_line
from tests.test_video_model import (  # noqa: F401 - module fixtures used by name below
    _detector,
    two_track_video,
    video_model_file,
)


@pytest.fixture(scope="module")
def temporal_result(two_track_video, video_model_file) -> MediaResult:  # noqa: F811
    """A 40-frame video at 10 fps with a long track (a run of 24 consecutive frames) and a
    short one, analysed with a video model."""
    result = _detector(video_model_file).predict(two_track_video)
    assert result.status == "ok", result.error
    return result


def _long_short(result: MediaResult):
    return sorted(result.tracks, key=lambda t: -t.frames)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


# --------------------------------------------------------------------------- the record


def test_each_scored_window_is_on_the_record_with_its_time_span(temporal_result):
    long, short = _long_short(temporal_result)
    assert long.temporal_windows == len(long.windows) == 1
    (window,) = long.windows
    # the run of frames 8-31 and the evenly sampled frame 7 before it: the window is the
    # first 24 consecutive frames, 7-30, at 10 fps from 0.7 s to 3.0 s
    assert window.start_s == pytest.approx(0.7, abs=0.01)
    assert window.end_s == pytest.approx(3.0, abs=0.01)
    mean_logit = sum(_logit(w.temporal_probability) for w in long.windows) / len(long.windows)
    assert long.temporal_probability == pytest.approx(1 / (1 + math.exp(-mean_logit)), abs=2e-6)
    assert short.windows is None
    record = temporal_result.to_dict()
    long_d, short_d = sorted(record["tracks"], key=lambda t: -t["frames"])
    assert long_d["windows"] == [
        {"start_s": window.start_s, "end_s": window.end_s,
         "temporal_probability": window.temporal_probability}
    ]  # fmt: skip
    assert "windows" not in short_d


def test_the_windows_span_what_their_frames_span_when_a_track_has_several():
    from mesonet.pipeline.temporal import track_windows

    faces = [(i, (i / 25, f"crop{i}")) for i in range(60)]  # 60 consecutive frames at 25 fps
    windows = track_windows(faces, 24)
    assert [(w[0][0], w[-1][0]) for w in windows] == [(0.0, 23 / 25), (24 / 25, 47 / 25)]
    assert [c for _, c in windows[1]] == [f"crop{i}" for i in range(24, 48)]


# --------------------------------------------------------------------------- the chart


def test_the_timeline_chart_draws_the_temporal_windows_beside_the_frame_scores(
    temporal_result,
):
    long, short = _long_short(temporal_result)
    ax = timeline_figure(temporal_result, 0.5, video_threshold=0.62).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    bars = lines[f"face #{long.id} temporal (1 window)"]
    (window,) = long.windows
    xs, ys = bars.get_xdata(), bars.get_ydata()
    assert list(xs[:2]) == [window.start_s, window.end_s]
    assert list(ys[:2]) == [window.temporal_probability] * 2
    frames = lines[f"face #{long.id} frames (decides)"]  # the frame scores, still there
    assert len(frames.get_xdata()) == long.frames
    assert bars.get_color() == frames.get_color() and bars.get_linewidth() > frames.get_linewidth()
    assert "temporal threshold 0.62" in labels and "threshold 0.50" in labels
    assert not any(f"face #{short.id} temporal" in label for label in labels)  # no window
    # the same threshold for both models: one line
    same = timeline_figure(temporal_result, 0.5, video_threshold=0.5).axes[0]
    assert not any("temporal threshold" in t.get_text() for t in same.get_legend().get_texts())
    title = timeline_figure(temporal_result, 0.5)._suptitle.get_text()
    assert "+ temporal_conv.test (mean)" in title


def test_the_annotated_videos_strip_draws_the_windows_too(temporal_result):
    from copy import deepcopy

    from mesonet.annotate import STRIP_HEIGHT, timeline_strip

    long, _ = _long_short(temporal_result)
    without = deepcopy(temporal_result)
    for track in without.tracks:
        track.windows = None
    width = 400
    drawn = timeline_strip(temporal_result, width, 0.5)
    plain = timeline_strip(without, width, 0.5)
    changed = np.argwhere((drawn != plain).any(axis=-1))
    (window,) = long.windows
    duration = temporal_result.duration_s
    y = 8 + (1 - window.temporal_probability) * (STRIP_HEIGHT - 16)
    assert len(changed) > 0
    assert abs(changed[:, 0].mean() - y) <= 1.5  # at the window's score
    left, right = (t / duration * (width - 1) for t in (window.start_s, window.end_s))
    assert left - 4 <= changed[:, 1].min() and changed[:, 1].max() <= right + 4  # its span


def test_annotating_a_video_with_a_video_model_charts_its_threshold(
    two_track_video,  # noqa: F811
    video_model_file,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    from mesonet import annotate

    charted = []

    def chart(result, threshold, path, video_threshold=None):
        charted.append((result, video_threshold))
        return path

    monkeypatch.setattr(annotate, "write_timeline_png", chart)
    detector = _detector(video_model_file)
    detector.annotate_dir = tmp_path
    result = detector.predict(two_track_video)
    ((charted_result, video_threshold),) = charted
    assert charted_result is result and video_threshold == 0.5  # the video card's threshold
    assert any(t.windows for t in result.tracks)


# --------------------------------------------------------------------------- CSV, Parquet


def test_csv_keeps_the_video_model_and_the_decisive_tracks_evidence(temporal_result):
    (row,) = csv.DictReader(io.StringIO(csv_header() + to_csv_line(temporal_result)))
    decisive = temporal_result.decisive_track
    assert row["video_model"] == "temporal_conv.test" and row["video_rule"] == "mean"
    assert row["evidence"] == temporal_result.evidence == decisive.evidence
    assert float(row["frame_probability"]) == decisive.frame_probability
    if decisive.temporal_probability is None:
        assert row["temporal_probability"] == row["temporal_windows"] == ""
    else:
        assert float(row["temporal_probability"]) == decisive.temporal_probability
        assert int(row["temporal_windows"]) == decisive.temporal_windows
    plain = MediaResult("v.mp4", "video", "ok", "m", 0.2, "real")
    (empty,) = csv.DictReader(io.StringIO(csv_header() + to_csv_line(plain)))
    assert all(empty[k] == "" for k in ("video_model", "evidence", "temporal_probability"))


def _records(temporal_result) -> list[dict]:
    """The record with a video model, a video's without one and an image's (as JSON)."""
    plain = json.loads(json.dumps(temporal_result.to_dict()))
    for key in ("video_model", "video_rule", "evidence"):
        plain.pop(key)
    for track in plain["tracks"]:
        for key in ("frame_probability", "temporal_probability", "temporal_windows"):
            track.pop(key, None)
        track.pop("evidence"), track.pop("windows", None)
    plain["path"] = "plain.mp4"
    image = MediaResult("face.jpg", "image", "ok", "m", 0.7, "fake", verdict="likely forged")
    return [json.loads(json.dumps(temporal_result.to_dict())), plain, image.to_dict()]


def test_parquet_round_trips_the_temporal_fields(temporal_result, tmp_path):
    pytest.importorskip("pyarrow")
    from mesonet.scan.writers import ParquetWriter, read_parquet

    records = _records(temporal_result)
    assert any("windows" in t for t in records[0]["tracks"])
    with ParquetWriter(tmp_path / "out.parquet") as writer:
        writer.write(records)
    back = list(read_parquet(tmp_path / "out.parquet"))
    assert back == records
    assert [list(r) for r in back] == [list(r) for r in records]  # keys in the record's order
    for stored, record in zip(back, records, strict=True):
        assert [list(t) for t in stored.get("tracks", [])] == [
            list(t) for t in record.get("tracks", [])
        ]


def test_a_parquet_file_written_without_the_temporal_fields_merges_with_new_records(
    temporal_result, tmp_path
):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from mesonet.scan.writers import ParquetWriter, parquet_schema, read_parquet
    from mesonet.scan.writers.parquet import _to_row

    schema = parquet_schema()  # as it was before the video model: no temporal fields
    temporal = ("frame_probability", "temporal_probability", "temporal_windows", "evidence")
    track_fields = [
        f for f in schema.field("tracks").type.value_type if f.name not in (*temporal, "windows")
    ]
    old_schema = pa.schema(
        [
            pa.field("tracks", pa.list_(pa.struct(track_fields))) if f.name == "tracks" else f
            for f in schema
            if f.name not in ("video_model", "video_rule", "evidence")
        ]
    )
    plain, old = _records(temporal_result)[1:], tmp_path / "out.parquet"
    pq.write_table(pa.Table.from_pylist([_to_row(r, old_schema) for r in plain], old_schema), old)
    new = _records(temporal_result)[0]
    with ParquetWriter(old) as writer:
        writer.write([new])
    assert sorted(read_parquet(old), key=lambda r: r["path"]) == sorted(
        [new, *plain], key=lambda r: r["path"]
    )
