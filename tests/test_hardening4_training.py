"""Hardening 4 (issue 34), training: train-video keeps runs and checks its frame model by
digest (items 5, 6), the video-faces cache and the clip banks are checked when read and
remade when damaged, bad learning rates and outputs are refused up front (item 9), and a
training folder's missing parents are created (item 11)."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mesonet.destinations import OutputError
from mesonet.faces.detector import Face
from mesonet.models import ModelCard, create_model, load_model, save_model
from mesonet.models.card import tensors_sha256
from mesonet.training.errors import TrainingError
from mesonet.training.video_train import VideoTrainConfig, train_video
from mesonet.training.videos import cached_faces, entry_path, store_crops
from tests.conftest import make_video

torch.set_num_threads(1)


# --------------------------------------------------------------------------- a clip folder


def _clip_folder(root: Path, cache: Path, clips: int = 8) -> Path:
    """``clips`` small videos (real and fake alternately, two per identity) whose faces are
    already in ``cache`` (10 crops each, 7 windows of 4: no detector runs)."""
    data = root / "clips"
    rng = np.random.default_rng(0)
    rows = ["path,label,method,identities,frames"]
    for i in range(clips):
        label = "fake" if i % 2 else "real"
        (data / label).mkdir(parents=True, exist_ok=True)
        video = make_video(data / label / f"c{i}.mp4", 2, size=(32, 32))
        rows.append(f"clips/{label}/c{i}.mp4,{label},x,{100 + i // 2},32")
        face = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # small: quick to code
        crops = [(k, np.roll(face, k * (1 + i % 2), axis=1)) for k in range(10)]
        store_crops(entry_path(video, 32, cache / "video-faces"), crops, 32)
    (data / "manifest.csv").write_text("\n".join(rows) + "\n")
    return data


def _frame_model(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    save_model(create_model("meso4"), path, ModelCard(name=f"meso4.frame{seed}", arch="meso4"))
    return path


@pytest.fixture
def clip_run(tmp_path, monkeypatch):
    """A clip folder with cached faces, two frame models, and a config for a short run."""
    monkeypatch.setenv("MESONET_CACHE", str(tmp_path / "cache"))
    data = _clip_folder(tmp_path, tmp_path / "cache")
    fm_a = _frame_model(tmp_path / "fmA.safetensors", 1)
    fm_b = _frame_model(tmp_path / "fmB.safetensors", 2)
    config = VideoTrainConfig(
        data=str(data), out=str(tmp_path / "runs" / "tv"), frame_model=str(fm_a),
        frames=4, augmented=0, blended=1, epochs=1, steps=1, batch_size=4, val_fraction=0.3,
    )  # fmt: skip
    return config, fm_a, fm_b


def _frame_digest(path: Path) -> str:
    return tensors_sha256(load_model(path).state_dict())


# --------------------------------------------------------------------------- items 5 and 6


@pytest.mark.slow  # train-video runs: seconds each
def test_train_video_uses_a_new_frame_model_not_the_copy_of_the_old_one(clip_run):
    config, fm_a, fm_b = clip_run
    first = load_model(train_video(config, "first", log=lambda _: None))
    assert first.card.sequence["frame_model"]["sha256"] == _frame_digest(fm_a)
    config.frame_model = str(fm_b)
    second = load_model(train_video(config, "second", log=lambda _: None, force=True))
    recorded = second.card.sequence["frame_model"]
    assert recorded["name"] == "meso4.frame2" and recorded["sha256"] == _frame_digest(fm_b)
    assert tensors_sha256(second.frame.state_dict()) == _frame_digest(fm_b)
    saved = torch.load(Path(config.out) / "last.pt", weights_only=True)
    assert saved["frame_model"]["sha256"] == _frame_digest(fm_b)


@pytest.mark.slow  # train-video runs: seconds each
def test_train_video_refuses_to_resume_over_another_frame_model(clip_run):
    config, _, fm_b = clip_run
    train_video(config, "first", log=lambda _: None)
    config.frame_model, config.epochs = str(fm_b), 2
    with pytest.raises(TrainingError, match="trained over the frame model meso4.frame1"):
        train_video(config, "resumed", log=lambda _: None, resume=True)


def test_train_video_refuses_a_folder_holding_a_run_without_force_or_resume(clip_run):
    config, _, _ = clip_run
    train_video(config, "first", log=lambda _: None)
    out = Path(config.out)
    before = {name: (out / name).read_bytes() for name in ("best.safetensors", "last.pt")}
    with pytest.raises(TrainingError, match="already holds a training run.*--resume.*--force"):
        train_video(config, "again", log=lambda _: None)
    assert {name: (out / name).read_bytes() for name in before} == before  # untouched
    result = CliRunner().invoke(
        _app(), ["train-video", config.data, "-o", config.out, "--frame-model", config.frame_model]
    )
    assert result.exit_code == 2 and "already holds a training run" in _flat(result.output)
    lines: list[str] = []
    config.epochs = 2
    train_video(config, "resumed", log=lines.append, resume=True)
    assert [line.split(":")[0] for line in lines if line.startswith("epoch")] == ["epoch 2"]


def test_train_video_resume_without_a_checkpoint_is_refused(clip_run):
    config, _, _ = clip_run
    with pytest.raises(TrainingError, match="no checkpoint to resume from"):
        train_video(config, "resumed", log=lambda _: None, resume=True)


def _flat(output: str) -> str:
    """A CLI message as one line (without the box rich draws around usage errors)."""
    return " ".join(output.replace("│", " ").split())


def _app():
    from mesonet.cli import app

    return app


# --------------------------------------------------------------------------- item 9: caches


class _BoxDetector:
    """Finds one face in the middle of every frame (counting its calls), optionally slowly."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.calls = delay, 0
        self.lock = threading.Lock()

    def detect(self, images):
        with self.lock:
            self.calls += 1
        time.sleep(self.delay)
        faces = []
        for image in images:
            h, w = image.shape[:2]
            s = min(h, w) * 0.6
            x, y = (w - s) / 2, (h - s) / 2
            at = ((0.3, 0.35), (0.7, 0.35), (0.5, 0.55), (0.35, 0.75), (0.65, 0.75))
            marks = tuple((x + a * s, y + b * s) for a, b in at)
            faces.append([Face((x, y, s, s), marks, 0.99)])
        return faces


def _two_videos(root: Path) -> Path:
    for label, level in (("real", 60), ("fake", 180)):
        (root / "v" / label).mkdir(parents=True)
        frames = [np.full((64, 64, 3), level + i, np.uint8) for i in range(6)]
        make_video(root / "v" / label / f"{label}.mp4", frames)
    return root / "v"


def test_a_clip_entry_missing_its_done_json_is_remade(tmp_path):
    data, cache = _two_videos(tmp_path), tmp_path / "cache"
    samples, _ = cached_faces(data, frames=4, cache=cache, detector=_BoxDetector())
    entry = samples[0].path.parent
    (entry / "done.json").unlink()
    warnings: list[str] = []
    detector = _BoxDetector()
    again, _ = cached_faces(data, frames=4, cache=cache, detector=detector, warn=warnings.append)
    assert [s.path for s in again] == [s.path for s in samples]
    assert detector.calls == 1 and (entry / "done.json").is_file()
    assert len(warnings) == 1 and "damaged: remade" in warnings[0]
    assert not [p for p in entry.parent.iterdir() if p.name.endswith((".tmp", ".old"))]


def test_a_junk_cached_crop_is_found_by_its_digest_and_remade(tmp_path):
    from mesonet.training.clips import video_clips

    data, cache = _two_videos(tmp_path), tmp_path / "cache"
    samples, _ = cached_faces(data, frames=4, cache=cache, detector=_BoxDetector())
    good = samples[1].path.read_bytes()
    samples[1].path.write_bytes(b"junk" * 100)
    warnings: list[str] = []
    train, _ = video_clips(data, 0, 0, frames=4, cache=cache, detector=_BoxDetector(),
                           warn=warnings.append)  # fmt: skip
    assert samples[1].path.read_bytes() == good and len(warnings) == 1
    assert all(len(c.load()) == len(c.paths) for c in train)  # every crop decodes


def test_two_runs_at_once_on_an_empty_cache_make_each_clip_once(tmp_path):
    data, cache = _two_videos(tmp_path), tmp_path / "cache"
    detector, found, failed = _BoxDetector(delay=0.3), [], []

    def run() -> None:
        try:
            found.append(cached_faces(data, frames=4, cache=cache, detector=detector)[0])
        except Exception as exc:  # the test reports it below
            failed.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failed and len(found) == 2
    assert [s.path for s in found[0]] == [s.path for s in found[1]]
    assert detector.calls == 2  # one per clip, not one per clip per run


@pytest.mark.slow  # train-video runs: seconds each
def test_a_junk_clip_bank_is_found_by_its_digest_and_remade(clip_run):
    config, _, _ = clip_run
    train_video(config, "first", log=lambda _: None)
    bank = Path(config.out) / "bank-train.pt"
    made = bank.read_bytes()
    bank.write_bytes(b"junk" * 1000)
    lines: list[str] = []
    train_video(config, "again", log=lines.append, force=True)
    assert any("bank-train.pt does not match its digest" in line for line in lines)
    assert (
        torch.load(bank, weights_only=True)["key"]
        == torch.load(_write(tmp := bank.with_name("made.pt"), made), weights_only=True)["key"]
    )
    tmp.unlink()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.slow  # train-video runs: seconds each
def test_a_junk_checkpoint_with_resume_is_one_line(clip_run):
    config, _, _ = clip_run
    train_video(config, "first", log=lambda _: None)
    (Path(config.out) / "last.pt").write_bytes(b"\x80\x02junk" * 50)
    with pytest.raises(TrainingError, match=r"last.pt: damaged, or not a PyTorch file"):
        train_video(config, "resumed", log=lambda _: None, resume=True)
    torch.save({"model": {}, "optimizer": {}}, Path(config.out) / "last.pt")
    with pytest.raises(TrainingError, match="not a train-video checkpoint"):
        train_video(config, "resumed", log=lambda _: None, resume=True)


def test_train_video_onto_an_existing_file_is_refused(clip_run):
    config, _, _ = clip_run
    Path(config.out).parent.mkdir(parents=True)
    Path(config.out).write_text("a file")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        train_video(config, "x", log=lambda _: None)


@pytest.mark.parametrize("lr", [math.nan, 1e300, 1e30, math.inf, 0.0, -1e-3])
def test_train_video_refuses_a_bad_learning_rate_before_any_data_work(tmp_path, monkeypatch, lr):
    import mesonet.training.video_train as video_train

    def no_data(*args, **kwargs):
        raise AssertionError("data read before the options were checked")

    monkeypatch.setattr(video_train, "video_clips", no_data)
    config = VideoTrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), lr=lr,
                              frame_model="meso4.dfdc")  # fmt: skip
    with pytest.raises(TrainingError, match="lr must be"):
        train_video(config, "x", log=lambda _: None)
    assert not (tmp_path / "run").exists()
    result = CliRunner().invoke(
        _app(),
        ["train-video", str(tmp_path), "-o", str(tmp_path / "run"), "--lr", str(lr),
         "--frame-model", "meso4.dfdc"],
    )  # fmt: skip
    assert result.exit_code == 2 and "lr must be" in _flat(result.output)


@pytest.mark.parametrize("lr", [1e300, 1e30, 2.0])
def test_train_refuses_a_learning_rate_above_1(lr):
    from mesonet.training import TrainConfig

    with pytest.raises(TrainingError, match="lr must be at most 1"):
        TrainConfig(lr=lr)


# --------------------------------------------------------------------------- item 11


def test_a_training_folder_s_missing_parents_are_created(tmp_path):
    from mesonet.training.loop import check_run_folder

    out = tmp_path / "runs" / "deep" / "smoke"
    check_run_folder(out)  # no error: made as the run starts
    assert not (tmp_path / "runs").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_run_folder(tmp_path / "file" / "a" / "b")
