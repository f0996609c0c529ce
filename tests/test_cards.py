"""Model cards as untrusted input: one validator for bundled, saved and given cards (issue 25).

Members are capped and loaded once each, weights normalised without overflow, integers of any
size refused in one line, cycles named, member paths read beside the card and written relative
to it; a Hypothesis test feeds random cards and expects a model or one line of ModelError.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from mesonet.errors import MesonetError, ModelError
from mesonet.models import (
    Ensemble,
    ModelCard,
    create_model,
    load_model,
    registry,
    save_ensemble,
    save_model,
)
from mesonet.models.calibration import sigmoid
from mesonet.models.card import MAX_MEMBERS
from mesonet.models.registry import CARD_KEY, read_card
from mesonet.scoring import create_model_scorer


def tiny_model(path: Path, seed: int, bias: float = 0.0, name: str = "") -> Path:
    """A seeded Meso-4 with a card (its name ``meso4.t<seed>`` unless given)."""
    torch.manual_seed(seed)
    model = create_model("meso4").eval()
    with torch.no_grad():
        model.head[-1].bias.add_(bias)
    save_model(model, path, ModelCard(name=name or f"meso4.t{seed}", arch="meso4"))
    return path


def write_card(path: Path, members: list, **fields) -> Path:
    card = {"name": path.stem, "arch": "ensemble", "members": members, **fields}
    path.write_text(json.dumps(card), encoding="utf-8")
    return path


def crops(n: int = 3, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 256, 256, 3)) * 255).astype(np.uint8)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pair")
    return tiny_model(folder / "c1.safetensors", 1, 1.0), tiny_model(
        folder / "c2.safetensors", 2, -1.0
    )


# --------------------------------------------------------------------------- weights (item 5)


def test_weights_of_1e308_are_normalised_without_overflow(tmp_path, pair):
    a, b = pair
    card = write_card(
        tmp_path / "big.json",
        [{"model": str(a), "weight": 1e308}, {"model": str(b), "weight": 1e308}],
    )
    batch = crops()
    za = create_model_scorer(load_model(a), "torch").logits(batch)
    zb = create_model_scorer(load_model(b), "torch").logits(batch)
    scores = create_model_scorer(load_model(card), "torch")(batch)
    np.testing.assert_allclose(scores, sigmoid((za + zb) / 2), atol=2e-5)
    assert not np.allclose(scores, 0.5, atol=1e-3)


def test_a_json_integer_weight_of_400_digits_is_a_one_line_error(tmp_path, pair):
    text = json.dumps({"name": "x", "arch": "ensemble", "members": [{"model": str(pair[0])}]})
    card = tmp_path / "huge.json"
    card.write_text(text.replace('"}]', '", "weight": ' + "1" + "0" * 400 + "}]"))
    with pytest.raises(ModelError, match="integer of 401 digits") as caught:
        load_model(card)
    one_line(caught.value)
    # an integer that parses but overflows a float is refused by the card's own check
    with pytest.raises(ValueError, match="too large") as caught:
        ModelCard(name="x", arch="ensemble", members=[{"model": "a", "weight": 10**400}]).check()
    one_line(caught.value)
    with pytest.raises(ValueError, match="threshold"):
        ModelCard(name="x", arch="meso4", threshold=10**400).check()


# --------------------------------------------------------------------------- where members are


def test_members_resolve_beside_the_card_not_the_working_folder(tmp_path, monkeypatch):
    mdl = tmp_path / "mdl"
    mdl.mkdir()
    tiny_model(mdl / "c1.safetensors", 1, name="meso4.beside")
    write_card(mdl / "mine.json", [{"model": "c1.safetensors"}])
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    tiny_model(elsewhere / "c1.safetensors", 2, name="meso4.decoy")
    monkeypatch.chdir(elsewhere)
    model = load_model("../mdl/mine.json")
    assert [m.card.name for m in model.members] == ["meso4.beside"]
    assert model.card.members[0]["model"] == str((mdl / "c1.safetensors").resolve())
    (mdl / "c1.safetensors").unlink()
    with pytest.raises(ModelError, match="member 'c1.safetensors'.*not found") as caught:
        load_model("../mdl/mine.json")
    one_line(caught.value)


def test_saved_cards_name_their_members_relative_to_themselves(tmp_path, pair, monkeypatch):
    a, b = pair
    monkeypatch.chdir(a.parent)
    card = load_model("c1.safetensors+c2.safetensors").card
    assert [m["model"] for m in card.members] == [str(a.resolve()), str(b.resolve())]
    out = tmp_path / "cards" / "ens.json"
    save_ensemble(card, out)
    written = json.loads(out.read_text())["members"]
    assert [m["model"] for m in written] == [
        os.path.relpath(p.resolve(), out.parent.resolve()) for p in (a, b)
    ]
    # bundled names stay names; the card in memory is not changed
    save_ensemble(ModelCard(name="e", arch="ensemble", members=[{"model": "meso4.df"}]), out)
    assert json.loads(out.read_text())["members"][0]["model"] == "meso4.df"
    assert card.members[0]["model"] == str(a.resolve())
    # the saved card loads the same files from anywhere
    save_ensemble(card, out)
    monkeypatch.chdir(tmp_path)
    assert [m.card.name for m in load_model(out).members] == ["meso4.t1", "meso4.t2"]


def test_calibrating_an_ensemble_of_files_saves_those_files_not_card_names(
    tmp_path, pair, monkeypatch
):
    """Issue 25 item 6: the saved card used to name its members by their cards' names (which
    may be bundled models), so it loaded other models than the ones calibrated."""
    from mesonet.evaluation.calibrate import calibrate_model
    from tests.test_zoo import labelled_noise

    a, b = pair
    # their cards' names are those of bundled models: the old card loaded those instead
    tiny_model(tmp_path / "c1.safetensors", 1, 1.0, name="meso4.df")
    tiny_model(tmp_path / "c2.safetensors", 2, -1.0, name="meso4.dfdc")
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "val"
    labelled_noise(data, "c1.safetensors+c2.safetensors")
    fit = calibrate_model("c1.safetensors+c2.safetensors", data, faces="none")
    out = tmp_path / "cards" / "ens.json"
    save_ensemble(fit.card, out)
    written = [m["model"] for m in json.loads(out.read_text())["members"]]
    assert written == ["../c1.safetensors", "../c2.safetensors"]
    monkeypatch.chdir(a.parent)  # elsewhere, beside other files named c1 and c2
    saved = load_model(out)
    batch = crops()
    np.testing.assert_allclose(
        create_model_scorer(saved, "torch").logits(batch),
        create_model_scorer(fit.model, "torch").logits(batch),  # both calibrated
        atol=1e-4,
    )


# --------------------------------------------------------------------------- size and cycles


def test_a_card_over_the_member_cap_is_refused_before_loading(tmp_path, pair):
    members = [{"model": str(pair[0])}] * (MAX_MEMBERS + 1)
    with pytest.raises(ModelError, match=f"at most {MAX_MEMBERS} members") as caught:
        load_model(write_card(tmp_path / "many.json", members))
    one_line(caught.value)
    names = "+".join([str(pair[0])] * (MAX_MEMBERS + 1))
    with pytest.raises(ModelError, match=f"at most {MAX_MEMBERS} members"):
        load_model(names)


def test_a_member_listed_twice_is_loaded_and_scored_once(tmp_path, pair, monkeypatch):
    a, b = pair
    calls = []
    real = registry._load_weights

    def counting(path, *args):
        calls.append(Path(path).resolve())
        return real(path, *args)

    monkeypatch.setattr("mesonet.models.registry._load_weights", counting)
    members = [{"model": str(a)}, {"model": "c1.safetensors", "weight": 2}, {"model": str(b)}]
    model = load_model(write_card(a.parent / "twice.json", members))
    assert sorted(calls) == sorted([a.resolve(), b.resolve()])
    assert len(model.members) == 2 and model.weights == pytest.approx([0.75, 0.25])
    batch = crops()
    za = create_model_scorer(load_model(a), "torch").logits(batch)
    zb = create_model_scorer(load_model(b), "torch").logits(batch)
    scores = create_model_scorer(model, "torch")(batch)
    np.testing.assert_allclose(scores, sigmoid(0.75 * za + 0.25 * zb), atol=2e-5)


def test_cards_that_list_each_other_name_the_cycle(tmp_path):
    write_card(tmp_path / "self.json", [{"model": "self.json"}])
    with pytest.raises(ModelError, match=r"cycle: self\.json -> self\.json") as caught:
        load_model(tmp_path / "self.json")
    one_line(caught.value)
    write_card(tmp_path / "a.json", [{"model": "meso4.df"}, {"model": "b.json"}])
    write_card(tmp_path / "b.json", [{"model": "a.json"}])
    with pytest.raises(ModelError, match=r"cycle: a\.json -> b\.json -> a\.json"):
        load_model(tmp_path / "a.json")
    # an ensemble inside an ensemble without a cycle is still refused as such
    write_card(tmp_path / "c.json", [{"model": "meso4.df"}])
    write_card(tmp_path / "d.json", [{"model": "c.json"}])
    with pytest.raises(ModelError, match="cannot be a member of another ensemble"):
        load_model(tmp_path / "d.json")


# --------------------------------------------------------------------------- names (item 18)


def test_an_empty_model_name_or_a_folder_says_so(tmp_path):
    with pytest.raises(ModelError, match="model name is empty"):
        load_model("")
    with pytest.raises(ModelError, match="model name is empty"):
        load_model("  ")
    with pytest.raises(ModelError, match="is a folder, not a model file"):
        load_model(tmp_path)
    os.mkfifo(tmp_path / "fifo.safetensors")
    with pytest.raises(ModelError, match="not a regular file"):
        load_model(tmp_path / "fifo.safetensors")
    with pytest.raises(ModelError, match="model file not found"):
        load_model(tmp_path / ("x" * 300 + ".safetensors"))


def test_member_names_follow_the_card_name_rules(tmp_path):
    for bad, word in (("", "empty"), ("   ", "empty"), ("a\nb", "control"), ("\ud800", "Unicode")):
        with pytest.raises(ModelError, match=word):
            load_model(write_card(tmp_path / "bad.json", [{"model": bad}]))
        with pytest.raises(ValueError, match=word):
            ModelCard(name=bad, arch="meso4").check()


# --------------------------------------------------------------------------- fuzzing

EXTREMES = st.one_of(
    st.integers(),
    st.floats(),  # NaN and infinities included
    st.sampled_from([0, -1, 1e308, -1e308, 5e-324, 10**309, 10**400, -(10**400), 2**64]),
)
PLAIN = st.floats(0.0, 1.0) | st.integers(1, 300) | st.sampled_from([0.25, 0.5, 256])
NUMBERS = PLAIN | PLAIN | PLAIN | EXTREMES  # mostly plausible, so some cards load
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
MEMBER_NAMES = (
    st.sampled_from(
        ["c1.safetensors", "c2.safetensors", "meso4.df", "card.json", "../pair/c1.safetensors"]
    )
    | st.sampled_from(["meso4.df+meso4.dfdc", "gone.safetensors", "", " ", "."])
    | st.text(max_size=8)
)
MEMBERS = st.lists(
    st.fixed_dictionaries({"model": MEMBER_NAMES}, optional={"weight": NUMBERS}),
    min_size=1,
    max_size=MAX_MEMBERS + 2,
)
CARDS = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["ens", "meso4.x"]) | st.text(max_size=8) | JSON_VALUES,
        "arch": st.sampled_from(["ensemble", "ensemble", "meso4", "x"]),
        "members": MEMBERS | JSON_VALUES,
    },
    optional={
        "threshold": NUMBERS | JSON_VALUES,
        "input_size": NUMBERS,
        "mean": st.lists(NUMBERS, min_size=3, max_size=3) | JSON_VALUES,
        "std": st.lists(NUMBERS, min_size=3, max_size=3) | JSON_VALUES,
        "resize": st.sampled_from(["auto", "nearest", "bogus"]),
        "calibration": st.fixed_dictionaries(
            {"method": st.sampled_from(["temperature", "isotonic", "x"])},
            optional={"temperature": NUMBERS, "x": st.lists(NUMBERS), "y": st.lists(NUMBERS)},
        )
        | JSON_VALUES,
        "verdict_bands": st.fixed_dictionaries({"uncertain": st.lists(NUMBERS, max_size=3)}),
        "metrics": JSON_VALUES,
        "weights_sha256": st.text(max_size=4) | JSON_VALUES,
    },
)

NEAR_VALID = st.fixed_dictionaries(  # ensembles of real members, their weights and threshold odd
    {
        "name": st.just("ens"),
        "arch": st.just("ensemble"),
        "members": st.lists(
            st.fixed_dictionaries(
                {"model": st.sampled_from(["c1.safetensors", "c2.safetensors", "meso4.df"])},
                optional={"weight": NUMBERS},
            ),
            min_size=1,
            max_size=MAX_MEMBERS + 1,
        ),
    },
    optional={"threshold": NUMBERS},
)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(card=CARDS | NEAR_VALID, as_weights=st.booleans())
def test_random_cards_load_or_fail_in_one_line(tmp_path_factory, pair, card, as_weights):
    folder = pair[0].parent
    try:
        text = json.dumps(card)
    except ValueError:  # an integer json cannot spell (over 4300 digits): never in a file
        return
    if as_weights:  # a weights file whose metadata holds the card
        path = folder / "card.safetensors"
        state = create_model("meso4").state_dict()
        save_file({k: v.contiguous() for k, v in state.items()}, str(path), {CARD_KEY: text})
    else:
        path = folder / "card.json"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        model = load_model(path, trust_unverified=True)
    except MesonetError as exc:
        event(f"refused: {one_line(exc).split(':')[-1][:40]}")
        return
    event(f"loaded {type(model).__name__}")
    assert isinstance(model, torch.nn.Module)
    if isinstance(model, Ensemble):
        assert 1 <= len(model.members) <= MAX_MEMBERS
        assert sum(model.weights) == pytest.approx(1.0)
        assert all(np.isfinite(model.weights))
    read_card(path).check()


def test_random_card_fuzzer_reaches_success(tmp_path, pair):
    """The fuzzer's space includes loadable cards (so it tests more than refusals)."""
    card = write_card(pair[0].parent / "card.json", [{"model": "c1.safetensors", "weight": 1e308}])
    assert isinstance(load_model(card), Ensemble)
