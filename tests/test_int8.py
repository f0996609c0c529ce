"""The openvino-int8 backend: int8 scores agree with fp32 on real crops, and ``auto`` never
runs a model in int8 without a measured AUC check recorded on its card.

Tolerances (int8 is not exact; measured 2026-12-04, meso4.dfdc and mesoinception4.paper):

- calibrated on 100 dfdc-faces/val crops, scored on 200 other val crops: mean |p change| at
  most 0.04 (measured 0.015 and 0.017), largest at most 0.25 (0.07 and 0.18), logits'
  Pearson correlation at least 0.98 (0.997 and 0.995);
- calibrated on the packaged samples and their mirror images (no ../shared needed), scored
  on the samples: largest |p change| at most 0.15 (0.08 and 0.004).

efficientnet_lite0.noffpp is checked against the same bounds.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from mesonet.backends import BackendError, available_backends, create_scorer
from mesonet.backends.int8 import (
    AUC_TOLERANCE,
    REQUIRED_SETS,
    cached_path,
    calibration_crops,
    crops_sha256,
    image_files,
    quantize,
)
from mesonet.backends.int8_choice import auto_int8, record_passes
from mesonet.faces import crop_whole
from mesonet.media import read_image
from mesonet.models import load_model
from mesonet.models.card import ModelCard
from mesonet.scoring import ModelScorer

pytest.importorskip("nncf")
pytestmark = [
    pytest.mark.skipif("openvino" not in available_backends(), reason="openvino not installed"),
    pytest.mark.usefixtures("own_cache"),  # tests/conftest.py
]

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "mesonet" / "samples"
VAL = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "dfdc-faces" / "val"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _record(sha256: str, changes: dict[str, float]) -> dict:
    return {
        "calibration": {"data": "dfdc-faces/val", "n": 8, "sha256": sha256},
        "auc_change": changes,
    }


def _passing(sha256: str) -> dict:
    return _record(sha256, {name: -0.004 for name in REQUIRED_SETS})


def _with_card(model, record: dict):
    model.card = dataclasses.replace(model.card, int8=record)
    model.card.check()
    return model


# --------------------------------------------------------------------------- agreement


@pytest.mark.parametrize(
    "name", ["meso4.dfdc", "mesoinception4.paper", "efficientnet_lite0.noffpp"]
)
def test_int8_agrees_with_fp32_on_the_samples(name, samples, sample_calibration):
    model = load_model(name)
    fp32 = create_scorer(model, "openvino", output="logit")(samples)
    scorer = create_scorer(model, "openvino-int8", output="logit", calibration=sample_calibration)
    assert scorer.name == "openvino-int8"
    int8 = scorer(samples)
    assert np.abs(_sigmoid(int8) - _sigmoid(fp32)).max() <= 0.15
    assert not np.array_equal(int8, fp32)  # it is another graph
    # probabilities from the same cached graph, with the sigmoid in it
    p = create_scorer(model, "openvino-int8", calibration=sample_calibration)(samples)
    np.testing.assert_allclose(p, _sigmoid(int8), atol=1e-5)


@pytest.mark.parametrize(
    "name", ["meso4.dfdc", "mesoinception4.paper", "efficientnet_lite0.noffpp"]
)
def test_int8_agrees_with_fp32_on_held_out_validation_crops(name):
    if not VAL.is_dir():
        pytest.skip(f"{VAL} not present (../shared data is needed for this test)")
    files = image_files(VAL)
    calibration = np.stack([crop_whole(read_image(p), 256, "auto") for p in files[0::20][:100]])
    held = np.stack([crop_whole(read_image(p), 256, "auto") for p in files[7::10][:200]])
    model = load_model(name)
    fp32 = create_scorer(model, "openvino", output="logit")(held)
    int8 = create_scorer(model, "openvino-int8", output="logit", calibration=calibration)(held)
    change = np.abs(_sigmoid(int8) - _sigmoid(fp32))
    assert change.mean() <= 0.04
    assert change.max() <= 0.25
    assert np.corrcoef(int8, fp32)[0, 1] >= 0.98


def test_the_fused_ensemble_is_quantised_as_one_graph(samples, sample_calibration):
    model = load_model("ensemble.dfdc-f2f-paper")
    int8 = ModelScorer(model, "openvino-int8", calibration=sample_calibration)
    assert int8.fused and int8.name == "openvino-int8"
    fp32 = ModelScorer(model, "openvino")
    assert np.abs(int8(samples) - fp32(samples)).max() <= 0.15
    assert cached_path(model, crops_sha256(sample_calibration)) is not None


# --------------------------------------------------------------------------- auto and the card


@pytest.fixture
def quantised(sample_calibration):
    """mesoinception4.paper with its int8 graph (made on the samples) in the cache, card
    unmeasured."""
    model = load_model("mesoinception4.paper")
    _, record = quantize(model, sample_calibration, "samples")
    assert cached_path(model, record["sha256"]) is not None
    return model, record["sha256"]


def test_auto_never_picks_int8_without_a_recorded_auc_check(quantised, samples):
    model, _ = quantised
    assert not model.card.int8
    assert create_scorer(model, "auto").name == "openvino"
    assert ModelScorer(model, "auto").name == "openvino"
    # asked for by name, the graph in the cache runs: the user's choice, as bf16
    explicit = create_scorer(model, "openvino-int8")
    assert explicit.name == "openvino-int8" and explicit(samples).shape == (4,)


def test_the_explicit_backend_refuses_without_an_int8_graph():
    model = load_model("mesoinception4.paper")
    with pytest.raises(BackendError, match="no int8 graph of this model"):
        create_scorer(model, "openvino-int8")  # it never quantises on made-up data


@pytest.mark.parametrize(
    "changes",
    [
        {name: 0.0 for name in REQUIRED_SETS[:-1]},  # a required set not measured
        {**{name: 0.001 for name in REQUIRED_SETS}, REQUIRED_SETS[1]: -0.0051},
        {**{name: 0.001 for name in REQUIRED_SETS}, REQUIRED_SETS[0]: 0.02},
        {**{name: 0.001 for name in REQUIRED_SETS}, "ffpp_c40_videos": -0.03},  # recorded: counts
    ],
)
def test_auto_stays_fp32_when_a_change_is_over_the_tolerance_or_missing(quantised, changes):
    model, sha = quantised
    _with_card(model, _record(sha, changes))
    assert not record_passes(model.card)
    assert auto_int8(model) is None
    assert create_scorer(model, "auto").name == "openvino"


def test_auto_picks_int8_with_a_passing_record_for_the_cached_graph(quantised, samples):
    model, sha = quantised
    _with_card(model, _passing(sha))
    assert max(abs(v) for v in model.card.int8["auc_change"].values()) <= AUC_TOLERANCE
    scorer = create_scorer(model, "auto", output="logit")
    assert scorer.name == "openvino-int8"
    explicit = create_scorer(model, "openvino-int8", output="logit")
    np.testing.assert_array_equal(scorer(samples), explicit(samples))
    assert ModelScorer(model, "auto").name == "openvino-int8"


def test_auto_stays_fp32_when_the_measured_graph_is_not_the_cached_one(quantised):
    model, sha = quantised
    other = sha[::-1]  # a record made with other calibration crops
    _with_card(model, _passing(other))
    assert create_scorer(model, "auto").name == "openvino"


def test_a_graph_made_by_another_nncf_than_the_measured_one_is_not_used(quantised):
    import nncf

    model, sha = quantised
    _with_card(model, dict(_passing(sha), nncf=nncf.__version__))
    assert create_scorer(model, "auto").name == "openvino-int8"
    _with_card(model, dict(_passing(sha), nncf="0.0.1"))
    assert create_scorer(model, "auto").name == "openvino"


def test_changed_weights_never_meet_the_measured_int8_graph(quantised):
    model, sha = quantised
    _with_card(model, _passing(sha))
    with torch.no_grad():
        model.head[-1].bias.add_(0.5)
    assert cached_path(model, sha) is None
    assert create_scorer(model, "auto").name == "openvino"


def test_auto_picks_the_fused_int8_ensemble_only_with_its_own_record(sample_calibration):
    model = load_model("ensemble.dfdc-f2f-paper")
    _, record = quantize(model, sample_calibration, "samples")
    assert ModelScorer(model, "auto").name == "openvino"  # its card has no int8 record
    _with_card(model, _passing(record["sha256"]))
    scorer = ModelScorer(model, "auto")
    assert scorer.fused and scorer.name == "openvino-int8"


# --------------------------------------------------------------------------- data and card


def test_calibration_crops_come_evenly_from_both_classes():
    crops = calibration_crops(SAMPLES, 4)
    assert crops.shape == (4, 256, 256, 3) and crops.dtype == np.uint8
    assert crops_sha256(crops) == crops_sha256(calibration_crops(SAMPLES, 4))
    assert crops_sha256(crops) != crops_sha256(calibration_crops(SAMPLES, 2))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ([], "int8 must be an object"),
        ({"auc_change": {"a": 0.0}}, "int8.calibration"),
        (_record("abc", {"a": 0.0}), "sha256"),
        ({**_record("0" * 64, {"a": 0.0}), "calibration": {"data": "v", "n": 0}}, "n must"),
        (_record("0" * 64, {}), "auc_change"),
        (_record("0" * 64, {"a": "0.001"}), r"auc_change\['a'\]"),
        (_record("0" * 64, {"a": float("nan")}), r"auc_change\['a'\]"),
    ],
)
def test_the_card_refuses_a_malformed_int8_record(record, message):
    with pytest.raises(ValueError, match=message):
        ModelCard(name="m", arch="meso4", int8=record).check()


def test_the_int8_record_round_trips_through_json():
    card = ModelCard(name="m", arch="meso4", int8=_passing("0" * 64))
    assert ModelCard.from_json(card.to_json()).int8 == card.int8


def test_a_scan_records_which_int8_graph_scored_it(quantised):
    from mesonet.backends.int8_choice import inference_kind

    model, sha = quantised
    assert inference_kind(model, "openvino") == "exact"
    assert inference_kind(model, "openvino-bf16") == "bf16"
    kind = inference_kind(model, "openvino-int8")
    assert kind.startswith("int8 ") and sha[:32] in kind


def test_a_calibration_folder_without_images_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match="no images to calibrate on"):
        create_scorer(
            load_model("mesoinception4.paper"), "openvino-int8", calibration=tmp_path / "empty"
        )


# --------------------------------------------------------------------------- shipped statistics


def _outputs(graph, crops: np.ndarray) -> np.ndarray:
    import openvino as ov

    compiled = ov.Core().compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled(crops.transpose(0, 3, 1, 2).astype(np.float32) / 255)[0].reshape(-1)


def test_each_network_keeps_its_first_convolutions_and_named_members_in_fp32(
    sample_calibration,
):
    from mesonet.backends.fused import member_prefix
    from mesonet.backends.int8 import fp32_graph, fp32_ops

    model = load_model("ensemble.lite0-f2f")
    arch = [m.card.arch for m in model.members]
    lite, meso = member_prefix(arch.index("efficientnet_lite0")), member_prefix(arch.index("meso4"))
    graph = fp32_graph(model)
    ops = {op.get_friendly_name(): op.get_type_name() for op in graph.get_ops()}
    alone = fp32_ops(model, graph)
    assert fp32_ops(model, fp32_graph(model)) == alone  # the same names every build
    assert len(alone) == 6 and all(n.startswith(lite) and "Convolution" in ops[n] for n in alone)
    kept = fp32_ops(model, graph, ["meso4.f2f"])
    meso_convolutions = [n for n, t in ops.items() if n.startswith(meso) and t == "Convolution"]
    assert len(meso_convolutions) == 4 and set(alone + meso_convolutions) <= set(kept)
    quantised, _ = quantize(model, sample_calibration, "samples", fp32_members=["meso4.f2f"])
    fed, quantisers = {}, []  # convolution name: whether an int8 quantiser feeds it
    for op in quantised.get_ops():
        if op.get_type_name() == "FakeQuantize":
            quantisers.append(op.get_friendly_name())
        if op.get_type_name() in ("Convolution", "GroupConvolution"):
            source = op.input_value(0).get_node()
            fed[op.get_friendly_name()] = source.get_type_name() == "FakeQuantize"
    assert not any(fed[name] for name in alone + meso_convolutions)
    assert sum(fed.values()) >= 40  # the rest of the EfficientNet is int8
    assert not any(name.startswith(meso) for name in quantisers)  # the Meso-4 is all fp32


@pytest.mark.parametrize(
    ("members", "message"),
    [(["meso4.dfdc"], "not members of"), (["meso4.f2f", "efficientnet_lite0.noffpp"], "nothing")],
)
def test_fp32_members_must_be_members_and_leave_one_to_quantise(
    sample_calibration, members, message
):
    with pytest.raises(ValueError, match=message):
        quantize(load_model("ensemble.lite0-f2f"), sample_calibration, "x", fp32_members=members)


def test_the_record_s_fp32_members_pick_the_graph_auto_runs(sample_calibration):
    model = load_model("ensemble.lite0-f2f")
    _, record = quantize(model, sample_calibration, "samples")  # all members quantised
    sha = record["sha256"]
    _with_card(model, dict(_passing(sha), fp32_members=["meso4.f2f"]))
    assert auto_int8(model) is None  # the recorded recipe's graph was never made
    quantize(model, sample_calibration, "samples", fp32_members=["meso4.f2f"])
    assert auto_int8(model) == cached_path(model, sha, ["meso4.f2f"]) != cached_path(model, sha)


def test_the_graph_rebuilt_from_stored_statistics_is_the_graph_measured(
    samples, sample_calibration, tmp_path, monkeypatch
):
    from mesonet.backends.int8 import STATISTICS

    model = load_model("ensemble.lite0-f2f")
    measured, record = quantize(model, sample_calibration, "samples")
    stored = tmp_path / "stats.safetensors"
    stored.write_bytes((cached_path(model, record["sha256"]).parent / STATISTICS).read_bytes())
    monkeypatch.setenv("MESONET_CACHE", str(tmp_path / "another-cache"))
    rebuilt, again = quantize(model, statistics=stored)
    assert again == record
    np.testing.assert_array_equal(_outputs(rebuilt, samples), _outputs(measured, samples))
    made_from = hashlib.sha256(stored.read_bytes()).hexdigest()
    assert cached_path(model, record["sha256"], (), made_from) is not None  # kept for next run
    assert cached_path(model, record["sha256"]) is None  # never under the crops' own name


def _shipping_copy(folder: Path, calibration: np.ndarray, digest: str | None = None) -> Path:
    """A copy of mesoinception4.paper in ``folder`` whose card passes int8 and ships its
    statistics."""
    import hashlib

    from mesonet.backends.int8 import STATISTICS
    from mesonet.models.registry import save_model

    model = load_model("mesoinception4.paper")
    _, record = quantize(model, calibration, "samples")
    stats = folder / "int8" / "copy.safetensors"
    stats.parent.mkdir(parents=True)
    stats.write_bytes((cached_path(model, record["sha256"]).parent / STATISTICS).read_bytes())
    shipped = {
        "file": "int8/copy.safetensors",
        "sha256": digest or hashlib.sha256(stats.read_bytes()).hexdigest(),
    }
    card = dataclasses.replace(
        model.card, int8=dict(_passing(record["sha256"]), statistics=shipped)
    )
    save_model(model, folder / "copy.safetensors", card)
    return folder / "copy.safetensors"


def test_auto_rebuilds_the_measured_graph_from_the_statistics_the_card_ships(
    sample_calibration, samples, tmp_path, monkeypatch, capfd
):
    path = _shipping_copy(tmp_path, sample_calibration)
    reference = create_scorer(load_model(path), "openvino-int8", output="logit")(samples)
    monkeypatch.setenv("MESONET_CACHE", str(tmp_path / "fresh-cache"))  # a new machine
    model = load_model(path)
    capfd.readouterr()
    assert auto_int8(model) is not None
    assert capfd.readouterr().out == ""  # NNCF's progress bars kept off the records' stream
    scorer = create_scorer(model, "auto", output="logit")
    assert scorer.name == "openvino-int8"
    np.testing.assert_array_equal(scorer(samples), reference)


def test_statistics_that_do_not_match_their_digest_are_not_used(
    sample_calibration, tmp_path, monkeypatch
):
    path = _shipping_copy(tmp_path, sample_calibration, digest="0" * 64)
    monkeypatch.setenv("MESONET_CACHE", str(tmp_path / "fresh-cache"))
    model = load_model(path)
    assert auto_int8(model) is None
    assert create_scorer(model, "auto").name == "openvino"


@pytest.mark.parametrize("file", ["/etc/passwd", "../outside.safetensors", "a/../../b"])
def test_the_card_refuses_statistics_outside_its_folder(file):
    record = dict(_passing("a" * 64), statistics={"file": file, "sha256": "b" * 64})
    with pytest.raises(ValueError, match="inside the card's folder"):
        ModelCard(name="x", arch="meso4", int8=record).check()


def test_predict_says_the_default_runs_in_int8():
    from typer.testing import CliRunner

    from mesonet.cli import app

    sample = sorted(SAMPLES.rglob("*.jpg"))[0]
    result = CliRunner().invoke(app, ["predict", str(sample)])
    assert result.exit_code == 0, result.output
    assert "model ensemble.lite0-f2f (int8), threshold" in result.stdout
    exact = CliRunner().invoke(app, ["predict", str(sample), "--backend", "openvino"])
    assert "model ensemble.lite0-f2f, threshold" in exact.stdout


def test_quantising_in_two_threads_runs_one_at_a_time_and_restores_stdout(
    sample_calibration, monkeypatch
):
    """The redirection keeping NNCF's bars off stdout is process-wide: two overlapping ones
    could leave stdout on a discarded buffer, so quantisations run one at a time."""
    import sys
    import threading
    import time

    from mesonet.backends import int8_statistics

    inner = int8_statistics._quantize_graph
    active, overlap, errors = [0], [0], []

    def traced(*args, **kwargs):
        active[0] += 1
        overlap[0] = max(overlap[0], active[0])
        time.sleep(0.2)  # let the other thread in, if nothing keeps it out
        try:
            return inner(*args, **kwargs)
        finally:
            active[0] -= 1

    monkeypatch.setattr(int8_statistics, "_quantize_graph", traced)
    model = load_model("mesoinception4.paper")
    before = sys.stdout

    def work() -> None:
        try:
            quantize(model, sample_calibration, "samples", save=False)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and overlap[0] == 1 and sys.stdout is before


def test_the_module_command_quantises_a_folder_and_says_where_or_why_not(capsys, tmp_path):
    import json

    from mesonet.backends.int8 import main

    assert main(["mesoinception4.paper", str(SAMPLES), "-n", "4"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["n"] == 4 and shown["fp32_members"] == [] and Path(shown["cached"]).is_file()
    assert main(["nosuch", str(SAMPLES)]) == 2
    assert main(["mesoinception4.paper", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nosuch'" in err and "not a folder" in err


def test_statistics_are_never_applied_to_other_weights(sample_calibration, tmp_path, monkeypatch):
    path = _shipping_copy(tmp_path, sample_calibration)
    stats = tmp_path / "int8" / "copy.safetensors"
    monkeypatch.setenv("MESONET_CACHE", str(tmp_path / "fresh-cache"))
    model = load_model(path)
    with torch.no_grad():
        model.head[-1].bias.add_(0.5)  # retrained or replaced under the same name
    with pytest.raises(ValueError, match="made for other weights"):
        quantize(model, statistics=stats)
    assert auto_int8(model) is None  # auto: a warning, and fp32
