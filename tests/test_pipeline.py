"""Prediction end to end: images, several faces, crops, videos, limits, formats, bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mesonet.cli import app
from mesonet.inputs import Limits, discover
from mesonet.models import ModelCard, create_model, save_model
from mesonet.pipeline import Detector
from mesonet.pipeline.records import image_score

FACES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mesonet-deepfake-val"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """A seeded, untrained Meso-4: scores are arbitrary but deterministic."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "meso4.test.safetensors"
    save_model(create_model("meso4"), path, ModelCard(name="meso4.test", arch="meso4"))
    return path


@pytest.fixture(scope="module")
def detector(model_path) -> Detector:
    return Detector(model_path, frames=6)


@pytest.fixture(scope="module")
def face_crops() -> list[np.ndarray]:
    """Three real face crops (RGB) from the authors' validation set."""
    if not FACES.exists():
        pytest.skip("../shared face crops not present")
    paths = sorted((FACES / "real").glob("*.jpg"))[::700][:3]
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def write_rgb(path: Path, image: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def canvas_with(faces: list[np.ndarray], size=(480, 960), offset: int = 0) -> np.ndarray:
    """A grey canvas with the faces side by side (each 200 px), shifted right by ``offset``."""
    canvas = np.full((*size, 3), 128, np.uint8)
    for i, face in enumerate(faces):
        x = 40 + offset + i * 300
        canvas[140:340, x : x + 200] = cv2.resize(face, (200, 200))
    return canvas


def make_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_image_with_several_faces_scores_each(detector, face_crops, tmp_path):
    path = write_rgb(tmp_path / "group.png", canvas_with(face_crops))
    result = detector.predict(path)
    assert result.status == "ok" and result.kind == "image"
    assert len(result.faces) == 3
    xs = sorted(f.box[0] for f in result.faces)
    for x, expected in zip(xs, (40, 340, 640), strict=True):
        assert abs(x - expected) < 60  # boxes in source pixels, one per pasted face
    assert result.fake_probability == image_score(result.faces, "weighted")  # the default rule
    assert min(f.fake_probability for f in result.faces) <= result.fake_probability
    assert result.label == ("fake" if result.fake_probability >= 0.5 else "real")


def test_no_face_is_reported_never_guessed(detector, tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    result = detector.predict(write_rgb(tmp_path / "noise.png", noise))
    assert result.status == "no_face"
    assert result.fake_probability is None and result.label is None and result.faces == []


def test_faces_none_scores_the_whole_crop(model_path, face_crops, tmp_path):
    path = write_rgb(tmp_path / "crop.jpg", face_crops[0])
    result = Detector(model_path, faces="none").predict(path)
    h, w = face_crops[0].shape[:2]
    assert result.status == "ok" and len(result.faces) == 1
    assert result.faces[0].box == [0.0, 0.0, float(w), float(h)]
    assert result.faces[0].confidence is None


def test_video_gets_tracks_aggregation_and_segments(model_path, face_crops, tmp_path):
    frames = [canvas_with(face_crops[:2], offset=2 * i) for i in range(30)]
    path = make_video(tmp_path / "clip.mp4", frames, fps=10)
    result = Detector(model_path, frames=8, threshold=0.0).predict(path)
    assert result.status == "ok" and result.kind == "video"
    assert result.frames_analyzed == 8 and result.duration_s == pytest.approx(3.0)
    assert {f.track for f in result.faces} == {0, 1}  # two people, two tracks
    assert len(result.faces) == 16
    times = sorted({f.time_s for f in result.faces})
    assert len(times) == 8 and 0 <= times[0] < times[-1] <= 3.0
    # threshold 0 flags every frame: one segment per track covering the clip
    assert len(result.segments) == 2
    assert all(0 <= s.start_s < s.end_s <= 3.0 for s in result.segments)
    record = result.to_dict()
    assert {"frames_analyzed", "duration_s", "aggregation", "segments"} <= record.keys()
    assert {"frame", "time_s", "track"} <= record["faces"][0].keys()


@pytest.mark.parametrize("rule", ["mean", "vote", "confident"])
def test_every_aggregation_gives_a_probability(model_path, face_crops, tmp_path, rule):
    path = make_video(tmp_path / "c.mp4", [canvas_with(face_crops[:1])] * 12, fps=6)
    result = Detector(model_path, frames=4, aggregate=rule).predict(path)
    assert result.aggregation == rule and 0.0 <= result.fake_probability <= 1.0


def test_fps_sampling(model_path, face_crops, tmp_path):
    path = make_video(tmp_path / "c.mp4", [canvas_with(face_crops[:1])] * 40, fps=20)
    result = Detector(model_path, fps=5).predict(path)
    assert result.frames_analyzed == 10  # 2 s at 5 frames per second


@pytest.fixture
def mixed_folder(face_crops, tmp_path) -> Path:
    folder = tmp_path / "media"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        write_rgb(folder / f"img{i}.jpg", face_crops[i])
    write_rgb(folder / "sub" / "deep.jpg", face_crops[0])
    for i in range(2):
        make_video(folder / f"vid{i}.mp4", [canvas_with(face_crops[:1])] * 6, fps=6)
    (folder / "notes.txt").write_text("not media")
    return folder


def test_limits_cap_images_and_videos_separately(mixed_folder):
    def kinds(**kw):
        items = list(discover([mixed_folder], recursive=True, limits=Limits(**kw)))
        return sorted(i.kind for i in items)

    assert kinds() == ["image"] * 4 + ["video"] * 2
    assert kinds(limit=1) == ["image", "video"]
    assert kinds(ilimit=2) == ["image"] * 2 + ["video"] * 2
    assert kinds(vlimit=1) == ["image"] * 4 + ["video"]
    assert kinds(limit=3, ilimit=1) == ["image", "video", "video"]
    flat = list(discover([mixed_folder]))
    assert all(i.path.parent == mixed_folder for i in flat)  # not recursive by default


def run_cli(args: list[str]):
    return CliRunner().invoke(app, args, catch_exceptions=False)


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv"])
def test_every_output_format(fmt, model_path, mixed_folder, tmp_path):
    out = tmp_path / f"out.{fmt}"
    args = ["predict", str(mixed_folder), "--model", str(model_path), "--frames", "3"]
    result = run_cli([*args, "--format", fmt, "--output", str(out), "--recursive"])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    if fmt == "json":
        records = json.loads(text)
    elif fmt == "jsonl":
        records = [json.loads(line) for line in text.splitlines()]
    elif fmt == "csv":
        records = list(csv.DictReader(io.StringIO(text)))
    else:
        assert "img0.jpg" in text and "vid1.mp4" in text and "threshold" in text
        return
    assert len(records) == 6
    assert {r["kind"] for r in records} == {"image", "video"}
    assert all(r["status"] == "ok" and r["model"] == "meso4.test" for r in records)
    if fmt != "csv":
        assert set(records[0]) >= {"path", "kind", "status", "fake_probability", "label", "faces"}


def test_jsonl_to_stdout_streams_one_record_per_file(model_path, mixed_folder):
    result = run_cli(["predict", str(mixed_folder), "-m", str(model_path), "-f", "jsonl"])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["path"]).name for r in lines] == [
        "img0.jpg",
        "img1.jpg",
        "img2.jpg",
        "vid0.mp4",
        "vid1.mp4",
    ]


def bad_inputs(folder: Path, face: np.ndarray) -> dict[str, Path]:
    good_jpg = cv2.imencode(".jpg", face)[1].tobytes()
    good_png = cv2.imencode(".png", face)[1].tobytes()
    files = {
        "empty.jpg": b"",
        "truncated.jpg": good_jpg[: len(good_jpg) // 3],
        "truncated.png": good_png[: len(good_png) // 3],
        "corrupt.jpg": good_jpg[:200] + bytes(range(256)) * 20,
        "text.jpg": b"hello, I am not a picture\n",
        "notes.txt": b"plain text",
        "noframes.mp4": b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths


def test_each_bad_input_gives_one_error_record_and_the_run_goes_on(
    model_path, face_crops, tmp_path
):
    paths = bad_inputs(tmp_path, face_crops[0])
    good = write_rgb(tmp_path / "good.jpg", face_crops[0])
    out = tmp_path / "out.jsonl"
    args = ["predict", *map(str, paths.values()), str(good), "-m", str(model_path)]
    result = run_cli([*args, "-f", "jsonl", "-o", str(out)])
    assert result.exit_code == 1
    records = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert records["good.jpg"]["status"] == "ok"
    for name in paths:
        record = records[name]
        assert record["status"] == "error", name
        assert (
            record["error"] and "\n" not in record["error"] and "Traceback" not in record["error"]
        )
        assert record["fake_probability"] is None
    assert records["empty.jpg"]["error"] == "file is empty"


def test_wrong_extension_is_read_by_content(detector, face_crops, tmp_path):
    png_named_mp4 = tmp_path / "really_a_png.mp4"
    png_named_mp4.write_bytes(cv2.imencode(".png", canvas_with(face_crops[:1]))[1].tobytes())
    result = detector.predict(png_named_mp4)
    assert result.kind == "image" and result.status == "ok"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_an_error_record(detector, face_crops, tmp_path):
    path = write_rgb(tmp_path / "locked.jpg", face_crops[0])
    path.chmod(0)
    result = detector.predict(path)
    assert result.status == "error" and "permission" in result.error.lower()


def test_cli_bad_model_and_usage_errors_have_no_traceback(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_text("junk")
    cmd = [sys.executable, "-m", "mesonet.cli", "predict", str(tmp_path), "--model", str(junk)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "junk.safetensors" in proc.stderr
    proc = subprocess.run(
        [*cmd[:4], "--format", "xml"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_authors_model_on_their_test_images(keras_weights, keras_images, tmp_path):
    from mesonet.keras_import import import_keras

    import_keras(keras_weights / "Meso4_DF.h5", tmp_path / "m.safetensors")
    results = list(
        Detector(tmp_path / "m.safetensors").predict_many([keras_images], recursive=True)
    )
    assert len(results) == 4
    for r in results:
        assert r.status == "ok"
        assert r.label == ("fake" if "/df/" in r.path else "real"), r.path


@pytest.mark.parametrize("command", ["predict", "evaluate", "scan"])
def test_cli_help_shows_what_defaults_mean(command):
    """Help text is shown whole: no phrase lost to rich markup (square brackets)."""
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "(default: the bundled default model)" in text
    assert "(default: the model card's threshold)" in text
