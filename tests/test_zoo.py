"""The model zoo: ensembles, calibration, verdict bands, `mesonet calibrate` and `models`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from mesonet.cli import app
from mesonet.errors import ModelError
from mesonet.evaluation.metrics import best_threshold, brier_score, expected_calibration_error
from mesonet.evaluation.runner import evaluate
from mesonet.models import (
    Ensemble,
    ModelCard,
    bundled_models,
    create_model,
    load_model,
    save_ensemble,
    save_model,
)
from mesonet.models.calibration import (
    calibrate_logits,
    default_bands,
    derive_bands,
    fit_isotonic,
    fit_temperature,
    logit,
    sigmoid,
    verdict_for,
)
from mesonet.pipeline import Detector
from mesonet.scoring import create_model_scorer

runner = CliRunner()
SETS = ("dfdc_faces_test", "mesonet_deepfake_val", "ffpp_faces_dev", "ffpp_c40_videos")


def tiny_model(path, seed: int, bias: float = 0.0, scale: float = 1.0, **card) -> str:
    """A seeded Meso-4 whose logits are ``scale * (its own) + bias``, saved with a card."""
    torch.manual_seed(seed)
    model = create_model("meso4").eval()
    with torch.no_grad():
        model.head[-1].weight.mul_(scale)
        model.head[-1].bias.mul_(scale).add_(bias)
    save_model(model, path, ModelCard(name=f"meso4.t{seed}", arch="meso4", **card))
    return str(path)


def crops(n: int = 6, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 256, 256, 3)) * 255).astype(np.uint8)


# --------------------------------------------------------------------------- ensembles


def test_an_ensemble_scores_the_logit_mean_of_its_members(tmp_path):
    a = tiny_model(tmp_path / "a.safetensors", 1, bias=0.8, scale=20.0)
    b = tiny_model(
        tmp_path / "b.safetensors",
        2,
        bias=-0.5,
        calibration={"method": "temperature", "temperature": 2.5, "raw_threshold": 0.5},
    )
    batch = crops()
    pa = create_model_scorer(load_model(a), "torch")(batch).astype(np.float64)
    pb = create_model_scorer(load_model(b), "torch")(batch).astype(np.float64)
    assert not np.allclose(pa, pb, atol=1e-3)  # members that disagree
    expected = sigmoid((logit(pa) + logit(pb)) / 2)
    for backend in ("torch", "openvino"):
        both = create_model_scorer(load_model(f"{a}+{b}"), backend)(batch)
        np.testing.assert_allclose(both, expected, atol=2e-5)
    # the module's own forward agrees, and the Detector uses the same scorer
    ensemble = load_model(f"{a}+{b}")
    assert isinstance(ensemble, Ensemble) and ensemble.card.arch == "ensemble"
    with torch.inference_mode():
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255
        np.testing.assert_allclose(ensemble(x).numpy(), expected, atol=2e-5)
    detector = Detector(f"{a}+{b}", faces="none", backend="torch")
    np.testing.assert_allclose(detector.score_crops(batch), expected, atol=2e-5)
    assert detector.model_name == f"{a}+{b}"


def test_an_ensemble_card_names_an_ensemble_and_weights_its_members(tmp_path):
    a = tiny_model(tmp_path / "a.safetensors", 1, bias=1.0)
    b = tiny_model(tmp_path / "b.safetensors", 2, bias=-1.0)
    card = ModelCard(
        name="ensemble.test",
        arch="ensemble",
        members=[{"model": a, "weight": 3.0}, {"model": b, "weight": 1.0}],
        threshold=0.4,
        calibration={"method": "temperature", "temperature": 0.5, "raw_threshold": 0.45},
    )
    path = save_ensemble(card, tmp_path / "ens.json") and tmp_path / "ens.json"
    batch = crops(4, seed=3)
    za = create_model_scorer(load_model(a), "torch").logits(batch)
    zb = create_model_scorer(load_model(b), "torch").logits(batch)
    scorer = create_model_scorer(load_model(path), "torch")
    np.testing.assert_allclose(scorer(batch), sigmoid((0.75 * za + 0.25 * zb) / 0.5), atol=2e-5)
    assert Detector(path, faces="none").threshold == 0.4


def test_bad_ensembles_are_one_line_errors(tmp_path):
    a = tiny_model(tmp_path / "a.safetensors", 1)
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        load_model(f"{a}+nope")
    with pytest.raises(ModelError, match="joined by"):
        load_model(f"{a}+")
    (tmp_path / "bad.json").write_text('{"name": "x", "arch": "ensemble", "members": []}')
    with pytest.raises(ModelError, match="only it has members"):
        load_model(tmp_path / "bad.json")
    nested = ModelCard(name="n", arch="ensemble", members=[{"model": f"{a}+{a}", "weight": 1}])
    save_ensemble(nested, tmp_path / "nested.json")
    with pytest.raises(ModelError, match="cannot be a member"):
        load_model(tmp_path / "nested.json")


# --------------------------------------------------------------------------- calibration


def miscalibrated(n: int = 4000, seed: int = 0, scale: float = 4.0):
    """Labels drawn from sigmoid(t) and a model that reports ``scale * t``: overconfident."""
    rng = np.random.default_rng(seed)
    t = rng.normal(0.0, 1.5, n)
    y = (rng.random(n) < sigmoid(t)).astype(int)
    return scale * t, y


def test_temperature_scaling_recovers_a_known_overconfidence_and_lowers_ece():
    z, y = miscalibrated()
    temperature = fit_temperature(z, y)
    assert temperature == pytest.approx(4.0, rel=0.1)
    before = expected_calibration_error(y, sigmoid(z))
    after = expected_calibration_error(y, sigmoid(z / temperature))
    assert after < before / 3 and after < 0.03
    assert brier_score(y, sigmoid(z / temperature)) < brier_score(y, sigmoid(z))


def test_isotonic_calibration_lowers_ece_and_is_monotone():
    z, y = miscalibrated(scale=0.3)  # underconfident this time
    x, yy = fit_isotonic(sigmoid(z), y)
    spec = {"method": "isotonic", "x": x, "y": yy}
    calibrated = sigmoid(calibrate_logits(spec, z))
    assert expected_calibration_error(y, calibrated) < expected_calibration_error(y, sigmoid(z))
    assert np.all(np.diff(calibrated[np.argsort(z)]) >= -1e-12)


def test_ece_and_brier_on_known_values():
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0
    # every example at 0.9, half of them fake: |0.5 - 0.9| = 0.4
    assert expected_calibration_error([0, 1, 0, 1], [0.9] * 4) == pytest.approx(0.4)
    assert brier_score([0, 1], [0.5, 0.5]) == pytest.approx(0.25)


def labelled_noise(folder, model, n_each: int = 30, swaps: int = 6) -> None:
    """Noise crops that ``model`` half separates: the ``n_each`` it scores highest are fake,
    then ``swaps`` random pairs across that line change sides (ROC AUC about 0.85, so the
    data can be calibrated on: chance-level data is refused)."""
    rng = np.random.default_rng(5)
    images = (rng.random((2 * n_each, 256, 256, 3)) * 255).astype(np.uint8)
    order = np.argsort(create_model_scorer(load_model(model), "torch").logits(images))
    real, fake = list(order[:n_each]), list(order[n_each:])
    picks = rng.choice(n_each, (2, swaps), replace=False)
    for i, j in zip(picks[0], picks[1], strict=True):
        real[i], fake[j] = fake[j], real[i]
    for label, chosen in (("real", real), ("fake", fake)):
        (folder / label).mkdir(parents=True)
        for k, index in enumerate(chosen):
            Image.fromarray(images[index]).save(folder / label / f"{k}.png")


def test_calibrate_command_lowers_ece_on_its_set_and_stores_it_in_the_card(tmp_path):
    # An overconfident model: logits scaled up and pushed up by 2, on data it half separates.
    model = tiny_model(tmp_path / "m.safetensors", 3, bias=2.0, scale=20.0, threshold=0.6)
    data = tmp_path / "val"
    labelled_noise(data, model)
    out = tmp_path / "cal.safetensors"
    result = runner.invoke(
        app, ["calibrate", model, str(data), "--faces", "none", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "ECE" in result.output and str(out) in result.output.replace("\n", "")
    calibrated = load_model(out)
    spec = calibrated.card.calibration
    assert spec["method"] == "temperature" and spec["data"].endswith("/val") and spec["n"] == 60
    assert spec["raw_threshold"] == 0.6 and spec["ece_after"] < spec["ece_before"]
    # the threshold follows the map, so the labels do not change
    assert calibrated.card.threshold == pytest.approx(
        float(sigmoid(logit([0.6]) / spec["temperature"])[0]), abs=1e-6
    )
    assert calibrated.card.verdict_bands["data"] == spec["data"]
    before = evaluate(Detector(model, faces="none"), data)
    after = evaluate(Detector(out, faces="none"), data)
    assert after["ece"] < before["ece"] and after["brier"] < before["brier"]
    assert after["confusion"] == before["confusion"]
    # isotonic, and errors that are one line
    iso = tmp_path / "iso.safetensors"
    result = runner.invoke(
        app,
        ["calibrate", model, str(data), "--faces", "none", "--method", "isotonic", "-o", str(iso)],
    )
    assert result.exit_code == 0, result.output
    assert load_model(iso).card.calibration["method"] == "isotonic"
    bad = runner.invoke(app, ["calibrate", model, str(data), "--out", str(tmp_path / "x.txt")])
    assert bad.exit_code == 2 and ".safetensors" in bad.output


def test_calibration_on_data_the_model_cannot_separate_is_refused(tmp_path, monkeypatch, capsys):
    """Issue 25 item 8: one image as real and as fake (45 copies each) used to fit a model
    answering 0.500 to everything, with exit 0 and "ECE 0.0000"."""
    from mesonet.cli import main

    model = tiny_model(tmp_path / "m.safetensors", 3, bias=2.0, scale=20.0)
    data = tmp_path / "same"
    image = crops(1, seed=4)[0]
    for label in ("real", "fake"):
        (data / label).mkdir(parents=True)
        for i in range(45):
            Image.fromarray(image).save(data / label / f"{i}.png")
    out = tmp_path / "cal.safetensors"
    argv = ["mesonet", "calibrate", model, str(data), "--faces", "none", "-o", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.strip().count("\n") == 0, err  # the progress bar: blank
    assert "cannot tell its real from its fake" in err and "ROC AUC 0.500" in err
    assert not out.exists()


def test_a_temperature_fitted_at_its_bound_is_refused():
    from mesonet.evaluation.calibrate import CalibrationError, check_separation
    from mesonet.models.calibration import TEMPERATURE_RANGE, temperature_at_bound

    z = np.r_[np.linspace(-1, 1, 50), np.linspace(-1, 1, 50) + 0.01]  # barely separated
    y = np.r_[np.zeros(50), np.ones(50)]
    assert temperature_at_bound(fit_temperature(z * 50, y))
    assert not temperature_at_bound(fit_temperature(*miscalibrated()))
    assert temperature_at_bound(TEMPERATURE_RANGE[0]) and temperature_at_bound(TEMPERATURE_RANGE[1])
    with pytest.raises(CalibrationError, match="ROC AUC 0.50"):
        check_separation(np.zeros(10), np.r_[np.zeros(5), np.ones(5)])
    assert check_separation(*miscalibrated()) > 0.7


def test_calibrate_threshold_rule_chooses_the_threshold_on_the_data(tmp_path):
    model = tiny_model(tmp_path / "m.safetensors", 3, bias=2.0, scale=20.0, threshold=0.99)
    data = tmp_path / "val"
    labelled_noise(data, model)
    # the model's own logits and labels, face by face, as the rule should see them
    detector = Detector(model, faces="none")
    z, y = [], []
    for label in ("real", "fake"):
        for path in sorted((data / label).iterdir()):
            z.append(float(logit([detector.predict(path).fake_probability])[0]))
            y.append(int(label == "fake"))
    expected = float(sigmoid(best_threshold(y, z, "youden")))
    out = tmp_path / "cal.safetensors"
    argv = ["calibrate", model, str(data), "--faces", "none", "--out", str(out)]
    result = runner.invoke(app, [*argv, "--threshold-rule", "youden"])
    assert result.exit_code == 0, result.output
    card = load_model(out).card
    spec = card.calibration
    assert spec["threshold_rule"] == "youden"
    assert spec["raw_threshold"] == pytest.approx(expected, abs=2e-3) and expected != 0.99
    assert card.threshold == pytest.approx(
        float(sigmoid(logit([spec["raw_threshold"]]) / spec["temperature"])[0]), abs=1e-6
    )
    # the labels are now those of the rule's ROC point: at least as good a TPR - FPR
    z_, y_ = np.asarray(z), np.asarray(y)

    def youden(t: float) -> float:
        called = z_ >= float(logit([t])[0])
        return called[y_ == 1].mean() - called[y_ == 0].mean()

    assert youden(spec["raw_threshold"]) >= youden(0.99)
    other = str(tmp_path / "other.safetensors")
    bad = runner.invoke(app, [*argv[:-1], other, "--threshold-rule", "median"])
    assert bad.exit_code != 0 and "youden" in str(bad.exception or bad.output)


def test_calibrate_trusts_unverified_weights_only_when_asked_and_keeps_them_unverified(tmp_path):
    model = tiny_model(tmp_path / "m.safetensors", 3, scale=20.0)
    state = load_model(model)
    plain = tmp_path / "plain.safetensors"
    save_model(state, plain, state.card, digest=False)  # a card without a sha256
    data = tmp_path / "val"
    labelled_noise(data, model)
    out = tmp_path / "cal.safetensors"
    argv = ["calibrate", str(plain), str(data), "--faces", "none", "--out", str(out)]
    refused = runner.invoke(app, argv)  # main() prints this as one line and exits 2
    assert isinstance(refused.exception, ModelError)
    assert "--trust-unverified" in str(refused.exception)
    assert not out.exists()
    result = runner.invoke(app, [*argv, "--trust-unverified"])
    assert result.exit_code == 0, result.output
    assert "unverified" in result.output
    # the calibrated file is no more verified than its input was
    with pytest.raises(ModelError, match="--trust-unverified"):
        load_model(out)
    calibrated = load_model(out, trust_unverified=True)
    assert calibrated.unverified and calibrated.card.weights_sha256 == ""
    assert calibrated.card.calibration["method"] == "temperature"
    for name, tensor in state.state_dict().items():
        assert torch.equal(calibrated.state_dict()[name], tensor)


def test_calibrated_scores_reach_every_front_end(tmp_path):
    spec = {"method": "temperature", "temperature": 3.0, "raw_threshold": 0.5}
    raw = tiny_model(tmp_path / "raw.safetensors", 4, bias=2.0, scale=5.0)
    cal = tiny_model(tmp_path / "cal.safetensors", 4, bias=2.0, scale=5.0, calibration=spec)
    image = tmp_path / "face.png"
    Image.fromarray(crops(1, seed=9)[0]).save(image)
    p_raw = Detector(raw, faces="none").predict(image).fake_probability
    p_cal = Detector(cal, faces="none").predict(image).fake_probability
    assert p_cal == pytest.approx(float(sigmoid(logit([p_raw]) / 3.0)[0]), abs=1e-5)
    result = runner.invoke(app, ["predict", str(image), "-m", cal, "--faces", "none", "-f", "json"])
    assert json.loads(result.stdout)[0]["fake_probability"] == pytest.approx(p_cal, abs=1e-6)


# --------------------------------------------------------------------------- verdicts


def test_derived_bands_cover_where_validation_accuracy_is_under_60_percent():
    rng = np.random.default_rng(1)
    p = rng.random(4000)
    # fakes are likely above 0.7, reals below 0.3, a coin toss in between
    y = np.where(
        p > 0.7,
        rng.random(4000) < 0.95,
        np.where(p < 0.3, rng.random(4000) < 0.05, rng.random(4000) < 0.5),
    ).astype(int)
    bands = derive_bands(p, y, 0.5)
    lo, hi = bands["uncertain"]
    assert 0.25 < lo < 0.35 and 0.65 < hi < 0.75
    # a sharp model: never uncertain
    sharp = derive_bands(p, (p >= 0.5).astype(int), 0.5)
    assert sharp["uncertain"] == [0.5, 0.5]


def test_verdict_follows_the_bands_and_moves_with_the_threshold():
    bands = {"uncertain": [0.3, 0.7]}
    assert verdict_for(0.29, 0.5, bands, 0.5) == "likely real"
    assert verdict_for(0.3, 0.5, bands, 0.5) == "uncertain"
    assert verdict_for(0.69, 0.5, bands, 0.5) == "uncertain"
    assert verdict_for(0.7, 0.5, bands, 0.5) == "likely forged"
    # a user's threshold of 0.7 moves the band by the same logits: 0.5 -> 0.7
    assert verdict_for(0.6, 0.7, bands, 0.5) == "uncertain"
    assert verdict_for(0.4, 0.7, bands, 0.5) == "likely real"
    lo, hi = default_bands(0.5)["uncertain"]
    assert lo == pytest.approx(0.4) and hi == pytest.approx(0.6)


def test_records_carry_the_cards_verdict(tmp_path):
    model = tiny_model(
        tmp_path / "m.safetensors", 6, threshold=0.5, verdict_bands={"uncertain": [0.2, 0.8]}
    )
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, pixels in enumerate(crops(8, seed=11)):
        Image.fromarray(pixels).save(folder / f"{i}.png")
    detector = Detector(model, faces="none")
    records = list(detector.predict_many([folder]))
    assert len(records) == 8
    for r in records:
        p = r.fake_probability
        expected = "likely real" if p < 0.2 else "likely forged" if p >= 0.8 else "uncertain"
        assert r.verdict == expected and r.to_dict()["verdict"] == expected
    result = runner.invoke(app, ["predict", str(folder), "-m", model, "--faces", "none"])
    assert result.exit_code == 0 and "verdict" in result.stdout


def test_a_card_with_bands_off_its_threshold_is_refused(tmp_path):
    with pytest.raises(ValueError, match="around the threshold"):
        ModelCard(
            name="x", arch="meso4", threshold=0.9, verdict_bands={"uncertain": [0.2, 0.8]}
        ).check()
    with pytest.raises(ValueError, match="temperature"):
        ModelCard(name="x", arch="meso4", calibration={"method": "temperature"}).check()


# --------------------------------------------------------------------------- `mesonet models`


def test_models_json_lists_every_bundled_model_with_its_metrics():
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    listed = {card["name"]: card for card in json.loads(result.stdout)}
    assert set(listed) == set(bundled_models())
    assert sum(card["default"] for card in listed.values()) == 1
    authors = ("meso4.df", "meso4.f2f", "mesoinception4.df", "mesoinception4.f2f")
    assert {"meso4.df", "mesoinception4.df"} <= set(listed)
    for name in (n for n in authors if n in listed):
        card = listed[name]
        for key in (k for k in SETS if k in card["metrics"] or k != "ffpp_c40_videos"):
            metrics = card["metrics"][key]
            assert 0.0 <= metrics["auc"] <= 1.0 and metrics["ece"] is not None
            assert metrics["command"].startswith("mesonet evaluate ")
        assert card["calibration"]["data"] and card["verdict_bands"]["uncertain"]
        assert card["license"].startswith("Apache-2.0")


def test_models_table_fits_80_columns_without_cutting_names():
    result = runner.invoke(app, ["models"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in bundled_models():
        assert any(name in line for line in lines), name
    assert "…" not in result.stdout
    caption = " ".join(result.stdout.split())  # the caption names what auto runs in int8
    assert "Run in int8 by --backend auto" in caption
    assert "shown): ensemble.lite0-f2f." in caption


def test_ensemble_search_flip_averages_a_crop_and_its_mirror() -> None:
    """tools/ensemble_search.py --flip: the mean of the logits of a crop and its mirror."""
    import importlib.util
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "tools" / "ensemble_search.py"
    spec = importlib.util.spec_from_file_location("ensemble_search", tool)
    search = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(search)
    model = load_model("meso4.dfdc")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    mirror = np.ascontiguousarray(image[:, ::-1])
    plain = search._logits(model, [image, mirror])
    flipped = search._logits(model, [image], flip=True)
    assert plain[0] != pytest.approx(plain[1], abs=1e-3)  # the mirror scores differently
    assert flipped[0] == pytest.approx(plain.mean(), abs=1e-4)
    symmetric = np.concatenate([image[:, :128], image[:, :128][:, ::-1]], axis=1)
    assert search._logits(model, [symmetric], flip=True)[0] == pytest.approx(
        search._logits(model, [symmetric])[0], abs=1e-4
    )
