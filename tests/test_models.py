"""Architectures, model cards and the registry."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

import mesonet
from mesonet.errors import ModelError
from mesonet.models import (
    ModelCard,
    create_model,
    load_model,
    read_card,
    save_model,
    widen_meso4,
)
from mesonet.models.registry import CARD_KEY


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_parameter_counts_match_the_authors_models():
    assert trainable(create_model("meso4")) == 27_977
    assert trainable(create_model("mesoinception4")) == 28_615
    assert trainable(create_model("meso4w")) == 107_681  # ours: twice Meso-4's width


@pytest.mark.parametrize("arch", ["meso4", "mesoinception4", "meso4w"])
def test_forward_maps_a_batch_to_fake_probabilities(arch):
    model = create_model(arch).eval()
    with torch.inference_mode():
        probs = model(torch.rand(3, 3, 256, 256))
        logits = model.logits(torch.rand(3, 3, 256, 256))
    assert probs.shape == (3,) and logits.shape == (3,)
    assert torch.all((probs >= 0) & (probs <= 1))


def test_widening_meso4_keeps_its_outputs_and_noise_moves_them_a_little(tmp_path):
    torch.manual_seed(3)
    narrow = create_model("meso4")
    narrow.train()
    narrow(torch.rand(8, 3, 256, 256))  # batch-norm statistics that are not the defaults
    narrow.eval()
    wide = widen_meso4(narrow)
    assert wide.arch == "meso4w" and not wide.training
    x = torch.rand(4, 3, 256, 256)
    with torch.inference_mode():
        torch.testing.assert_close(wide.logits(x), narrow.logits(x), atol=1e-4, rtol=1e-4)
        jittered = widen_meso4(narrow, noise=0.05).logits(x)
    assert 0 < float((jittered - narrow.logits(x)).abs().max()) < 1.0
    # a widened model saves and loads like any other
    path = tmp_path / "w.safetensors"
    save_model(wide, path, ModelCard(name="meso4w.test", arch="meso4w"))
    with torch.inference_mode():
        torch.testing.assert_close(load_model(path).logits(x), wide.logits(x))


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ModelError, match="unknown architecture 'resnet'"):
        create_model("resnet")


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = create_model("meso4").eval()
    path = tmp_path / "m.safetensors"
    card = save_model(model, path, ModelCard(name="meso4.test", arch="meso4", threshold=0.4))
    return model, path, card


def test_save_and_load_round_trip_keeps_outputs_and_card(saved):
    model, path, card = saved
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.card.name == "meso4.test" and loaded.card.threshold == 0.4
    assert loaded.card.weights_sha256 == card.weights_sha256 == read_card(path).weights_sha256
    x = torch.rand(2, 3, 256, 256)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x))


def _rewrite(path, mutate):
    state = load_file(str(path))
    metadata = {CARD_KEY: read_card(path).to_json()}
    mutate(state)
    save_file(state, str(path), metadata=metadata)


def test_weights_with_a_changed_tensor_fail_the_checksum(saved):
    _, path, _ = saved
    _rewrite(path, lambda s: s["head.4.bias"].add_(1.0))
    with pytest.raises(ModelError, match="sha256"):
        load_model(path)
    assert load_model(path, verify=False) is not None


def test_missing_extra_and_misshapen_tensors_are_named(saved):
    _, path, _ = saved
    _rewrite(path, lambda s: s.pop("head.4.bias"))
    with pytest.raises(ModelError, match=r"missing tensors: head\.4\.bias"):
        load_model(path)
    _rewrite(path, lambda s: s.update({"head.4.bias": torch.zeros(1), "extra": torch.zeros(2)}))
    with pytest.raises(ModelError, match="unexpected tensors: extra"):
        load_model(path)
    _rewrite(path, lambda s: (s.pop("extra"), s.update({"head.4.bias": torch.zeros(3)})))
    with pytest.raises(ModelError, match=r"wrong shapes: head\.4\.bias \(3,\) \(expected \(1,\)\)"):
        load_model(path)


def test_unusable_files_and_names_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="not a readable safetensors"):
        load_model(junk)
    with pytest.raises(ModelError, match="model file not found"):
        load_model(tmp_path / "absent.safetensors")
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        load_model("nope")
    bare = tmp_path / "bare.safetensors"
    save_file(create_model("meso4").state_dict(), str(bare))
    with pytest.raises(ModelError, match="no model card"):
        load_model(bare)


def test_bundled_models_load_by_name():
    for card in mesonet.list_models():
        model = load_model(card.name)
        assert model.card.name == card.name and model.arch == card.arch
