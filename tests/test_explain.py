"""Evidence maps (mesonet.explain, mesonet.pipeline.explain): they point where the model
looks, through the scoring engine, in the records of predict and the API; --explain refuses
unsafe folders like every other output."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mesonet.explain import Occlusion, face_region, inside_face, overlay
from mesonet.pipeline.explain import MAX_DATA_URL, MAX_FACES, VIDEO_FACES

PATCH = (160, 224, 32, 96)  # x0, x1, y0, y1 in the 256 px crop: what the model looks at


class PatchModel(nn.Module):
    """Fake probability from the fine texture of one known patch of the crop, nothing else."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x0, x1, y0, y1 = PATCH
        detail = (x - F.avg_pool2d(x, 3, stride=1, padding=1)).abs()
        return 40 * detail[:, :, y0:y1, x0:x1].mean(dim=(1, 2, 3)) - 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def noise(height: int = 256, width: int = 256, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def in_patch(point, scale=(1.0, 1.0)) -> bool:
    x0, x1, y0, y1 = PATCH
    x, y = point[0] / scale[0], point[1] / scale[1]
    return x0 <= x <= x1 and y0 <= y <= y1


def noise_png(tmp_path: Path) -> Path:
    """A 512 x 384 noise picture at ``in/noise.png`` (the patch model's crop, stretched)."""
    path = tmp_path / "in" / "noise.png"
    path.parent.mkdir()
    cv2.imwrite(str(path), cv2.resize(noise(), (512, 384), interpolation=cv2.INTER_NEAREST))
    return path


def face_clip(tmp_path: Path) -> Path:
    """A 1 s clip of a packaged sample face sliding across a black frame."""
    from conftest import make_video

    from mesonet.inputs import sample_paths

    face = cv2.cvtColor(cv2.imread(str(sample_paths()[-1])), cv2.COLOR_BGR2RGB)
    frames = [
        cv2.copyMakeBorder(face, 40, 41, 60 + 2 * i, 61 - 2 * i, cv2.BORDER_CONSTANT)
        for i in range(10)
    ]
    return make_video(tmp_path / "clip.mp4", frames, fps=10.0)


@pytest.fixture(scope="module")
def patch_scorer():
    from mesonet.scoring import create_model_scorer

    return create_model_scorer(PatchModel().eval(), backend="openvino")


@pytest.mark.parametrize("fill", ["blur", "grey"])
def test_the_map_peaks_on_the_patch_the_model_looks_at(patch_scorer, fill):
    calls = []

    def logits(batch):
        calls.append(len(batch))
        return patch_scorer.logits(batch)

    occlusion = Occlusion(fill=fill)
    evidence = occlusion.map(logits, noise())
    assert calls == [occlusion.batch_size]  # one batched pass through the engine
    assert in_patch(evidence.peak)
    assert evidence.strength > 0.5
    # outside the patch, hiding anything changes nothing
    x0, x1, y0, y1 = (v // 32 for v in PATCH)
    far = np.delete(np.delete(evidence.cells, range(y0 - 1, y1 + 1), 0), range(x0 - 1, x1 + 1), 1)
    assert np.abs(far).max() < 1e-3


def test_face_regions_are_named_from_the_landmarks():
    landmarks = np.array([(96, 100), (160, 100), (128, 130), (104, 160), (152, 160)])
    named = {
        (128, 160): "mouth",
        (128, 100): "eyes",
        (96, 100): "left eye",
        (160, 104): "right eye",
        (128, 133): "nose",
        (80, 170): "left jaw",
        (176, 170): "right jaw",
        (128, 60): "forehead",
        (128, 40): "outside the face",
        (20, 130): "outside the face",
    }
    for point, name in named.items():
        assert face_region(point, landmarks) == name, point
    assert face_region((128, 128), np.zeros((0, 2))) is None  # no landmarks: no name
    assert inside_face(0.0, 0.5) and not inside_face(1.5, 0.5)


def test_overlay_is_the_crop_where_there_is_no_evidence():
    crop = noise()
    cells = np.zeros((8, 8))
    cells[2, 5] = 2.0
    from mesonet.explain import EvidenceMap

    picture = overlay(crop, EvidenceMap(cells, 0.0))
    assert picture.shape == crop.shape and picture.dtype == np.uint8
    assert np.array_equal(picture[200:, :100], crop[200:, :100])
    assert not np.array_equal(picture[64:96, 160:192], crop[64:96, 160:192])


def test_predict_writes_maps_whose_peak_is_the_patch_in_source_pixels(tmp_path):
    from mesonet.pipeline import Detector

    path = noise_png(tmp_path)
    out = tmp_path / "maps"
    detector = Detector(PatchModel(), faces="none", backend="openvino", explain=out)
    record = detector.predict(path).to_dict()
    (face,) = record["faces"]
    explain = face["explain"]
    assert set(explain) == {"map", "peak_region", "peak", "peak_logit_drop"}
    assert explain["map"] == str(out / "in_noise.png.evidence0.png")
    assert cv2.imread(explain["map"]).shape == (256, 256, 3)
    assert explain["peak_region"] is None  # --faces none: no landmarks
    assert in_patch(explain["peak"], scale=(512 / 256, 384 / 256))
    assert explain["peak_logit_drop"] > 0.5
    # without --explain the record is as before
    assert "explain" not in Detector(PatchModel(), faces="none").predict(path).to_dict()["faces"][0]


def test_video_maps_are_the_deciding_tracks_most_suspicious_frames(tmp_path):
    from mesonet.pipeline import Detector

    video = face_clip(tmp_path)
    out = tmp_path / "maps"
    result = Detector(PatchModel(), frames=6, backend="openvino", explain=out).predict(video)
    assert result.status == "ok", result.error
    explained = [f for f in result.faces if f.explain is not None]
    assert len(explained) == min(VIDEO_FACES, len(result.faces))
    decisive = result.decisive_track.id
    assert all(f.track == decisive for f in explained)
    deciding = sorted((f.fake_probability for f in result.deciding_faces()), reverse=True)
    assert sorted((f.fake_probability for f in explained), reverse=True) == deciding[:VIDEO_FACES]
    for rank, f in enumerate(sorted(explained, key=lambda f: -f.fake_probability)):
        assert Path(f.explain["map"]).name == f"{tmp_path.name}_clip.mp4.evidence{rank}.png"
        assert Path(f.explain["map"]).is_file()
        assert isinstance(f.explain["peak_region"], str)  # MTCNN's landmarks name it


def test_annotated_copies_draw_the_map_over_the_face_it_explains(tmp_path):
    from mesonet.pipeline import Detector

    path = noise_png(tmp_path)
    copies = {}
    for explain in (None, tmp_path / "maps"):
        out = tmp_path / f"annotated-{explain is not None}"
        Detector(
            PatchModel(), faces="none", backend="openvino", explain=explain, annotate_dir=out
        ).predict(path)
        (copy,) = out.glob("*.annotated.jpg")
        copies[explain is not None] = cv2.imread(str(copy)).astype(int)
    changed = np.abs(copies[True] - copies[False]).sum(axis=2) > 24
    ys, xs = np.nonzero(changed)
    # drawn where the patch is in the picture (x 320-448, y 48-144), nowhere beyond the
    # cells next to it (a cell is 64 x 48 px there; patches of two cells overlap them)
    assert changed[48:144, 320:448].mean() > 0.5
    assert xs.min() >= 320 - 2 * 64 and xs.max() <= 448 + 2 * 64
    assert ys.max() <= 144 + 2 * 48


def test_annotated_videos_hold_the_frames_whose_map_they_draw(tmp_path):
    import av

    from mesonet.annotate import HOLD_S
    from mesonet.pipeline import Detector

    video = face_clip(tmp_path)
    counts = {}
    for explain in (None, tmp_path / "maps"):
        out = tmp_path / f"annotated-{explain is not None}"
        detector = Detector(
            PatchModel(), frames=6, backend="openvino", explain=explain, annotate_dir=out
        )
        result = detector.predict(video)
        assert result.status == "ok", result.error
        (copy,) = out.glob("*.annotated.mp4")
        with av.open(str(copy)) as container:
            counts[explain is not None] = sum(1 for _ in container.decode(video=0))
    explained = sum(f.explain is not None for f in result.faces)
    assert explained >= 1
    assert counts[True] == counts[False] + explained * (round(4.0 * HOLD_S) - 1)


# --------------------------------------------------------------------------- the CLI


def cli(argv, monkeypatch, capsys):
    from mesonet.cli import main

    monkeypatch.setattr(sys, "argv", ["mesonet", *map(str, argv)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture
def crops(tmp_path) -> Path:
    folder = tmp_path / "crops"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(folder / name), noise(seed=len(name)))
    return folder


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    from mesonet.models import ModelCard, create_model, save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "meso4.ex.safetensors"
    save_model(create_model("meso4"), path, ModelCard(name="meso4.ex", arch="meso4"))
    return path


def test_cli_explain_writes_maps_and_gives_their_paths(crops, model_path, monkeypatch, capsys):
    out = crops.parent / "maps"
    argv = ["predict", crops, "-m", model_path, "--faces", "none", "-f", "json", "--explain", out]
    code, stdout, _ = cli(argv, monkeypatch, capsys)
    assert code == 0
    records = json.loads(stdout)
    maps = [r["faces"][0]["explain"]["map"] for r in records]
    assert sorted(Path(m).name for m in maps) == [
        "crops_a.png.evidence0.png",
        "crops_b.png.evidence0.png",
    ]
    assert all(Path(m).is_file() for m in maps)
    code, stdout, stderr = cli(argv[:-4] + ["--explain", out], monkeypatch, capsys)  # a table
    assert code == 0 and "crops" in stdout
    assert f"evidence maps in {out}/" in stderr and "peak region" in stderr


@pytest.mark.parametrize("unsafe", ["file", "link", "fifo", "map-link", "input"])
def test_cli_explain_refuses_an_unsafe_folder_before_any_work(
    unsafe, crops, model_path, monkeypatch, capsys
):
    out = crops.parent / "maps"
    outside = crops.parent / "outside.png"
    outside.write_bytes(b"not yours")
    if unsafe == "file":
        out.write_text("x")
        words = ["not a folder"]
    elif unsafe == "link":
        real = crops.parent / "real-maps"
        real.mkdir()
        out.symlink_to(real)
        words = ["symbolic link"]
    elif unsafe == "fifo":
        out.mkdir()
        os.mkfifo(out / "crops_a.png.evidence0.png")
        words = ["crops_a.png.evidence0.png", "not a regular file"]
    elif unsafe == "map-link":
        out.mkdir()
        (out / "crops_b.png.evidence0.png").symlink_to(outside)
        words = ["crops_b.png.evidence0.png", "symbolic link"]
    else:
        out = crops
        words = ["one of this run's inputs"]
    argv = ["predict", crops, "-m", model_path, "--faces", "none", "--explain", out]
    code, stdout, stderr = cli(argv, monkeypatch, capsys)
    lines = stderr.strip().splitlines()
    assert code == 2 and stdout == "", (stdout, stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert outside.read_bytes() == b"not yours"
    assert not list(crops.parent.rglob("*.evidence0.png")) or unsafe in ("fifo", "map-link")


# --------------------------------------------------------------------------- the API


def test_api_explain_true_returns_maps_within_the_size_limits(served_model, face_media, tmp_path):
    testclient = pytest.importorskip("fastapi.testclient")
    from mesonet.serve import create_app

    with testclient.TestClient(create_app(served_model, tmp_dir=tmp_path / "up")) as client:
        for key in ("image", "video"):
            path = face_media[key]
            with path.open("rb") as handle:
                response = client.post(
                    "/api/v1/detect",
                    files={"file": (path.name, handle)},
                    data={"explain": "true", "frames": "6"},
                )
            assert response.status_code == 200, response.text
            record = response.json()
            explained = [f for f in record["faces"] if "explain" in f]
            assert 1 <= len(explained) <= (MAX_FACES if key == "image" else VIDEO_FACES)
            for face in explained:
                url = face["explain"]["map"]
                assert url.startswith("data:image/png;base64,") and len(url) <= MAX_DATA_URL
                png = base64.b64decode(url.split(",", 1)[1])
                picture = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
                assert picture.shape[0] == picture.shape[1] >= 64
                assert isinstance(face["explain"]["peak_region"], str)
        with face_media["image"].open("rb") as handle:
            plain = client.post("/api/v1/detect", files={"file": ("f.jpg", handle)}).json()
        assert all("explain" not in f for f in plain["faces"])
        with face_media["image"].open("rb") as handle:
            bad = client.post(
                "/api/v1/detect", files={"file": ("f.jpg", handle)}, data={"explain": "maybe"}
            )
        assert bad.status_code == 422 and "explain" in bad.json()["detail"]


# --------------------------------------------------------------------------- measured


@pytest.mark.slow  # 80 maps of the default: minutes on 2 cores
def test_maps_of_self_blended_fakes_peak_inside_the_blend_mask():
    """The docs' figure, on the first 40 dfdc-faces test reals made self-blended (seeded):
    the default's maps peak inside the blend mask far more often than a point drawn at random
    over the crop, and on the real faces rarely outside the face (docs/explain.md)."""
    import importlib.util

    from conftest import _shared_path

    folder = _shared_path("datasets", "dfdc-faces", "test", "real")
    tool = Path(__file__).resolve().parents[1] / "tools" / "explain_check.py"
    spec = importlib.util.spec_from_file_location("explain_check", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figures = module.measure(folder, limit=40)
    assert figures["faces"] >= 35
    fake, real = figures["fake"], figures["real"]
    assert fake["peak_in_mask"] >= 0.70, figures
    assert fake["peak_in_mask"] >= fake["uniform_point"] + 0.1, figures
    assert fake["peak_in_mask"] > fake["random_map"] + 0.3, figures
    assert real["peak_outside_face"] <= 0.2, figures


def test_maps_come_with_a_video_model_too(tmp_path):
    """With a video model (the temporal path of the analysis), the deciding track's most
    suspicious frames are explained as without one."""
    import test_video_model as tvm
    from conftest import make_video

    from mesonet.models import save_model

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(30):
        frame = np.full((240, 320, 3), 60, np.uint8)
        frame[60:170, 30:140] = rng.integers(0, 256, (110, 110, 3), dtype=np.uint8)
        frames.append(frame)
    video = make_video(tmp_path / "clip.mp4", frames, fps=10.0)
    head, card = tvm._meso_head()
    save_model(head, tmp_path / "temporal_conv.test.safetensors", card)
    detector = tvm._detector(tmp_path / "temporal_conv.test.safetensors")
    detector.explain = tmp_path / "maps"
    result = detector.predict(video)
    assert result.status == "ok" and result.video_model == "temporal_conv.test", result.error
    explained = [f for f in result.faces if f.explain is not None]
    assert len(explained) == VIDEO_FACES
    assert {f.track for f in explained} == {result.decisive_track.id}
    assert all(Path(f.explain["map"]).is_file() for f in explained)
    assert all(f.explain["peak_region"] is None for f in explained)  # no landmarks given
