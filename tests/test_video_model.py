"""The video model (issue 27): video-model cards and the registry."""

from __future__ import annotations

import json

import pytest
import torch

from mesonet.errors import ModelError
from mesonet.models import ModelCard, create_model, load_model, read_card, save_model
from mesonet.models.video_models import Meso4Video, TemporalConv, head_on

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
