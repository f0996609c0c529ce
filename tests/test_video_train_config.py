"""`mesonet train-video` checks the name its card will carry before any work."""

from __future__ import annotations

import pytest

from mesonet.training.errors import TrainingError
from mesonet.training.video_train import VideoTrainConfig


def config(tmp_path, **kw) -> VideoTrainConfig:
    return VideoTrainConfig(data=str(tmp_path), frame_model="meso4.dfdc", **kw)


def test_the_default_name_comes_from_the_output_folder(tmp_path):
    c = config(tmp_path, out=str(tmp_path / "ffpp"))
    c.check()
    assert c.card_name() == "temporal_conv.ffpp"
    assert config(tmp_path, out=str(tmp_path / "x"), name="mine.v1").card_name() == "mine.v1"


@pytest.mark.parametrize(
    ("out", "name", "why"),
    [("run", "   ", "empty"), ("run\tx", "", "control characters"), ("run", "n" * 300, "long")],
)
def test_a_name_no_card_can_carry_is_refused_before_training(tmp_path, out, name, why):
    with pytest.raises(TrainingError, match=f"name.*{why}"):
        config(tmp_path, out=str(tmp_path / out), name=name).check()
