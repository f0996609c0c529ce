"""OpenVINO's start-up work is kept in the user cache: reused on the next start, never for
other weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mesonet.backends import available_backends, create_scorer
from mesonet.backends.cache import graph_key
from mesonet.models import create_model

pytestmark = pytest.mark.skipif(
    "openvino" not in available_backends(), reason="openvino not installed"
)


def _traced_model(seed: int) -> torch.nn.Module:
    """A Meso-4 whose card normalises: the direct graph builder refuses it, so it is traced."""
    torch.manual_seed(seed)
    return create_model("meso4", None, [0.2, 0.3, 0.1], [0.5, 0.6, 0.7]).eval()


@pytest.fixture
def counted_conversions(monkeypatch, tmp_path):
    import openvino as ov

    monkeypatch.setenv("MESONET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MESONET_NO_CACHE", raising=False)
    calls = []
    real = ov.convert_model

    def convert(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ov, "convert_model", convert)
    return calls


def test_the_converted_graph_is_reused_on_the_next_start(counted_conversions, tmp_path):
    model = _traced_model(0)
    x = torch.rand(4, 3, 256, 256)
    with torch.no_grad():
        expected = model.logits(x).numpy()
    first = create_scorer(model, "openvino", output="logit")(x)
    second = create_scorer(model, "openvino", output="logit")(x)  # a new scorer: a new start
    assert len(counted_conversions) == 1
    np.testing.assert_allclose(first, expected, atol=1e-4)
    np.testing.assert_allclose(second, expected, atol=1e-4)
    assert len(list((tmp_path / "cache" / "openvino").iterdir())) == 1  # one graph kept
    assert any((tmp_path / "cache" / "openvino-compiled").iterdir())


def test_changed_weights_never_meet_a_cached_graph(counted_conversions):
    a, b = _traced_model(0), _traced_model(1)
    assert graph_key(a) != graph_key(b)
    x = torch.rand(4, 3, 256, 256)
    create_scorer(a, "openvino", output="logit")(x)
    got = create_scorer(b, "openvino", output="logit")(x)
    assert len(counted_conversions) == 2
    with torch.no_grad():
        np.testing.assert_allclose(got, b.logits(x).numpy(), atol=1e-4)


def test_a_damaged_cache_entry_is_converted_again(counted_conversions, tmp_path):
    model = _traced_model(0)
    x = torch.rand(2, 3, 256, 256)
    create_scorer(model, "openvino", output="logit")(x)
    (entry,) = (tmp_path / "cache" / "openvino").glob("*/model.xml")
    entry.write_text("not a graph")
    got = create_scorer(model, "openvino", output="logit")(x)
    assert len(counted_conversions) == 2
    with torch.no_grad():
        np.testing.assert_allclose(got, model.logits(x).numpy(), atol=1e-4)


def test_an_unwritable_cache_is_skipped(counted_conversions, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("MESONET_CACHE", str(blocker / "under-a-file"))
    model = _traced_model(0)
    x = torch.rand(2, 3, 256, 256)
    got = create_scorer(model, "openvino", output="logit")(x)
    with torch.no_grad():
        np.testing.assert_allclose(got, model.logits(x).numpy(), atol=1e-4)


def test_the_graph_key_is_hashed_once_and_follows_every_change(monkeypatch):
    from mesonet.backends import cache

    model = create_model("meso4").eval()
    hashed = []
    digest = cache._digest
    monkeypatch.setattr(cache, "_digest", lambda m, t: hashed.append(1) or digest(m, t))
    first = graph_key(model)
    assert graph_key(model) == first and len(hashed) == 1  # asked again: remembered
    with torch.no_grad():
        model.head[-1].bias.add_(0.5)  # in place: the tensor's version moves
    second = graph_key(model)
    assert second != first and len(hashed) == 2
    model.head[-1] = torch.nn.Linear(16, 1)  # another module: other tensors, other tree
    assert graph_key(model) not in (first, second) and len(hashed) == 3
    assert graph_key(create_model("meso4")) != graph_key(model)  # another model object
