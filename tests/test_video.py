"""Video verdicts follow the people in the video: track linking, false faces, deciding tracks.

The end-to-end tests write their own clips from real face crops (../shared, skipped without
it) and score them with a transparent stand-in model: a crop's fake probability is how much
redder than green it is, so a face tinted red is "more suspicious" by construction.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import make_video
from typer.testing import CliRunner

from mesonet.annotate import draw_faces, timeline_figure
from mesonet.cli import app
from mesonet.faces import Face, assign_tracks
from mesonet.pipeline import Detector
from mesonet.results import FaceResult, MediaResult, Segment, TrackResult
from mesonet.video import choose_decisive, link_tracks, plausible_faces, summarise_tracks

FACES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mesonet-deepfake-val"


class Redness(torch.nn.Module):
    """Fake probability = mean red minus mean green of the crop, times 2 (clipped)."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:  # scorers work on logits
        p = ((x[:, 0].mean(dim=(1, 2)) - x[:, 1].mean(dim=(1, 2))) * 2).clamp(1e-4, 1 - 1e-4)
        return torch.log(p / (1 - p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def redness_detector(**kwargs) -> Detector:
    # every sampled frame goes through the face detector (no interpolation between them)
    return Detector(Redness(), backend="torch", redetect_s=0, **kwargs)


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    if not FACES.exists():
        pytest.skip("../shared face crops not present")
    paths = sorted((FACES / "real").glob("*.jpg"))[::700][:2]
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def tinted(face: np.ndarray) -> np.ndarray:
    """The face with green and blue damped: redder, so the stand-in model scores it higher."""
    out = face.astype(np.float32)
    out[..., 1:] *= 0.55
    return out.astype(np.uint8)


def scene(*faces: tuple[np.ndarray, int, int, int]) -> np.ndarray:
    """A grey 480 x 960 frame with each ``(face, x, y, side)`` pasted as a square."""
    frame = np.full((480, 960, 3), 128, np.uint8)
    for face, x, y, side in faces:
        frame[y : y + side, x : x + side] = cv2.resize(face, (side, side))
    return frame


def track_of(result: MediaResult, track_id: int) -> TrackResult:
    return next(t for t in result.tracks if t.id == track_id)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def distractor_clip(crops, tmp_path_factory) -> Path:
    """One person for the whole clip (20 frames); a redder face in frame 10 only."""
    frames = []
    for i in range(20):
        faces = [(crops[0], 100 + 2 * i, 140, 200)]
        if i == 10:
            faces.append((tinted(crops[1]), 600, 200, 150))
        frames.append(scene(*faces))
    return make_video(tmp_path_factory.mktemp("v") / "distractor.mp4", frames, fps=10)


def test_a_one_frame_distractor_does_not_decide(distractor_clip):
    result = redness_detector(frames=20).predict(distractor_clip)
    assert result.status == "ok" and len(result.tracks) == 2
    person, distractor = sorted(result.tracks, key=lambda t: -t.frames)
    assert (person.frames, person.share) == (20, 1.0)
    assert (distractor.frames, distractor.share) == (1, 0.05)
    assert distractor.fake_probability > person.fake_probability  # it would have decided
    assert person.eligible and person.decisive
    assert not distractor.eligible and not distractor.decisive
    assert result.fake_probability == person.fake_probability
    assert result.decisive_track is person
    # the distractor is still reported: its face keeps its track id
    (flash,) = [f for f in result.faces if f.track == distractor.id]
    assert flash.time_s == pytest.approx(1.0) and flash.box[0] > 500
    keys = {"id", "frames", "share", "median_size", "confidence", "fake_probability"}
    keys |= {"eligible", "decisive"}
    assert all(set(t) == keys for t in result.to_dict()["tracks"])
    # with the share rule off, every track may decide: the old behaviour, the distractor wins
    anything = redness_detector(frames=20, track_share=0.0).predict(distractor_clip)
    assert anything.decisive_track.frames == 1
    assert anything.fake_probability == distractor.fake_probability


@pytest.mark.parametrize("rule", ["mean", "vote", "confident"])
def test_every_aggregation_is_selectable_and_the_person_decides(distractor_clip, rule):
    scores = redness_detector(frames=20).predict(distractor_clip).tracks
    # a threshold between the person's and the distractor's scores, so "vote" tells them apart
    cut = (scores[0].fake_probability + scores[1].fake_probability) / 2
    result = redness_detector(frames=20, aggregate=rule, threshold=cut).predict(distractor_clip)
    assert result.aggregation == rule
    decisive = result.decisive_track
    assert decisive.frames == 20 and result.fake_probability == decisive.fake_probability
    assert result.label == "real"  # the red one-frame face would have made it "fake"
    shortest = min(result.tracks, key=lambda t: t.frames)
    assert shortest.fake_probability > decisive.fake_probability


def test_b_a_blurred_shifted_frame_stays_in_its_track(crops, tmp_path):
    """Frame 6 is motion-blurred and the face jumps 0.6 face sizes: still one person."""
    frames = []
    for i in range(12):
        face, x = crops[0], 100 + 3 * i
        if i == 6:
            face, x = cv2.GaussianBlur(face, (0, 0), 4), x + 125
        frames.append(scene((face, x, 140, 200)))
    path = make_video(tmp_path / "blur.mp4", frames, fps=10)
    result = redness_detector(frames=12).predict(path)
    assert result.frames_analyzed == 12
    assert sorted(f.frame for f in result.faces) == list(range(12))  # a face on every frame
    assert {f.track for f in result.faces} == {0} and len(result.tracks) == 1
    assert result.tracks[0].share == 1.0 and result.tracks[0].decisive
    # the plain frame-to-frame matching split it in two
    boxes = [[Face(tuple(f.box), (), 1.0)] for f in sorted(result.faces, key=lambda f: f.frame)]
    assert len({i for ids in assign_tracks(boxes) for i in ids}) == 2


def test_c_two_people_of_equal_length_both_can_decide(crops, tmp_path):
    frames = [
        scene((crops[0], 80 + 2 * i, 140, 200), (tinted(crops[1]), 620 - 2 * i, 140, 200))
        for i in range(12)
    ]
    path = make_video(tmp_path / "two.mp4", frames, fps=10)
    result = redness_detector(frames=12).predict(path)
    assert len(result.tracks) == 2
    assert all(t.eligible and t.frames == 12 for t in result.tracks)
    decisive = max(result.tracks, key=lambda t: t.fake_probability)
    assert decisive.decisive and result.decisive_track is decisive
    assert result.fake_probability == decisive.fake_probability
    # the more suspicious one is the red face on the right
    right = [f for f in result.faces if f.track == decisive.id]
    assert all(f.box[0] > 400 for f in right)


# --------------------------------------------------------------------------- rules


def _track(id: int, frames: int, size: float, p: float, total: int = 32) -> TrackResult:
    return TrackResult(id, frames, frames / total, size, 1.0, p)


def test_decisive_rule_share_then_size_then_most_suspicious():
    main, flash, bystander = _track(0, 32, 220, 0.14), _track(1, 1, 70, 0.9), _track(2, 11, 73, 0.5)
    assert choose_decisive([main, flash, bystander]) is main
    assert [t.eligible for t in (main, flash, bystander)] == [True, False, False]
    # bystander covers 34% of the frames but its faces are a third of the presenter's
    assert choose_decisive([main, bystander], track_size=0.0) is bystander
    assert choose_decisive([main, flash, bystander], track_share=0.0, track_size=0.0) is flash
    assert [t.decisive for t in (main, flash, bystander)] == [False, True, False]


def test_decisive_rule_falls_back_to_the_longest_track():
    a, b, c = _track(0, 5, 100, 0.2), _track(1, 7, 100, 0.3), _track(2, 7, 100, 0.6)
    assert choose_decisive([a, b, c]) is c  # none reaches 25%: the longest two, most suspicious
    assert not a.eligible and b.eligible and c.eligible
    with pytest.raises(ValueError):
        choose_decisive([])


def test_summary_counts_frames_share_size_and_confidence():
    faces = [
        FaceResult([0, 0, 100, 100], 0.99, 0.2, frame=0, time_s=0.0, track=0),
        FaceResult([0, 0, 120, 120], 0.97, 0.4, frame=1, time_s=0.1, track=0),
        FaceResult([0, 0, 50, 50], 0.91, 0.9, frame=1, time_s=0.1, track=1),
    ]
    tracks = summarise_tracks(faces, 4, "mean", 0.5)
    assert [(t.id, t.frames, t.share) for t in tracks] == [(0, 2, 0.5), (1, 1, 0.25)]
    assert tracks[0].median_size == 110.0 and tracks[0].confidence == 0.98
    assert tracks[0].fake_probability == pytest.approx(0.3)


def _landmarked(box, points) -> Face:
    return Face(box, tuple(points), 0.99)


def test_false_faces_are_dropped():
    box = (100.0, 100.0, 100.0, 120.0)
    face = [(130, 150), (170, 150), (150, 175), (135, 195), (165, 195)]
    good = _landmarked(box, face)
    swapped_eyes = _landmarked(box, [face[1], face[0], *face[2:]])
    mouth_above_eyes = _landmarked(
        box, [(130, 195), (170, 195), (150, 175), (135, 150), (165, 150)]
    )
    far_outside = _landmarked(box, [*face[:4], (400, 400)])
    tiny = Face((0.0, 0.0, 20.0, 20.0), (), 0.99)  # 20 px in a 480 px tall frame
    kept = plausible_faces([good, swapped_eyes, mouth_above_eyes, far_outside, tiny], (480, 640))
    assert kept == [good]
    assert plausible_faces([tiny], (240, 320), min_side=0.05) == [tiny]


def test_linking_tolerates_gaps_in_time_and_needs_similar_sizes():
    face = Face((100.0, 100.0, 100.0, 100.0), (), 1.0)
    moved = Face((190.0, 100.0, 100.0, 100.0), (), 1.0)  # 0.9 face sizes away, same size
    small = Face((190.0, 100.0, 40.0, 40.0), (), 1.0)  # as near, but 2.5 times smaller
    frames = [[face], [], [], [], [moved], [small]]
    # 0.1 s apart: a 3-frame gap is short (GAP_FRAMES), the small face is someone else
    assert link_tracks(frames, [0.1 * i for i in range(6)]) == [[0], [], [], [], [0], [1]]
    # with frames 0.05 s apart a gap of up to 1 s (20 frames) is tolerated
    long_gap = [[face], *[[]] * 15, [moved]]
    assert link_tracks(long_gap, [0.05 * i for i in range(17)])[-1] == [0]
    assert link_tracks(long_gap, [1.0 * i for i in range(17)])[-1] == [1]


# --------------------------------------------------------------------------- front ends


def test_cli_reports_tracks_and_takes_the_share(distractor_clip, served_model):
    runner = CliRunner()
    base = ["predict", str(distractor_clip), "-m", str(served_model), "--frames", "20"]
    out = runner.invoke(app, [*base, "-f", "json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    (record,) = json.loads(out.stdout)
    assert sum(t["decisive"] for t in record["tracks"]) == 1
    assert {f["track"] for f in record["faces"]} == {t["id"] for t in record["tracks"]}
    table = runner.invoke(app, [*base, "--track-share", "0.5"], env={"COLUMNS": "250"})
    assert table.exit_code == 0 and "can decide" in table.stdout and "decides" in table.stdout
    csv_out = runner.invoke(app, [*base, "-f", "csv"], catch_exceptions=False)
    assert "deciding_tracks" in csv_out.stdout.splitlines()[0]
    bad = runner.invoke(app, [*base, "--track-share", "1.5"])
    assert bad.exit_code == 2


def test_annotations_mark_the_decisive_track(distractor_clip, tmp_path):
    result = redness_detector(frames=20, annotate_dir=tmp_path).predict(distractor_clip)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".mp4", ".png"]
    lines = timeline_figure(result, 0.5).axes[0].get_lines()
    widths = {line.get_label(): line.get_linewidth() for line in lines}
    decisive, other = sorted(result.tracks, key=lambda t: not t.decisive)
    assert widths[f"face #{decisive.id} (decides)"] > widths[f"face #{other.id} (cannot decide)"]
    frame = np.zeros((480, 960, 3), np.uint8)
    faces = [f for f in result.faces if f.time_s == pytest.approx(1.0)]  # both tracks' faces
    marked = draw_faces(frame, faces, 0.5, decisive=decisive.id)
    plain = draw_faces(frame, faces, 0.5)
    assert (marked != plain).any()  # the decisive face's box is thicker and labelled


def test_chart_shades_segments_of_tracks_that_cannot_decide_apart():
    faces = [
        FaceResult([0, 0, 100, 100], 1.0, 0.2, frame=i, time_s=float(i), track=0) for i in range(4)
    ]
    faces.append(FaceResult([300, 0, 40, 40], 0.95, 0.9, frame=2, time_s=2.0, track=1))
    result = MediaResult(
        path="v.mp4", kind="video", status="ok", model="m", fake_probability=0.2, label="real"
    )
    result.faces, result.frames_analyzed, result.duration_s = faces, 4, 4.0
    result.tracks = summarise_tracks(faces, 4, "mean", 0.5)
    choose_decisive(result.tracks)
    result.segments = [Segment(1.5, 2.5, 0.9, 1)]
    labels = timeline_figure(result, 0.5).axes[0].get_legend_handles_labels()[1]
    assert "flagged, cannot decide" in labels and "flagged" not in labels
    assert "face #0 (decides)" in labels and "face #1 (cannot decide)" in labels
