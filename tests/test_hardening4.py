"""Hardening 4 (issue 34): the int8 cache proves what it holds, concurrent first builds,
card numbers within float32, caches that cannot be written, video models where a frame
model is expected, and records that name their engine. Each test is named after what it
guards and fails without its fix."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mesonet.backends import available_backends, create_scorer
from mesonet.models import create_model, load_model

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "mesonet" / "samples"
ON_OPENVINO = pytest.mark.skipif(
    "openvino" not in available_backends(), reason="openvino not installed"
)


pytestmark = pytest.mark.usefixtures("own_cache")  # tests/conftest.py


def _new_cache(monkeypatch, tmp_path: Path, name: str) -> Path:
    """A fresh, empty cache (a new machine)."""
    monkeypatch.setenv("MESONET_CACHE", str(tmp_path / name))
    return tmp_path / name


def _shipping(folder: Path, calibration: np.ndarray, scale: float = 1.0) -> Path:
    """A copy of mesoinception4.paper in ``folder`` whose card passes int8 and ships its
    statistics; ``scale`` multiplies every ``max_values`` statistic (its metadata kept, its
    new sha256 in the card), as a card made to poison another's graph would."""
    from safetensors import safe_open
    from safetensors.numpy import save

    from mesonet.backends.int8 import REQUIRED_SETS, STATISTICS, cached_path, quantize
    from mesonet.models.registry import save_model

    model = load_model("mesoinception4.paper")
    _, record = quantize(model, calibration, "samples")
    made = cached_path(model, record["sha256"]).parent / STATISTICS
    with safe_open(str(made), framework="numpy") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not iterable
    for name, value in tensors.items():
        if name.endswith("max_values"):
            tensors[name] = (value * scale).astype(value.dtype)
    stats = folder / "int8" / "copy.safetensors"
    stats.parent.mkdir(parents=True)
    stats.write_bytes(save(tensors, metadata=metadata))
    shipped = {
        "file": "int8/copy.safetensors",
        "sha256": hashlib.sha256(stats.read_bytes()).hexdigest(),
    }
    int8 = {
        "calibration": {"data": "samples", "n": len(calibration), "sha256": record["sha256"]},
        "auc_change": {name: -0.001 for name in REQUIRED_SETS},
        "statistics": shipped,
    }
    save_model(model, folder / "copy.safetensors", dataclasses.replace(model.card, int8=int8))
    return folder / "copy.safetensors"


# --------------------------------------------------------------------------- item 1


@ON_OPENVINO
def test_another_card_s_statistics_never_poison_the_graph_a_card_measured(
    sample_calibration, samples, tmp_path, monkeypatch
):
    pytest.importorskip("nncf")
    original = _shipping(tmp_path / "a", sample_calibration)
    poisoned = _shipping(tmp_path / "b", sample_calibration, scale=0.05)
    _new_cache(monkeypatch, tmp_path, "fresh")
    reference = create_scorer(load_model(original), "auto", output="logit")
    assert reference.name == "openvino-int8"
    expected = reference(samples)
    _new_cache(monkeypatch, tmp_path, "shared")
    other = create_scorer(load_model(poisoned), "auto", output="logit")  # same weights, crops
    assert other.name == "openvino-int8"
    assert np.abs(other(samples) - expected).max() > 1e-3  # its statistics do differ
    again = create_scorer(load_model(original), "auto", output="logit")
    np.testing.assert_array_equal(again(samples), expected)


# --------------------------------------------------------------------------- item 4


def _every_97th_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[::97] = bytes((b ^ 0x5A) for b in data[::97])
    path.write_bytes(bytes(data))


@ON_OPENVINO
@pytest.mark.parametrize("damage", ["truncate model.xml", "every 97th byte of model.bin"])
def test_a_damaged_int8_entry_is_rebuilt_with_a_warning(
    damage, sample_calibration, samples, tmp_path, monkeypatch, caplog
):
    pytest.importorskip("nncf")
    path = _shipping(tmp_path / "a", sample_calibration)
    cache = _new_cache(monkeypatch, tmp_path, "fresh")
    expected = create_scorer(load_model(path), "auto", output="logit")(samples)
    (entry,) = (cache / "openvino-int8").iterdir()
    if damage.startswith("truncate"):
        with open(entry / "model.xml", "r+b") as f:
            f.truncate(1000)
    else:
        _every_97th_byte(entry / "model.bin")
    with caplog.at_level(logging.WARNING):
        scorer = create_scorer(load_model(path), "auto", output="logit")
        assert scorer.name == "openvino-int8"
        np.testing.assert_array_equal(scorer(samples), expected)
    assert any("damaged cache entry" in r.getMessage() for r in caplog.records)
    assert (entry / "sha256.json").is_file()  # rebuilt, with its digests


def _traced_model(seed: int = 0) -> torch.nn.Module:
    """A Meso-4 that normalises: the direct graph builder refuses it, so it is traced."""
    torch.manual_seed(seed)
    return create_model("meso4", None, [0.2, 0.3, 0.1], [0.5, 0.6, 0.7]).eval()


@ON_OPENVINO
def test_a_traced_graph_whose_weights_were_altered_is_converted_again(tmp_path, caplog):
    model = _traced_model()
    x = torch.rand(2, 3, 256, 256)
    create_scorer(model, "openvino", output="logit")(x)
    (entry,) = (tmp_path / "cache" / "openvino").iterdir()
    _every_97th_byte(entry / "model.bin")  # the same size: only its digest tells
    with caplog.at_level(logging.WARNING):
        got = create_scorer(model, "openvino", output="logit")(x)
    with torch.no_grad():
        np.testing.assert_allclose(got, model.logits(x).numpy(), atol=1e-4)
    assert any("damaged cache entry" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- item 7


@pytest.fixture
def failing_save(monkeypatch):
    """``openvino.save_model`` failing as it does on a full disk."""
    import openvino as ov

    def full(*args, **kwargs):
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(ov, "save_model", full)


@ON_OPENVINO
def test_a_cache_that_cannot_be_written_never_stops_a_prediction(
    failing_save, sample_calibration, samples, tmp_path, monkeypatch, caplog
):
    model = _traced_model()
    x = torch.rand(2, 3, 256, 256)
    with caplog.at_level(logging.WARNING):
        first = create_scorer(model, "openvino", output="logit")(x)
        second = create_scorer(model, "openvino", output="logit")(x)
    with torch.no_grad():
        expected = model.logits(x).numpy()
    np.testing.assert_allclose(first, expected, atol=1e-4)
    np.testing.assert_allclose(second, expected, atol=1e-4)
    warned = [r for r in caplog.records if "cannot write the cache" in r.getMessage()]
    assert len(warned) == 1  # one warning, then no write is tried


@ON_OPENVINO
def test_int8_without_a_writable_cache_runs_fp32_with_one_warning(
    sample_calibration, samples, tmp_path, monkeypatch, caplog
):
    pytest.importorskip("nncf")
    import openvino as ov

    path = _shipping(tmp_path / "a", sample_calibration)
    _new_cache(monkeypatch, tmp_path, "full")
    monkeypatch.setattr(
        ov, "save_model", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("iostream error"))
    )
    from mesonet import Detector

    with caplog.at_level(logging.WARNING):
        detector = Detector(path, faces="none")
        result = detector.predict(sorted(SAMPLES.rglob("*.jpg"))[0])
    assert result.status == "ok" and detector.backend == "openvino"
    assert sum("cannot write the cache" in r.getMessage() for r in caplog.records) == 1


# --------------------------------------------------------------------------- item 2


@ON_OPENVINO
def test_concurrent_first_requests_wait_for_one_trace(tmp_path, monkeypatch):
    import openvino as ov

    calls = []
    real = ov.convert_model

    def slow(*args, **kwargs):
        calls.append(1)
        time.sleep(0.5)  # let the other thread in, if nothing keeps it out
        return real(*args, **kwargs)

    monkeypatch.setattr(ov, "convert_model", slow)
    x = torch.rand(2, 3, 256, 256)
    models = [_traced_model(), _traced_model()]  # two workers, each its own copy
    out, errors = [None, None], []

    def work(i: int) -> None:
        try:
            out[i] = create_scorer(models[i], "openvino", output="logit")(x)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(calls) == 1
    np.testing.assert_allclose(out[0], out[1], atol=1e-5)


@ON_OPENVINO
def test_concurrent_first_requests_wait_for_one_int8_build(
    sample_calibration, samples, tmp_path, monkeypatch
):
    pytest.importorskip("nncf")
    from mesonet.backends import int8_choice

    path = _shipping(tmp_path / "a", sample_calibration)
    cache = _new_cache(monkeypatch, tmp_path, "fresh")
    builds = []
    real = int8_choice.quantize

    def counted(*args, **kwargs):
        builds.append(1)
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(int8_choice, "quantize", counted)
    names, errors = [None, None], []

    def work(i: int) -> None:
        try:
            names[i] = create_scorer(load_model(path), "auto", output="logit").name
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and names == ["openvino-int8", "openvino-int8"] and len(builds) == 1
    assert len(list((cache / "openvino-int8").iterdir())) == 1


# --------------------------------------------------------------------------- item 2: bodies

TestClient = pytest.importorskip("fastapi.testclient").TestClient
SAMPLE = sorted(SAMPLES.rglob("*.jpg"))[0]
GRAPH_DUMP = (
    "Tracing failed sanity checks!\nERROR: Graphs differed across invocations!\n"
    + "\tGraph diff:\n\t\tgraph(%self.1 : __torch__.x,\n" * 5000
    + "  File /usr/lib/python3/site-packages/torch/jit/_trace.py, line 123\n"
)


def _cli(argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """``mesonet argv`` through main(), as the command runs: exit code, stdout, stderr."""
    import sys

    from mesonet.cli import main

    monkeypatch.setattr(sys, "argv", ["mesonet", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _post(client, data=None):
    with SAMPLE.open("rb") as fh:
        return client.post("/api/v1/detect", files={"file": ("face.jpg", fh)}, data=data)


def test_service_errors_are_one_line_without_graph_dumps_or_server_paths(tmp_path, monkeypatch):
    from mesonet.pipeline.analysis import Analysis
    from mesonet.serve import create_app

    def traced(*args, **kwargs):
        raise RuntimeError(f"{tmp_path}/weights/x.xml: " + GRAPH_DUMP)

    monkeypatch.setattr(Analysis, "image", traced)
    with TestClient(create_app("meso4.f2f", tmp_dir=tmp_path / "up")) as client:
        answer = _post(client)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert len(answer.content) < 1000 and "\n" not in detail
    assert "Tracing failed sanity checks" in detail and str(tmp_path) not in detail
    assert "Graphs differed" not in detail and "/usr/lib" not in detail


def test_a_model_refused_when_a_request_picks_it_is_a_422_not_a_500(tmp_path):
    from mesonet.errors import ModelError
    from mesonet.serve import create_app

    def refuse(name):
        raise ModelError(f"/srv/models/{name}.safetensors: weights do not match")

    app = create_app("meso4.f2f", tmp_dir=tmp_path / "up", model_factory=refuse)
    with TestClient(app) as client:
        answer = _post(client, {"model": "meso4.df"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == "model 'meso4.df': meso4.df.safetensors: weights do not match"


# --------------------------------------------------------------------------- item 3


def _card_copy(tmp_path: Path, **fields) -> Path:
    """efficientnet_lite0.noffpp with ``fields`` changed in its card, its tensors (and
    their sha256) unchanged."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save

    from mesonet.models.registry import CARD_KEY, resolve_model_path

    with safe_open(str(resolve_model_path("efficientnet_lite0.noffpp")), framework="pt") as f:
        card = json.loads(f.metadata()[CARD_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not iterable
    card.update(fields)
    path = tmp_path / "copy.safetensors"
    path.write_bytes(save(tensors, metadata={CARD_KEY: json.dumps(card)}))
    return path


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("std", [1e-300, 1e-300, 1e-300]),
        ("std", [1e300, 1e300, 1e300]),
        ("mean", [1e300, 1e300, 1e300]),
        ("mean", [-1e300, -1e300, -1e300]),
    ],
)
def test_card_numbers_float32_cannot_compute_are_refused_in_one_line(
    field, value, tmp_path, monkeypatch, capsys
):
    path = _card_copy(tmp_path, **{field: value})
    code, out, err = _cli(["predict", str(SAMPLE), "--model", str(path)], monkeypatch, capsys)
    (line,) = err.strip().splitlines()
    assert code == 2 and out == ""
    assert f"{field} must be a list of 3" in line and "from 0" in line


def test_card_numbers_within_their_bounds_still_load(tmp_path):
    path = _card_copy(tmp_path, mean=[0.0, 0.5, 1.0], std=[0.001, 1.0, 1000.0])
    assert load_model(path).card.std == [0.001, 1.0, 1000.0]


# --------------------------------------------------------------------------- item 8


def test_a_video_model_in_an_ensemble_is_refused_up_front_by_the_cli(monkeypatch, capsys):
    argv = ["predict", str(SAMPLE), "--model", "meso4.f2f+temporal_conv.lite0-ffpp"]
    code, out, err = _cli(argv, monkeypatch, capsys)
    (line,) = err.strip().splitlines()
    assert code == 2 and out == "" and "temporal_conv.lite0-ffpp is a video model" in line


def test_a_video_model_in_an_ensemble_card_is_refused(tmp_path):
    import json

    from mesonet.errors import ModelError

    card = {
        "name": "mixed",
        "arch": "ensemble",
        "members": [{"model": "meso4.f2f"}, {"model": "temporal_conv.lite0-ffpp"}],
    }
    (tmp_path / "mixed.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="is a video model: it cannot be a member"):
        load_model(tmp_path / "mixed.json")


@pytest.mark.parametrize(
    "model", ["temporal_conv.lite0-ffpp", "meso4.f2f+temporal_conv.lite0-ffpp"]
)
def test_a_video_model_as_a_request_s_model_is_a_422_up_front(model, tmp_path):
    from mesonet.serve import create_app

    with TestClient(create_app("meso4.f2f", tmp_dir=tmp_path / "up")) as client:
        answer = _post(client, {"model": model})
    assert answer.status_code == 422, answer.text
    assert (
        "temporal_conv.lite0-ffpp is a video model: send it as video_model"
        in (answer.json()["detail"])
    )


# --------------------------------------------------------------------------- item 10


@ON_OPENVINO
def test_without_a_cache_the_service_still_runs_the_default_in_int8(tmp_path, monkeypatch):
    from mesonet.models import default_model_name
    from mesonet.serve import create_app

    monkeypatch.setenv("MESONET_NO_CACHE", "1")  # the int8 graph ships: no cache needed
    with TestClient(create_app(None, tmp_dir=tmp_path / "up")) as client:
        shown = client.get("/api/v1/models").json()
    assert shown["serving"]["backend"] == "openvino-int8"
    assert shown["int8"] == [default_model_name()]


@ON_OPENVINO
def test_the_service_lists_a_model_as_int8_only_as_it_runs_it(tmp_path):
    from mesonet import Detector
    from mesonet.backends.int8_choice import record_passes
    from mesonet.models import list_models
    from mesonet.serve import create_app

    passing = [card.name for card in list_models() if record_passes(card)]
    assert passing  # the bundled default's record
    app = create_app(
        tmp_dir=tmp_path / "up", detector_factory=lambda: Detector(passing[0], backend="openvino")
    )
    with TestClient(app) as client:
        shown = client.get("/api/v1/models").json()
    assert passing[0] not in shown["int8"]  # served in fp32 here, whatever its card says


def test_the_int8_command_refuses_no_crops_in_one_line(capsys):
    from mesonet.backends.int8 import main

    assert main(["meso4.f2f", str(SAMPLES), "-n", "0"]) == 2
    assert capsys.readouterr().err == "error: -n must be at least 1 crop, not 0\n"


def test_a_frame_limit_under_a_tenth_of_a_megapixel_is_reported_as_given():
    from mesonet.budget import AnalysisLimits, BudgetError

    with pytest.raises(BudgetError, match=r"\(0\.17 MP\), over the 0\.05 MP limit"):
        AnalysisLimits(max_frame_pixels=50_000).check_frame_size(480, 360)


# --------------------------------------------------------------------------- item 12


def test_every_record_names_the_engine_that_scored_it(tmp_path):
    import csv
    import io

    from mesonet import Detector
    from mesonet.results import csv_header, to_csv_line

    detector = Detector("meso4.f2f", faces="none", backend="torch")
    (image,) = detector.predict_many([SAMPLE])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    error = detector.predict(broken)
    assert image.to_dict()["backend"] == error.to_dict()["backend"] == "torch"
    assert list(image.to_dict())[:9] == [
        "path", "kind", "status", "fake_probability", "label", "verdict", "model", "backend",
        "faces",
    ]  # fmt: skip
    (row,) = csv.DictReader(io.StringIO(csv_header() + to_csv_line(image)))
    assert row["backend"] == "torch"


def test_the_api_and_json_records_name_their_engine(tmp_path):
    import json

    from typer.testing import CliRunner

    from mesonet.cli import app
    from mesonet.serve import create_app

    out = CliRunner().invoke(
        app, ["predict", str(SAMPLE), "--model", "meso4.f2f", "--backend", "torch", "-f", "json"]
    )
    assert json.loads(out.stdout)[0]["backend"] == "torch"
    from mesonet import Detector

    def factory():
        return Detector("meso4.f2f", backend="torch")

    with TestClient(create_app(tmp_dir=tmp_path / "up", detector_factory=factory)) as client:
        assert _post(client).json()["backend"] == "torch"
