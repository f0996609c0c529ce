"""Each stage of the Detector on its own: reading, finding faces, scoring, records, wiring.

The stages take plain callables, so most tests feed them a stand-in scorer (a crop's fake
probability is its mean brightness) and stand-in face detectors; the real MTCNN runs on the
packaged sample faces.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import make_video

from mesonet.errors import MesonetError
from mesonet.faces import Face, create_detector, crop_whole
from mesonet.inputs import Input, sample_paths
from mesonet.media import MediaError, VideoFrame, VideoInfo
from mesonet.models import ModelCard, create_model
from mesonet.models.calibration import verdict_for
from mesonet.pipeline import CROP_SIZE, Detector
from mesonet.pipeline.analysis import Analysis
from mesonet.pipeline.faces import FaceFinder, FrameFaces, whole_face
from mesonet.pipeline.read import (
    ImageBatch,
    guarded,
    load_image,
    open_video,
    read_ahead,
    unreadable,
)
from mesonet.pipeline.records import Records, card_thresholds, error_record, model_label
from mesonet.pipeline.score import score_all, score_crops, score_stream, to_batch


def brightness(crops: np.ndarray) -> np.ndarray:
    """Stand-in scorer: the fake probability of a crop is its mean brightness."""
    return (np.asarray(crops, np.float32).mean(axis=(1, 2, 3)) / 255.0).astype(np.float32)


def face(x: float, y: float = 50.0, size: float = 100.0, confidence: float = 0.99) -> Face:
    """A face box with five landmarks laid out as on a face."""
    marks = ((x + 30, y + 40), (x + 70, y + 40), (x + 50, y + 60), (x + 35, y + 80))
    return Face((x, y, size, size), (*marks, (x + 65, y + 80)), confidence)


def records(**kwargs) -> Records:
    defaults = dict(model="m", threshold=0.5, card_threshold=0.5, bands={"uncertain": [0.4, 0.6]})
    return Records(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def sample_images() -> list[np.ndarray]:
    """The four packaged face images (RGB)."""
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sample_paths()]


@pytest.fixture()
def wide_image(tmp_path) -> Path:
    """A 300 x 200 sample face (width x height) as a PNG."""
    image = cv2.resize(cv2.imread(str(sample_paths()[0])), (300, 200))
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), image)
    return path


# --------------------------------------------------------------------------- read


def test_load_image_keeps_the_source_size_and_can_cut_the_crop(wide_image):
    image, size = load_image(wide_image)
    assert image.shape == (200, 300, 3) and size == (300, 200)
    crop, size = load_image(wide_image, crop=True, resize="nearest")
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3) and size == (300, 200)
    np.testing.assert_array_equal(crop, crop_whole(image, CROP_SIZE, "nearest"))


def test_guarded_returns_the_exception_instead_of_raising():
    def fail(x):
        raise ValueError(f"bad {x}")

    assert guarded(lambda x: x + 1)(1) == 2
    error = guarded(fail)(3)
    assert isinstance(error, ValueError) and str(error) == "bad 3"


def test_read_ahead_batches_images_in_order_and_passes_other_inputs(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a jpeg")
    video = Input(tmp_path / "clip.mp4", "video")
    images = [Input(p, "image") for p in [*sample_paths(), broken]]
    items = [images[0], images[1], images[2], video, images[3], images[4]]
    out = list(read_ahead(items, batch_size=2, load=guarded(load_image)))
    assert [type(o).__name__ for o in out] == ["ImageBatch", "ImageBatch", "Input", "ImageBatch"]
    assert [o.paths for o in out if isinstance(o, ImageBatch)] == [
        [images[0].path, images[1].path],
        [images[2].path],
        [images[3].path, broken],
    ]
    assert out[2] is video
    (image, (width, height)), error = out[3].loaded
    assert image.shape == (height, width, 3) and isinstance(error, MediaError)


def test_read_ahead_stops_its_decoders_when_closed_early():
    items = [Input(p, "image") for p in sample_paths()] * 3
    batches = read_ahead(items, batch_size=2, load=guarded(load_image))
    assert len(next(batches).paths) == 2
    batches.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("mesonet-decode")]


def test_open_video_samples_frames_and_decodes_them_in_order(tmp_path):
    path = make_video(tmp_path / "grey.mp4", 12, fps=10.0)  # frame i: grey level 10 * i
    info, indices, stream = open_video(path, frames=4)
    try:
        frames = list(stream)
    finally:
        stream.close()
    assert info.frame_count == 12 and info.fps == pytest.approx(10.0)
    assert len(indices) == 4 and [f.index for f in frames] == indices
    for frame in frames:
        assert frame.time_s == pytest.approx(frame.index / 10.0)
        assert abs(frame.image.mean() - 10 * frame.index) < 4
    info, indices, stream = open_video(path, fps=5.0)
    stream.close()
    assert indices == [0, 2, 4, 6, 8, 10]


def test_unreadable_says_why(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert str(unreadable(tmp_path / "gone.jpg")) == "file not found"
    assert "is a folder" in str(unreadable(tmp_path))
    assert "not an image or video" in str(unreadable(notes))


# --------------------------------------------------------------------------- faces


def test_finder_without_detector_takes_the_whole_image():
    image = np.random.default_rng(0).integers(0, 255, (200, 300, 3), np.uint8)
    [(frame, crops)] = FaceFinder(resize="area").find([image])
    assert frame.faces == [whole_face(300, 200)] and frame.scores == []
    assert frame.faces[0].box == (0.0, 0.0, 300.0, 200.0)
    np.testing.assert_array_equal(crops[0], crop_whole(image, CROP_SIZE, "area"))


def test_finder_detects_and_aligns_the_sample_faces(sample_images):
    finder = FaceFinder(create_detector("mtcnn").detect)
    found = finder.find(sample_images)
    assert len(found) == len(sample_images)
    for frame, crops in found:
        assert len(frame.faces) == 1 and frame.faces[0].confidence > 0.9
        assert len(crops) == 1 and crops[0].shape == (CROP_SIZE, CROP_SIZE, 3)


class Gliding:
    """Stand-in detector for frames whose pixels hold their index: one face at x = 10 * index.

    Records the frames it was run on."""

    def __init__(self) -> None:
        self.ran_on: list[int] = []

    def detect(self, images: list[np.ndarray]) -> list[list[Face]]:
        indices = [int(image[0, 0, 0]) for image in images]
        self.ran_on.extend(indices)
        return [[face(10.0 * i)] for i in indices]


def frames(count: int, fps: float = 10.0) -> list[VideoFrame]:
    return [VideoFrame(i, i / fps, np.full((240, 400, 3), i, np.uint8)) for i in range(count)]


def test_video_faces_detected_every_redetect_s_and_interpolated_between():
    detector = Gliding()
    finder = FaceFinder(detector.detect)
    found = list(finder.video(frames(11), last_index=10, fps=10.0, redetect_s=0.5))
    assert detector.ran_on == [0, 5, 10]
    assert [f.index for f, _ in found] == list(range(11))
    for frame, crops in found:
        (one,) = frame.faces
        assert one.box[0] == pytest.approx(10.0 * frame.index)  # between detections too
        assert len(crops) == 1 and crops[0].shape == (CROP_SIZE, CROP_SIZE, 3)
    detector.ran_on.clear()
    list(finder.video(frames(4), last_index=3, fps=10.0, redetect_s=0))
    assert detector.ran_on == [0, 1, 2, 3]


def test_video_faces_keep_the_last_detection_when_the_stream_ends_early():
    detector = Gliding()
    found = list(FaceFinder(detector.detect).video(frames(4), 10, fps=10.0, redetect_s=1.0))
    assert detector.ran_on == [0]
    assert [f.faces[0].box[0] for f, _ in found] == [0.0] * 4


def test_video_faces_drop_faces_that_cannot_be_faces_and_check_the_clock():
    class Clock:
        checks = 0

        def check(self) -> None:
            self.checks += 1

    def tiny(images):  # a 5 px "face" on a 240 px tall frame
        return [[face(10.0, size=5.0)] for _ in images]

    clock = Clock()
    found = list(FaceFinder(tiny).video(frames(3), 2, 10.0, redetect_s=0, clock=clock))
    assert [f.faces for f, _ in found] == [[], [], []] and clock.checks == 3
    whole = list(FaceFinder().video(frames(3), 2, 10.0, redetect_s=1.0))
    assert [f.faces for f, _ in whole] == [[whole_face(400, 240)]] * 3  # every frame, no gaps


# --------------------------------------------------------------------------- score


def test_score_crops_checks_the_scores():
    assert score_crops(brightness, []).shape == (0,)
    crops = [np.full((CROP_SIZE, CROP_SIZE, 3), v, np.uint8) for v in (0, 255)]
    np.testing.assert_allclose(score_crops(brightness, crops), [0.0, 1.0])
    with pytest.raises(MesonetError, match="non-finite"):
        score_crops(lambda batch: np.full(len(batch), np.nan, np.float32), crops)


def found_frames(faces_per_frame: list[int]) -> list[tuple[FrameFaces, list[np.ndarray]]]:
    """Frames with that many faces each; crop ``k`` overall is a flat grey of level ``k``."""
    out, level = [], 0
    for index, count in enumerate(faces_per_frame):
        crops = [np.full((8, 8, 3), level + k, np.uint8) for k in range(count)]
        out.append((FrameFaces(index, index / 10, [face(0.0)] * count), crops))
        level += count
    return out


def test_score_all_gives_each_frame_its_faces_scores():
    frames = score_all(found_frames([2, 0, 1]), brightness)
    assert [f.index for f in frames] == [0, 1, 2]
    assert [len(f.scores) for f in frames] == [2, 0, 1]
    assert [s for f in frames for s in f.scores] == pytest.approx([0.0, 1 / 255, 2 / 255])


def test_score_stream_scores_a_batch_at_a_time_as_score_all_does():
    sizes: list[int] = []

    def counting(batch):
        sizes.append(len(batch))
        return brightness(batch)

    streamed = score_stream(iter(found_frames([1, 1, 2, 0, 1])), counting, batch_size=2)
    assert sizes == [2, 2, 1]  # flushed as a batch fills, the rest at the end
    at_once = score_all(found_frames([1, 1, 2, 0, 1]), brightness)
    assert [f.scores for f in streamed] == [f.scores for f in at_once]


def test_to_batch_is_float_channels_last_in_unit_range():
    batch = to_batch([np.full((4, 4, 3), 255, np.uint8), np.zeros((4, 4, 3), np.uint8)])
    assert batch.shape == (2, 3, 4, 4) and batch.dtype == torch.float32
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert batch[0].min() == 1.0 and batch[1].max() == 0.0


# --------------------------------------------------------------------------- records


def test_image_record_is_decided_by_the_most_suspicious_face():
    frame = FrameFaces(0, 0.0, [face(0.0, confidence=0.912345), face(200.0)], [0.2, 0.7])
    result = records(image_rule="max").image(Path("a.jpg"), frame)
    assert (result.status, result.kind, result.model) == ("ok", "image", "m")
    assert result.fake_probability == 0.7 and result.label == "fake"
    assert result.verdict == "likely forged"
    assert [f.fake_probability for f in result.faces] == [0.7, 0.2]
    assert result.faces[1].confidence == 0.9123
    whole = records(detected=False, threshold=0.8, image_rule="max").image(Path("a.jpg"), frame)
    assert whole.label == "real" and whole.faces[0].confidence is None
    empty = records().image(Path("b.jpg"), FrameFaces(0, 0.0, []))
    assert empty.status == "no_face" and empty.fake_probability is None


def test_labels_and_verdicts_use_the_threshold_or_the_rules_own_cut():
    bands = {"uncertain": [0.4, 0.6]}
    assert [records(bands=bands).verdict(p) for p in (0.3, 0.5, 0.7)] == [
        "likely real",
        "uncertain",
        "likely forged",
    ]
    strict = records(threshold=0.9, card_threshold=0.5, bands=bands)
    assert (strict.label(0.6), strict.label(0.6, "vote"), strict.label(0.95)) == (
        "real",
        "fake",  # a vote share is cut at one half
        "fake",
    )
    for p in (0.3, 0.55, 0.7, 0.95):  # the bands move with the cut
        assert strict.verdict(p) == verdict_for(p, 0.9, bands, 0.5)
        assert strict.verdict(p, "vote") == verdict_for(p, 0.5, bands, 0.5)


def test_video_record_links_tracks_and_flags_segments():
    analysed = [
        FrameFaces(i, i / 2, [face(100.0 + 2 * i)], [0.9 if i < 3 else 0.1]) for i in range(6)
    ]
    info = VideoInfo(frame_count=60, fps=20.0, duration_s=3.0, width=640, height=480)
    result = records(aggregate="vote").video(Path("c.mp4"), info, list(range(6)), analysed)
    assert result.status == "ok" and result.frames_analyzed == 6 and result.duration_s == 3.0
    assert [f.frame for f in result.faces] == list(range(6))
    assert len({f.track for f in result.faces}) == 1
    (track,) = result.tracks
    assert track.decisive and track.fake_probability == 0.5  # half the frames voted fake
    assert result.label == "fake" and result.aggregation == "vote"
    assert [(s.start_s, s.end_s) for s in result.segments] == [(0.0, 1.25)]
    nobody = records().video(Path("d.mp4"), info, [0], [FrameFaces(0, 0.0, [])])
    assert nobody.status == "no_face" and nobody.tracks == [] and nobody.frames_analyzed == 1


def test_error_records_are_one_line():
    media = error_record(Path("x.jpg"), "image", MediaError("file\n  is empty"), "m")
    assert (media.status, media.kind, media.error) == ("error", "image", "file is empty")
    odd = error_record(Path("x.bin"), None, KeyError("frame"), "m")
    assert odd.kind is None and odd.error == "could not process the file (KeyError: 'frame')"


def test_card_thresholds_and_the_model_label():
    card = ModelCard(name="meso4.x", arch="meso4", threshold=0.3)
    chosen, card_threshold, bands = card_thresholds(card)
    assert (chosen, card_threshold) == (0.3, 0.3) and bands["uncertain"][0] < 0.3
    assert card_thresholds(card, 0.6)[:2] == (0.6, 0.3)
    assert card_thresholds(None)[:2] == (0.5, 0.5)
    with pytest.raises(MesonetError, match="threshold must be between 0 and 1"):
        card_thresholds(card, 1.5)
    model = create_model("meso4")
    assert model_label(model) == "Meso4"
    model.card, model.unverified = card, True
    assert model_label(model) == "meso4.x (unverified)"


# --------------------------------------------------------------------------- analysis


@pytest.fixture(scope="module")
def detector() -> Detector:
    torch.manual_seed(0)
    return Detector(create_model("meso4"), faces="none", backend="torch", frames=3)


def test_analysis_follows_the_detectors_settings_of_the_moment(detector, wide_image):
    worker = copy.copy(detector)  # as the web service overrides settings per request
    worker.threshold, worker.frames = 0.0, 2
    ours, theirs = Analysis.of(worker), Analysis.of(detector)
    assert ours.records.threshold == 0.0 and ours.frames == 2
    assert theirs.records.threshold == detector.threshold and theirs.frames == 3
    assert ours.crop_on_load and ours.finder.detect is None
    image, _ = load_image(wide_image)
    assert ours.image(wide_image, image).label == "fake"
    assert worker.predict(wide_image).label == "fake"


def test_analysis_of_a_batch_keeps_errors_in_place_and_retries_when_it_fails(
    detector, wide_image, tmp_path
):
    analysis = Analysis.of(detector)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    paths = [wide_image, broken, wide_image]
    batch = ImageBatch(paths, [guarded(analysis.load)(p) for p in paths])
    results = analysis.images(batch, retry=detector.predict)
    assert [r.status for r in results] == ["ok", "error", "ok"]
    assert results[0].faces[0].box == [0.0, 0.0, 300.0, 200.0]  # source pixels, not the crop
    alone = detector.predict(wide_image)
    assert results[0].fake_probability == pytest.approx(alone.fake_probability, abs=1e-5)

    retried = []

    def retry(path, kind):
        retried.append((path, kind))
        return alone

    def out_of_memory(batch):
        raise RuntimeError("out of memory")

    failing = dataclasses.replace(analysis, scorer=out_of_memory)
    assert failing.images(batch, retry) == [alone, results[1], alone]
    assert retried == [(wide_image, "image")] * 2  # each readable image again, alone


def test_analysis_of_a_video_scores_every_sampled_frame(detector, tmp_path):
    path = make_video(tmp_path / "grey.mp4", 12, fps=10.0)
    result = Analysis.of(detector).video(path)
    assert result.status == "ok" and result.kind == "video" and result.frames_analyzed == 3
    assert [f.box for f in result.faces] == [[0.0, 0.0, 64.0, 48.0]] * 3
    assert result.to_dict() == detector.predict(path).to_dict()
