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


# --------------------------------------------------------------------------- training


def test_train_video_trains_a_head_on_cached_clips_and_resumes(tmp_path, monkeypatch):
    """A folder of 8 clips whose faces are already cached (no detector runs): the head
    trains, validates on clips held out by identity, and writes a loadable card."""
    from mesonet.training.video_train import VideoTrainConfig, train_video
    from mesonet.training.videos import CACHE_VERSION, _digest
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
        out = tmp_path / "cache" / "video-faces" / f"v{CACHE_VERSION}-f32"
        out = out / f"c{i}.{_digest(video)[:16]}"
        out.mkdir(parents=True)
        face = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)  # small: quick to code
        for k in range(28):  # 28 frames: 5 windows of 24
            cv2.imwrite(str(out / f"{k:05d}.png"), np.roll(face, k * (1 + i % 2), axis=1))
        (out / "done.json").write_text("{}")
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
