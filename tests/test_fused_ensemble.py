"""An ensemble on OpenVINO runs as one graph: the same logit as its members scored one by
one (to 1e-4, on real crops), in one inference call per batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mesonet.backends import available_backends
from mesonet.faces import crop_whole
from mesonet.media import read_image
from mesonet.models import create_model, load_model
from mesonet.models.card import ENSEMBLE_ARCH, ModelCard
from mesonet.models.ensemble import Ensemble
from mesonet.scoring import ModelScorer

pytestmark = pytest.mark.skipif(
    "openvino" not in available_backends(), reason="openvino not installed"
)

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "mesonet" / "samples"


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    """The packaged sample faces (two real, two forged) and their mirror images, as the
    pipeline's uint8 256 px crops."""
    images = [crop_whole(read_image(p), 256, "auto") for p in sorted(SAMPLES.rglob("*.jpg"))]
    assert len(images) == 4
    batch = np.stack(images)
    return np.concatenate([batch, np.ascontiguousarray(batch[:, :, ::-1])])


@pytest.fixture(autouse=True)
def own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MESONET_CACHE", str(tmp_path / "cache"))


def _card(name: str, temperature: float | None = None, **fields) -> ModelCard:
    calibration = {"method": "temperature", "temperature": temperature} if temperature else {}
    return ModelCard(name=name, arch=fields.pop("arch", "meso4"), calibration=calibration, **fields)


def _mixed_ensemble() -> Ensemble:
    """A Meso-4 (direct graph), a MesoInception-4, and a Meso-4 that normalises its input
    (its own preprocessing: a traced graph, spliced in), each with its own temperature or
    none, unequal weights."""
    torch.manual_seed(0)
    plain = create_model("meso4").eval()
    plain.card = _card("a", 1.7)
    inception = create_model("mesoinception4").eval()
    inception.card = _card("b", 0.6, arch="mesoinception4")
    resized = create_model("meso4", None, [0.2, 0.3, 0.1], [0.5, 0.6, 0.7]).eval()
    resized.card = _card("c")  # no calibration: its raw logit
    card = ModelCard(
        name="mixed",
        arch=ENSEMBLE_ARCH,
        members=[{"model": "a", "weight": 2}, {"model": "b", "weight": 1}, {"model": "c"}],
    )
    return Ensemble([plain, inception, resized], [2.0, 1.0, 1.0], card)


def test_the_default_ensemble_fused_equals_its_members_logit_mean(crops):
    model = load_model("ensemble.dfdc-f2f-paper")
    fused = ModelScorer(model, "openvino")
    apart = ModelScorer(model, "openvino", fuse=False)
    assert fused.fused and not apart.fused and len(apart.member_logits(crops)) == 3
    z = fused.logits(crops)
    np.testing.assert_allclose(z, apart.logits(crops), rtol=0, atol=1e-4)
    np.testing.assert_allclose(fused(crops), apart(crops), rtol=0, atol=1e-4)
    with torch.no_grad():  # and the eager definition (models/ensemble.py)
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
        eager = model.logits(x).double().numpy()
    np.testing.assert_allclose(z, eager, rtol=0, atol=1e-4)
    assert np.ptp(z) > 1.0  # the crops are told apart: not a constant output


def test_members_with_their_own_preprocessing_and_temperatures_fuse_exactly(crops):
    model = _mixed_ensemble()
    fused = ModelScorer(model, "openvino")
    apart = ModelScorer(model, "openvino", fuse=False)
    assert fused.fused
    np.testing.assert_allclose(fused.logits(crops), apart.logits(crops), rtol=0, atol=1e-4)
    # the float model input is accepted as well
    x = crops.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    np.testing.assert_allclose(fused.logits(x), apart.logits(crops), rtol=0, atol=1e-4)


def test_a_batch_costs_one_inference_call(crops, monkeypatch):
    model = load_model("ensemble.dfdc-f2f-paper")
    fused = ModelScorer(model, "openvino", batch_size=64)
    apart = ModelScorer(model, "openvino", batch_size=64, fuse=False)
    calls = []
    for scorer in (fused, apart):
        for engine, _, _ in scorer._members:
            real = engine._run
            monkeypatch.setattr(
                engine,
                "_run",
                lambda kind, chunk, real=real, s=scorer: calls.append(s) or real(kind, chunk),
            )
    fused(crops)
    apart(crops)
    assert calls.count(fused) == 1
    assert calls.count(apart) == 3


def test_an_isotonic_member_is_not_fused_and_scores_as_before(crops):
    model = _mixed_ensemble()
    model.members[2].card.calibration = {"method": "isotonic", "x": [0.0, 1.0], "y": [0.1, 0.9]}
    scorer = ModelScorer(model, "openvino")
    assert not scorer.fused and len(scorer.member_logits(crops)) == 3


def test_other_engines_keep_one_engine_per_member(crops):
    model = load_model("ensemble.dfdc-f2f-paper")
    torch_scorer = ModelScorer(model, "torch")
    assert not torch_scorer.fused
    np.testing.assert_allclose(
        torch_scorer.logits(crops), ModelScorer(model, "openvino").logits(crops), atol=1e-4
    )
