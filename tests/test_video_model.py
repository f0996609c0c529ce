"""The video model (issue 27): video-model cards, the window sampler, temporal self-blended
fakes, temporal evidence in video records, and the API's video model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mesonet.errors import ModelError
from mesonet.models import ModelCard, create_model, load_model, read_card, save_model
from mesonet.models.video_models import Meso4Video, TemporalConv, head_on
from mesonet.training.clips import Clip, augment_window, sample_windows, window_starts
from mesonet.training.temporal_sbi import temporal_self_blend

torch.set_num_threads(1)


# --------------------------------------------------------------------------- cards, registry


def _meso_head(frames: int = 24) -> tuple[TemporalConv, ModelCard]:
    torch.manual_seed(0)
    frame = create_model("meso4").eval()
    frame.card = ModelCard(name="meso4.frame", arch="meso4")
    head = head_on(frame, frames)
    card = ModelCard(
        name="temporal_conv.test",
        arch="temporal_conv",
        sequence={
            "frames": frames,
            "frame_step": 1,
            "frame_model": {"name": "meso4.frame", "arch": "meso4", "sha256": _digest(frame)},
        },
    )
    return head, card


def _digest(model) -> str:
    from mesonet.models.card import tensors_sha256

    return tensors_sha256(model.state_dict())


def test_video_model_cards_round_trip_and_load_like_any_model(tmp_path):
    head, card = _meso_head()
    save_model(head, tmp_path / "t.safetensors", card)
    torch.manual_seed(1)
    video = create_model("meso4video")
    video_card = ModelCard(name="meso4video.test", arch="meso4video", sequence={"frames": 24})
    save_model(video, tmp_path / "v.safetensors", video_card)

    for path, model in ((tmp_path / "t.safetensors", head), (tmp_path / "v.safetensors", video)):
        stored = read_card(path)
        assert ModelCard.from_json(stored.to_json()) == stored  # round trip
        loaded = load_model(path)
        assert loaded.card.sequence == stored.sequence and loaded.arch == stored.arch
        windows = torch.rand(2, stored.sequence["frames"], 3, 256, 256)
        assert torch.allclose(loaded(windows), model.eval()(windows), atol=1e-6)
    assert read_card(tmp_path / "v.safetensors").input_size == 128  # meso4video's CPU size
    assert isinstance(load_model(tmp_path / "v.safetensors"), Meso4Video)


@pytest.mark.parametrize(
    ("arch", "sequence", "message"),
    [
        ("meso4", {"frames": 24}, "takes images"),
        ("meso4video", {}, "needs a sequence"),
        ("meso4video", {"frames": 1}, "sequence.frames"),
        ("meso4video", {"frames": 24.0}, "sequence.frames"),
        ("meso4video", {"frames": 24, "frame_step": 0}, "frame_step"),
        ("meso4video", {"frames": 24, "fps": 30}, "unknown keys: fps"),
        ("meso4video", {"frames": 24, "frame_model": {}}, "names no frame_model"),
        ("temporal_conv", {"frames": 24}, "must name it"),
        (
            "temporal_conv",
            {"frames": 24, "frame_model": {"name": "x", "arch": "meso4video", "sha256": "0" * 64}},
            "frame_model.arch",
        ),
        (
            "temporal_conv",
            {"frames": 24, "frame_model": {"name": "x", "arch": "meso4", "sha256": "abc"}},
            "sha256",
        ),
        ("ensemble", {"frames": 24}, "takes images"),
    ],
)
def test_a_card_whose_input_description_is_inconsistent_is_refused(arch, sequence, message):
    fields = {"name": "x", "arch": arch, "sequence": sequence}
    if arch == "ensemble":
        fields["members"] = [{"model": "a", "weight": 1.0}]
    with pytest.raises(ValueError, match=message):
        ModelCard.from_json(json.dumps(fields))


def test_a_temporal_head_whose_stored_frame_model_is_not_the_named_one_is_refused(tmp_path):
    head, card = _meso_head()
    card.sequence["frame_model"]["sha256"] = "0" * 64  # names other weights
    save_model(head, tmp_path / "t.safetensors", card)
    with pytest.raises(ModelError, match="frame model stored in it is not"):
        load_model(tmp_path / "t.safetensors")


def test_the_frame_model_stays_frozen_when_the_head_trains():
    head, _ = _meso_head()
    head.train()
    assert not head.frame.training and head.head.training
    assert not any(p.requires_grad for p in head.frame.parameters())
    head.logits(torch.rand(1, 24, 3, 256, 256)).sum().backward()
    assert all(p.grad is not None for p in head.head.parameters())


# --------------------------------------------------------------------------- window sampler


def _clip(key: str, label: int, indices: list[int], folder: Path | None = None) -> Clip:
    folder = folder or Path("/nonexistent") / key
    return Clip(key, label, key, tuple(folder / f"{i:05d}.png" for i in indices), tuple(indices))


def test_the_window_sampler_gives_24_frames_of_one_track_in_order_deterministically():
    clips = [
        _clip("a.0001", 0, list(range(32))),
        _clip("b.0002", 1, [*range(0, 20), *range(22, 50)]),  # a gap: windows on each side only
        _clip("c.0003", 1, list(range(20))),  # too short: no window
    ]
    windows = sample_windows(clips, 24, per_clip=5, seed=7)
    again = sample_windows(clips, 24, per_clip=5, seed=7)
    assert [(w.clip.key, w.start) for w in windows] == [(w.clip.key, w.start) for w in again]
    other = sample_windows(clips, 24, per_clip=5, seed=8)
    assert [w.start for w in other] != [w.start for w in windows]
    assert {w.clip.key for w in windows} == {"a.0001", "b.0002"}
    for w in windows:
        assert len(w.paths) == 24 and len(w.indices) == 24
        assert all(p.parent.name == w.clip.key for p in w.paths)  # never across clips
        assert list(np.diff(w.indices)) == [1] * 23  # in order, no gap inside
    # a clip's windows do not depend on the clips around it
    alone = sample_windows(clips[1:2], 24, per_clip=5, seed=7)
    assert [w.start for w in alone] == [w.start for w in windows if w.clip.key == "b.0002"]
    assert window_starts([0, 2, 4, 6], 3, step=2) == [0, 1]


def test_a_window_is_augmented_the_same_way_on_every_frame():
    frame = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = augment_window([frame] * 6, np.random.default_rng(4), compress=0.0)
    assert all(np.array_equal(o, out[0]) for o in out)  # same input, same output: same draw
    assert not np.array_equal(out[0], frame)
    coded = augment_window([frame] * 6, np.random.default_rng(4), compress=1.0)
    assert len(coded) == 6 and coded[0].shape == frame.shape


def test_sampled_windows_of_cached_crops_load_in_order(tmp_path):
    folder = tmp_path / "clip.abcd"
    folder.mkdir()
    for i in range(30):
        cv2.imwrite(str(folder / f"{i:05d}.png"), np.full((8, 8, 3), i, np.uint8))
    (window,) = sample_windows([_clip("clip.abcd", 0, list(range(30)), folder)], 24, 1, seed=0)
    levels = [int(f[0, 0, 0]) for f in window.load()]
    assert levels == list(range(window.start, window.start + 24))


# --------------------------------------------------------------------------- temporal SBI


def test_temporal_sbi_changes_pixels_only_inside_the_mask_and_varies_across_frames():
    rng = np.random.default_rng(0)
    face = cv2.GaussianBlur(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8), (0, 0), 2)
    frames = [np.roll(face, k, axis=1) for k in range(24)]
    fakes, masks, steps = temporal_self_blend(frames, np.random.default_rng(5))
    assert len(fakes) == len(masks) == len(steps) == 24
    for frame, fake, mask in zip(frames, fakes, masks, strict=True):
        assert fake.dtype == np.uint8 and fake.shape == frame.shape
        assert np.array_equal(fake[mask <= 0], frame[mask <= 0])  # outside: untouched
        assert (mask > 0).any() and not np.array_equal(fake, frame)  # inside: blended
    # the blend drifts and jitters: colour, position, scale and opacity differ frame to frame
    vectors = np.stack([s.vector() for s in steps])
    assert (vectors.std(axis=0) > 0).all()
    assert not np.allclose(masks[0], masks[-1])
    again, _, _ = temporal_self_blend(frames, np.random.default_rng(5))
    assert all(np.array_equal(a, b) for a, b in zip(fakes, again, strict=True))


def test_self_blends_are_refused_on_anything_but_rgb_uint8():
    with pytest.raises(ValueError, match="RGB uint8"):
        temporal_self_blend([np.zeros((8, 8), np.uint8)], np.random.default_rng(0))


# --------------------------------------------------------------------------- records, API


class _Faces:
    """A stand-in face detector: a face at the left on every frame, a second face at the
    right while the frame's top-right corner is bright (the first frames only)."""

    def detect(self, images):
        from mesonet.faces import Face

        found = []
        for image in images:
            faces = [Face((30.0, 60.0, 110.0, 110.0), (), 0.99)]
            if image[:20, -20:].mean() > 128:
                faces.append(Face((180.0, 60.0, 100.0, 100.0), (), 0.98))
            found.append(faces)
        return found


class _Redness(torch.nn.Module):
    """Frame stand-in: fake probability from how much redder than green a crop is."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        p = ((x[:, 0].mean(dim=(1, 2)) - x[:, 1].mean(dim=(1, 2))) * 2 + 0.5).clamp(0.01, 0.99)
        return torch.log(p / (1 - p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


@pytest.fixture(scope="module")
def two_track_video(tmp_path_factory) -> Path:
    """40 frames at 10 fps: a face throughout, a second one in frames 0-4 only."""
    from tests.conftest import make_video

    rng = np.random.default_rng(0)
    frames = []
    for i in range(40):
        frame = np.full((240, 320, 3), 60, np.uint8)
        frame[60:170, 30:140] = rng.integers(0, 256, (110, 110, 3), dtype=np.uint8)
        if i < 5:
            frame[:20, -20:] = 255
        frames.append(frame)
    return make_video(tmp_path_factory.mktemp("two-tracks") / "clip.mp4", frames, fps=10.0)


@pytest.fixture(scope="module")
def video_model_file(tmp_path_factory) -> Path:
    head, card = _meso_head()
    path = tmp_path_factory.mktemp("video-model") / "temporal_conv.test.safetensors"
    save_model(head, path, card)
    return path


def _detector(video_model, rule: str = "mean"):
    from mesonet.pipeline import Detector

    return Detector(
        _Redness(),
        backend="torch",
        face_detector=_Faces(),
        frames=8,
        video_model=video_model,
        video_rule=rule,
        video_windows=1,
    )


def test_only_a_track_with_24_consecutive_frames_gets_temporal_probability(
    two_track_video, video_model_file
):
    result = _detector(video_model_file).predict(two_track_video)
    assert result.status == "ok", result.error
    record = result.to_dict()
    long, short = sorted(record["tracks"], key=lambda t: -t["frames"])
    assert long["frames"] >= 24 and short["frames"] < 24
    assert 0.0 <= long["temporal_probability"] <= 1.0 and long["temporal_windows"] == 1
    assert "temporal_probability" not in short and short["evidence"] == "frames"
    assert short["fake_probability"] == short["frame_probability"]  # keeps its frame score
    assert record["video_model"] == "temporal_conv.test" and record["video_rule"] == "mean"
    assert record["evidence"] in ("frames", "frames+temporal")
    # 8 evenly sampled frames and one run of 24 consecutive ones
    assert record["frames_analyzed"] == len(
        {*range(8, 32), *(int((k + 0.5) * 5) for k in range(8))}
    )


def test_the_video_rule_selects_the_evidence(two_track_video, video_model_file):
    from mesonet.errors import MesonetError
    from mesonet.pipeline import Detector

    frames_only = _detector(video_model_file, "frames").predict(two_track_video)
    temporal = _detector(video_model_file, "temporal").predict(two_track_video)
    plain = Detector(_Redness(), backend="torch", face_detector=_Faces(), frames=8)
    assert "video_model" not in plain.predict(two_track_video).to_dict()  # unchanged without
    long_f = max(frames_only.tracks, key=lambda t: t.frames)
    long_t = max(temporal.tracks, key=lambda t: t.frames)
    assert long_f.fake_probability == long_f.frame_probability and long_f.evidence == "frames"
    assert long_t.evidence == "temporal"
    # both thresholds are 0.5 (frame stand-in and video card): the temporal score as it is
    assert long_t.fake_probability == pytest.approx(long_t.temporal_probability, abs=2e-6)
    assert temporal.fake_probability == max(
        t.fake_probability for t in temporal.tracks if t.eligible
    )
    with pytest.raises(MesonetError, match="video_rule"):
        _detector(video_model_file, "max")


def test_images_are_unaffected_and_models_are_refused_in_the_wrong_place(
    video_model_file, tmp_path
):
    from mesonet.errors import MesonetError
    from mesonet.pipeline import Detector

    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.full((240, 320, 3), 90, np.uint8))
    with_video = _detector(video_model_file).predict(image).to_dict()
    assert "video_model" not in with_video and with_video["kind"] == "image"
    with pytest.raises(MesonetError, match="is a video model: give it as --video-model"):
        Detector(video_model_file)
    with pytest.raises(MesonetError, match="is an image model"):
        Detector(_Redness(), backend="torch", video_model="meso4.df")


def test_the_api_exposes_the_video_model(video_model_file, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from mesonet.inputs import sample_paths
    from mesonet.models import references
    from mesonet.serve import create_app
    from tests.conftest import make_video

    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / video_model_file.name).write_bytes(video_model_file.read_bytes())
    frame_model = tmp_path / "frame.safetensors"
    torch.manual_seed(0)
    save_model(create_model("meso4"), frame_model, ModelCard(name="meso4.frame", arch="meso4"))
    monkeypatch.setattr(references, "_weights_dir", lambda: weights)
    face = cv2.cvtColor(cv2.imread(str(sample_paths()[-1])), cv2.COLOR_BGR2RGB)
    framed = cv2.copyMakeBorder(face, 40, 41, 60, 61, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    video = make_video(tmp_path / "clip.mp4", [framed] * 30, fps=10.0)
    with TestClient(create_app(frame_model, tmp_dir=tmp_path / "up")) as client:
        listed = client.get("/api/v1/models").json()
        assert listed["video_models"] == ["temporal_conv.test"]
        with video.open("rb") as f:
            answer = client.post(
                "/api/v1/detect",
                files={"file": ("clip.mp4", f, "video/mp4")},
                data={"video_model": "temporal_conv.test", "video_rule": "temporal"},
            )
        assert answer.status_code == 200, answer.text
        record = answer.json()
        assert record["video_model"] == "temporal_conv.test"
        assert record["video_rule"] == "temporal" and record["evidence"] == "temporal"
        assert record["tracks"][0]["temporal_probability"] is not None
        with video.open("rb") as f:
            bad = client.post(
                "/api/v1/detect",
                files={"file": ("clip.mp4", f, "video/mp4")},
                data={"video_model": str(video_model_file)},  # never a path
            )
        assert bad.status_code == 422 and "bundled video model" in bad.text
        with video.open("rb") as f:  # the served detector is unchanged by that request
            plain = client.post("/api/v1/detect", files={"file": ("clip.mp4", f, "video/mp4")})
        assert "video_model" not in plain.json()


# --------------------------------------------------------------------------- training


def test_train_video_trains_a_head_on_cached_clips_and_resumes(tmp_path, monkeypatch):
    """A folder of 8 clips whose faces are already cached (no detector runs): the head
    trains, validates on clips held out by identity, and writes a loadable card."""
    from mesonet.training.video_train import VideoTrainConfig, train_video
    from mesonet.training.videos import entry_path, store_crops
    from tests.conftest import make_video

    monkeypatch.setenv("MESONET_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "clips"
    rng = np.random.default_rng(0)
    rows = ["path,label,method,identities,frames"]
    for i in range(8):
        label = "fake" if i % 2 else "real"
        (data / label).mkdir(parents=True, exist_ok=True)
        video = make_video(data / label / f"c{i}.mp4", 2, size=(32, 32))
        rows.append(f"clips/{label}/c{i}.mp4,{label},x,{100 + i // 2},32")
        face = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)  # small: quick to code
        crops = [(k, np.roll(face, k * (1 + i % 2), axis=1)) for k in range(28)]  # 5 windows
        store_crops(entry_path(video, 32, tmp_path / "cache" / "video-faces"), crops, 32)
    (data / "manifest.csv").write_text("\n".join(rows) + "\n")
    frame_model = tmp_path / "frame.safetensors"
    torch.manual_seed(0)
    save_model(create_model("meso4"), frame_model, ModelCard(name="meso4.frame", arch="meso4"))
    config = VideoTrainConfig(
        data=str(data), out=str(tmp_path / "run"), frame_model=str(frame_model),
        augmented=1, blended=1, epochs=2, steps=2, batch_size=4, val_fraction=0.3,
    )  # fmt: skip
    lines: list[str] = []
    best = train_video(config, "test", log=lines.append)
    model = load_model(best)
    assert model.arch == "temporal_conv" and model.card.sequence["frames"] == 24
    assert model.card.sequence["frame_model"]["name"] == "meso4.frame"
    assert model.card.metrics["auc"] is not None and "split" in model.card.training
    assert any("validation clips" in line for line in lines)
    config.epochs = 3
    lines.clear()
    train_video(config, "test", log=lines.append, resume=True)  # continues at epoch 3
    assert [line.split(":")[0] for line in lines if line.startswith("epoch")] == ["epoch 3"]


def test_the_page_picks_a_video_model_and_shows_both_kinds_of_evidence(tmp_path, monkeypatch):
    """Headless Chromium (skipped without it): the page lists the bundled video models apart
    from the frame models, sends the one picked, and tells the temporal evidence."""
    browser_tests = pytest.importorskip("tests.test_serve_browser")
    if not (Path(browser_tests.CHROMIUM).exists() and Path(browser_tests.CHROMEDRIVER).exists()):
        pytest.skip("chromium and chromium-driver are not installed")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from mesonet.inputs import sample_paths
    from mesonet.models import references
    from tests.conftest import make_video

    head, card = _meso_head()
    weights = tmp_path / "weights"
    save_model(head, weights / "temporal_conv.test.safetensors", card)
    torch.manual_seed(0)
    frame_card = ModelCard(name="meso4.frame", arch="meso4")
    save_model(create_model("meso4"), weights / "meso4.frame.safetensors", frame_card)
    monkeypatch.setattr(references, "_weights_dir", lambda: weights)
    face = cv2.cvtColor(cv2.imread(str(sample_paths()[-1])), cv2.COLOR_BGR2RGB)
    framed = cv2.copyMakeBorder(face, 40, 41, 60, 61, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    video = make_video(tmp_path / "clip.mp4", [framed] * 30, fps=10.0)
    server = browser_tests.server.__wrapped__(
        weights / "meso4.frame.safetensors", _Folders(tmp_path)
    )
    base = next(server)
    driver_gen = browser_tests.browser.__wrapped__(_Folders(tmp_path))
    driver = next(driver_gen)
    try:
        driver.get(base + "/")
        WebDriverWait(driver, 30).until(
            lambda d: d.find_element(By.ID, "video-picker").get_attribute("hidden") is None
        )
        frame_names = [
            o.get_attribute("value")
            for o in Select(driver.find_element(By.ID, "opt-model")).options
        ]
        assert frame_names == ["meso4.frame"]  # a video model is not a frame model
        picker = Select(driver.find_element(By.ID, "opt-video-model"))
        picker.select_by_value("temporal_conv.test")
        driver.find_element(By.ID, "file").send_keys(str(video))
        WebDriverWait(driver, 180).until(
            lambda d: "Video model" in d.find_element(By.ID, "facts").text
        )
        facts = driver.find_element(By.ID, "facts").text
        assert "temporal_conv.test, rule mean" in facts and "temporal " in facts
        # the timeline draws each scored window beside the frame scores, with a legend entry
        bars = driver.find_elements(By.CSS_SELECTOR, "#timeline svg line.window")
        assert bars and all(
            float(b.get_attribute("x2")) > float(b.get_attribute("x1")) for b in bars
        )
        classes = driver.execute_script(
            "return [...document.querySelectorAll('#timeline svg > *')]"
            ".map((e) => e.getAttribute('class') || '')"
        )
        first_track = next(i for i, c in enumerate(classes) if c.startswith("track"))
        assert classes.index("window") < first_track  # beneath the frame scores' dots
        legend = driver.find_element(By.ID, "timeline-legend").text
        n = len(bars)
        assert f"temporal ({n} window{'s' if n > 1 else ''})" in legend
    finally:
        for generator in (driver_gen, server):
            next(generator, None)


class _Folders:
    """A stand-in for pytest's tmp_path_factory (the browser module's fixtures take one)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def mktemp(self, name: str) -> Path:
        self.count += 1
        path = self.root / f"{name}-{self.count}"
        path.mkdir()
        return path
