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
from mesonet.faces import crop_whole
from mesonet.media import read_image
from mesonet.models import create_model, load_model

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "mesonet" / "samples"
ON_OPENVINO = pytest.mark.skipif(
    "openvino" not in available_backends(), reason="openvino not installed"
)


@pytest.fixture(autouse=True)
def own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MESONET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MESONET_NO_CACHE", raising=False)


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    images = [crop_whole(read_image(p), 256, "auto") for p in sorted(SAMPLES.rglob("*.jpg"))]
    return np.stack(images)


@pytest.fixture(scope="module")
def calibration(samples) -> np.ndarray:
    return np.concatenate([samples, np.ascontiguousarray(samples[:, :, ::-1])])


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
    calibration, samples, tmp_path, monkeypatch
):
    pytest.importorskip("nncf")
    original = _shipping(tmp_path / "a", calibration)
    poisoned = _shipping(tmp_path / "b", calibration, scale=0.05)
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
    damage, calibration, samples, tmp_path, monkeypatch, caplog
):
    pytest.importorskip("nncf")
    path = _shipping(tmp_path / "a", calibration)
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
    failing_save, calibration, samples, tmp_path, monkeypatch, caplog
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
    calibration, samples, tmp_path, monkeypatch, caplog
):
    pytest.importorskip("nncf")
    import openvino as ov

    path = _shipping(tmp_path / "a", calibration)
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
    calibration, samples, tmp_path, monkeypatch
):
    pytest.importorskip("nncf")
    from mesonet.backends import int8_choice

    path = _shipping(tmp_path / "a", calibration)
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
