"""Scan state that knows its settings (issue 25 items 3, 4 and 16): a resume never mixes
records made with other settings or another model of the same name, error records can be
analysed again, and two file names never share a record key."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from hostile import png_bytes
from hypothesis import given
from hypothesis import strategies as st

from mesonet.cli import main
from mesonet.destinations import OutputError
from mesonet.errors import MesonetError
from mesonet.models import ModelCard, create_model, load_model, save_model
from mesonet.models.card import tensors_sha256
from mesonet.pipeline import Detector
from mesonet.results import safe_text
from mesonet.scan import read_records, scan
from mesonet.scan.state import read_settings, scan_settings, settings_path

FAST = {"faces": "none", "backend": "torch"}


def _model(path: Path, seed: int = 0, threshold: float = 0.5) -> Path:
    torch.manual_seed(seed)
    card = ModelCard(name="meso4.state", arch="meso4", threshold=threshold)
    save_model(create_model("meso4"), path, card)
    return path


@pytest.fixture
def model(tmp_path) -> Path:
    return _model(tmp_path / "m.safetensors")


@pytest.fixture
def pngs(tmp_path) -> Path:
    import numpy as np

    folder = tmp_path / "imgs"
    folder.mkdir()
    for n in range(6):
        pixels = np.random.default_rng(n).integers(0, 255, (40, 40, 3), dtype=np.uint8)
        (folder / f"{n}.png").write_bytes(png_bytes(pixels))
    return folder


def _cut(out: Path, keep: int) -> None:
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:keep]))


def _cli(argv: list, monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["mesonet", *map(str, argv)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


# --------------------------------------------------------------------------- item 4


def test_resume_with_other_settings_is_refused_saying_which_differ(
    model, pngs, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "mix.jsonl"
    scan(pngs, out, model=model, threshold=0.99, **FAST)
    _cut(out, 2)
    with pytest.raises(MesonetError, match=r"threshold: 0.99 -> 0.01.*--restart"):
        scan(pngs, out, model=model, threshold=0.01, **FAST)
    argv = ["scan", pngs, "-o", out, "-m", model, "--backend", "torch", "--threshold", "0.01"]
    code, stdout, err = _cli([*argv, "--faces", "detect"], monkeypatch, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and stdout == "" and len(lines) == 1, err
    assert "faces: none -> detect" in lines[0] and "threshold: 0.99 -> 0.01" in lines[0]
    assert len(out.read_text().splitlines()) == 2  # nothing added
    # --restart: every record made again, all with the new threshold
    code, _, err = _cli([*argv, "--faces", "none", "--restart"], monkeypatch, capsys)
    records = list(read_records(out))
    assert code == 0 and len(records) == 6, err
    assert all(r["label"] == "fake" for r in records)  # p >= 0.01 everywhere
    assert read_settings(out)["threshold"] == 0.01


def test_a_scan_made_in_fp32_resumed_in_int8_is_refused_saying_how_to_match(pngs, tmp_path):
    out = tmp_path / "default.jsonl"
    scan(pngs, out, faces="none", backend="openvino")  # the default, exact
    _cut(out, 2)
    if not str(scan_settings(Detector(faces="none")).get("inference")).startswith("int8"):
        pytest.skip("the default does not run in int8 here (no NNCF or no writable cache)")
    with pytest.raises(MesonetError, match=r"inference: exact -> int8.*--backend openvino as"):
        scan(pngs, out, faces="none")


def test_a_recalibrated_or_retrained_model_of_the_same_name_is_refused(model, pngs, tmp_path):
    out = tmp_path / "o.jsonl"
    scan(pngs, out, model=model, **FAST)
    _cut(out, 3)
    loaded = load_model(model)
    card = loaded.card
    card.threshold = 0.7  # a recalibration keeps the file's name and the model's name
    save_model(loaded, model, card)
    with pytest.raises(MesonetError, match="model card"):
        scan(pngs, out, model=model, **FAST)
    _model(model, seed=1)  # retrained: same name and card, other weights
    with pytest.raises(MesonetError, match=r"model weights \(sha256\)"):
        scan(pngs, out, model=model, **FAST)
    assert len(list(read_records(out))) == 3


def test_settings_cover_every_ensemble_member_and_are_written_before_the_records(
    model, pngs, tmp_path
):
    other = _model(tmp_path / "n.safetensors", seed=3)
    detector = Detector(f"{model}+{other}", **FAST)
    settings = scan_settings(detector)
    members = [load_model(model), load_model(other)]
    assert settings["weights"] == [tensors_sha256(m.state_dict()) for m in members]
    out = tmp_path / "e.jsonl"
    scan(pngs, out, model=f"{model}+{other}", **FAST)
    stored = json.loads(settings_path(out).read_text())
    assert stored["format"] == 1 and stored["settings"] == json.loads(json.dumps(settings))


def test_an_output_without_settings_resumes_only_with_its_model(model, pngs, tmp_path, caplog):
    out = tmp_path / "old.jsonl"
    record = {"path": str(pngs / "0.png"), "status": "ok", "model": "other.model"}
    out.write_text(json.dumps(record) + "\n")
    with pytest.raises(MesonetError, match="other.model"):
        scan(pngs, out, model=model, **FAST)
    out.write_text(json.dumps({**record, "model": "meso4.state"}) + "\n")
    summary = scan(pngs, out, model=model, **FAST)
    assert summary.skipped == 1 and "records no settings" in caplog.text
    assert read_settings(out) is not None


def test_an_unreadable_settings_record_is_refused_with_a_way_out(model, pngs, tmp_path):
    out = tmp_path / "o.jsonl"
    scan(pngs, out, model=model, **FAST)
    settings_path(out).write_text("{not json")
    with pytest.raises(MesonetError, match="--restart"):
        scan(pngs, out, model=model, **FAST)
    assert scan(pngs, out, model=model, restart=True, **FAST).written == 6


def test_a_fifo_at_the_settings_name_is_refused_before_work(model, pngs, tmp_path):
    out = tmp_path / "o.jsonl"
    os.mkfifo(settings_path(out))
    with pytest.raises(OutputError, match="not a regular file"):
        scan(pngs, out, model=model, **FAST)
    assert not out.exists()


# --------------------------------------------------------------------------- item 16


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_retry_errors_reanalyses_error_records(suffix, model, pngs, tmp_path, monkeypatch, capsys):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    broken = pngs / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    out = tmp_path / f"o{suffix}"
    first = scan(pngs, out, model=model, **FAST)
    assert first.failed == 1
    broken.write_bytes(png_bytes())  # repaired
    argv = ["scan", pngs, "-o", out, "-m", model, "--faces", "none", "--backend", "torch"]
    code, stdout, err = _cli(argv, monkeypatch, capsys)
    assert code == 1 and "0 of 7 inputs analysed" in stdout and "--retry-errors" in err
    code, stdout, err = _cli([*argv, "--retry-errors"], monkeypatch, capsys)
    assert code == 0, err
    assert "1 of 7 inputs analysed" in stdout and "analysed again" in err
    records = list(read_records(out))
    assert len(records) == 7 and len({r["path"] for r in records}) == 7
    assert all(r["status"] == "ok" for r in records)


# --------------------------------------------------------------------------- item 3


def test_two_file_names_never_share_a_record_key(model, tmp_path):
    folder = tmp_path / "names"
    folder.mkdir()
    literal = folder / "a\\xff.png"  # a backslash, x, f, f
    raw = folder / os.fsdecode(b"a\xff.png")  # the byte 0xff
    literal.write_bytes(png_bytes())
    raw.write_bytes(png_bytes())
    out = tmp_path / "c.jsonl"
    first = scan(folder, out, model=model, **FAST)
    paths = {r["path"] for r in read_records(out)}
    assert first.written == 2 and len(paths) == 2
    again = scan(folder, out, model=model, **FAST)
    assert (again.skipped, again.written) == (2, 0)


_ESCAPE = re.compile(r"\\x([0-9a-f]{2})|\\u([0-9a-f]{4})")


def _unescape(text: str) -> str:
    """The inverse of safe_text: proves two names never give the same text."""

    def back(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            code = int(match.group(1), 16)
            return "\\" if code == 0x5C else chr(0xDC00 + code)
        return chr(int(match.group(2), 16))

    return _ESCAPE.sub(back, text)


names = st.text(
    st.sampled_from(
        ["\\", "x", "u", "f", "F", "0", "5", "c", "a", "é", "\udcff", "\udc80", "\ud800"]
    ),
    max_size=12,
)


@given(names)
def test_safe_text_is_lossless_and_encodable(text):
    shown = safe_text(text)
    shown.encode("utf-8")
    assert _unescape(shown) == text
    if "\\" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert shown == text  # plain names read as they are
