"""Outputs that cannot destroy inputs (issue 25): the one way every output is checked and
written (:mod:`mesonet.destinations`), through predict, annotate, scan, calibrate and train.

Each test is named after what it guards; the repros are the issue's items 1, 2, 10, 13, 15,
17 and 18 (file modes).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from hostile import png_bytes

from mesonet import destinations
from mesonet.cli import main
from mesonet.destinations import OutputError, check_output_file, replacing, write_output
from mesonet.models import ModelCard, create_model, save_ensemble, save_model

FAST = ["--faces", "none", "--backend", "torch"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "meso4.out.safetensors"
    save_model(create_model("meso4"), path, ModelCard(name="meso4.out", arch="meso4"))
    return path


@pytest.fixture
def vic(tmp_path) -> Path:
    """A folder of three small face crops."""
    folder = tmp_path / "vic"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (folder / name).write_bytes(png_bytes())
    return folder


def cli(argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """``mesonet argv`` through main(): exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["mesonet", *map(str, argv)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def refused(argv: list[str], monkeypatch, capsys, *words: str) -> str:
    """Run ``argv``; it must exit 2 with one error line holding ``words``, and no records."""
    code, out, err = cli(argv, monkeypatch, capsys)
    lines = err.strip().splitlines()
    assert code == 2, (argv, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert out == "", out
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- item 1


def test_predict_output_onto_its_own_input_is_refused_and_the_input_kept(
    model_path, vic, monkeypatch, capsys
):
    image = vic / "a.png"
    before = image.read_bytes()
    base = ["predict", vic, "-m", model_path, *FAST, "-f", "csv", "-o"]
    refused([*base, image], monkeypatch, capsys, str(image))
    # `predict -o *.jpg`: the first image is the output, the others the inputs
    glob = ["predict", "-o", image, vic / "b.png", vic / "c.png", "-m", model_path, *FAST]
    refused(glob, monkeypatch, capsys, "named like an image or video")
    assert image.read_bytes() == before
    # the same file under another name (a hard link) is still the input
    alias = vic.parent / "alias.csv"
    os.link(image, alias)
    refused(["predict", image, "-m", model_path, *FAST, "-o", alias], monkeypatch, capsys, "inputs")
    assert image.read_bytes() == before and leftovers(vic) == []


def test_predict_output_is_written_whole_then_renamed(model_path, vic, monkeypatch, capsys):
    out = vic.parent / "r.csv"
    out.write_text("old results\n")
    code, _, err = cli(
        ["predict", vic, "-m", model_path, *FAST, "-f", "csv", "-o", out], monkeypatch, capsys
    )
    assert code == 0, err
    assert out.read_text().startswith("path,") and len(out.read_text().splitlines()) == 4
    assert leftovers(vic.parent) == []


def test_a_write_that_fails_part_way_leaves_the_old_file_and_no_temporary(
    model_path, vic, monkeypatch, capsys
):
    out = vic.parent / "r.jsonl"
    out.write_text("old\n")

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(destinations.os, "fsync", full_disk)
    code, _, err = cli(
        ["predict", vic, "-m", model_path, *FAST, "-f", "jsonl", "-o", out], monkeypatch, capsys
    )
    assert code == 1 and "could not write" in err and "No space left on device" in err, err
    assert out.read_text() == "old\n" and leftovers(vic.parent) == []


def test_replacing_removes_its_temporary_on_any_failure(tmp_path):
    target = tmp_path / "x.json"
    target.write_text("kept")
    with pytest.raises(KeyboardInterrupt), replacing(target, text=True) as handle:
        handle.write("half")
        raise KeyboardInterrupt
    assert target.read_text() == "kept" and leftovers(tmp_path) == []
    write_output(target, "new")
    assert target.read_text() == "new" and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- item 17


def test_predict_output_fifo_device_or_link_is_refused_at_once(
    model_path, vic, monkeypatch, capsys
):
    fifo = vic.parent / "out.csv"
    os.mkfifo(fifo)
    link = vic.parent / "link.csv"
    link.symlink_to(vic.parent / "elsewhere.csv")
    base = ["predict", vic, "-m", model_path, *FAST, "-f", "csv", "-o"]
    for target, words in (
        (fifo, "not a regular file"),
        ("/dev/null", "not a regular file"),
        (link, "broken symbolic link"),
    ):
        start = time.monotonic()
        refused([*base, target], monkeypatch, capsys, words)
        assert time.monotonic() - start < 30
    (vic.parent / "elsewhere.csv").write_text("someone else's\n")
    refused([*base, link], monkeypatch, capsys, "symbolic link")
    assert (vic.parent / "elsewhere.csv").read_text() == "someone else's\n"
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_output_folder_missing_a_file_or_not_writable_is_refused(
    model_path, vic, monkeypatch, capsys
):
    afile = vic.parent / "afile"
    afile.write_text("x")
    base = ["predict", vic, "-m", model_path, *FAST, "-f", "csv", "-o"]
    refused([*base, vic.parent / "nowhere" / "r.csv"], monkeypatch, capsys, "does not exist")
    refused([*base, afile / "r.csv"], monkeypatch, capsys, "is a file, not a folder")
    refused([*base, "/proc/mesonet-r.csv"], monkeypatch, capsys, "not writable")
    refused([*base, ""], monkeypatch, capsys, "is a folder")  # "" reaches us as "."


# --------------------------------------------------------------------------- items 10, 15


def test_annotate_into_a_file_or_an_unwritable_place_is_refused_before_work(
    model_path, vic, monkeypatch, capsys
):
    afile = vic.parent / "afile"
    afile.write_text("x")
    base = ["predict", vic, "-m", model_path, *FAST, "-f", "jsonl", "--annotate"]
    refused([*base, afile], monkeypatch, capsys, "not a folder")
    refused([*base, "/proc/mesonet-xx"], monkeypatch, capsys, "cannot write")
    assert afile.read_text() == "x"


def test_annotate_never_blocks_on_a_fifo_nor_follows_a_link(model_path, vic, monkeypatch, capsys):
    out = vic.parent / "ann"
    out.mkdir()
    outside = vic.parent / "outside.jpg"
    outside.write_bytes(b"not yours")
    os.mkfifo(out / "vic_a.png.annotated.jpg")
    (out / "vic_b.png.annotated.jpg").symlink_to(outside)
    base = ["predict", vic, "-m", model_path, *FAST, "-f", "jsonl", "--annotate", out]
    start = time.monotonic()
    refused(base, monkeypatch, capsys, "vic_a.png.annotated.jpg", "not a regular file")
    assert time.monotonic() - start < 30
    os.unlink(out / "vic_a.png.annotated.jpg")
    refused(base, monkeypatch, capsys, "vic_b.png.annotated.jpg", "symbolic link")
    assert outside.read_bytes() == b"not yours"


def test_annotated_copy_written_by_the_library_replaces_a_name_never_its_target(tmp_path):
    """Without the CLI's check, a FIFO or a link at the name is refused at the write: no
    hang, nothing written through the link."""
    import numpy as np

    from mesonet.annotate import write_annotated_image
    from mesonet.results import MediaResult

    image = np.zeros((64, 64, 3), np.uint8)
    result = MediaResult(path=str(tmp_path / "in" / "x.png"), kind="image", status="ok", model="m")
    out = tmp_path / "ann"
    out.mkdir()
    fifo = out / "in_x.png.annotated.jpg"
    os.mkfifo(fifo)
    done = threading.Event()

    def write() -> None:
        with pytest.raises(OutputError, match="not a regular file"):
            write_annotated_image(image, result, 0.5, out)
        done.set()

    worker = threading.Thread(target=write, daemon=True)
    worker.start()
    worker.join(20)
    assert done.is_set(), "the write blocked on the FIFO"
    fifo.unlink()
    written = write_annotated_image(image, result, 0.5, out)
    assert written.read_bytes()[:2] == b"\xff\xd8" and leftovers(out) == []


def test_annotated_names_that_would_replace_an_input_are_refused(
    model_path, tmp_path, monkeypatch, capsys
):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "x.png").write_bytes(png_bytes())
    victim = tmp_path / "in_x.png.annotated.jpg"  # an input named as x.png's annotated copy
    victim.write_bytes(png_bytes())
    argv = ["predict", folder / "x.png", victim, "-m", model_path, *FAST, "--annotate", tmp_path]
    refused(argv, monkeypatch, capsys, "would replace the input")
    assert victim.read_bytes() == png_bytes()


# --------------------------------------------------------------------------- item 13


@pytest.fixture
def no_scoring(monkeypatch):
    """Scoring must not start: the checks come first."""

    def scored(*args, **kwargs):
        raise AssertionError("calibrate scored before checking its output")

    monkeypatch.setattr("mesonet.evaluation.calibrate.calibrate_model", scored)


def test_calibrate_checks_its_output_before_scoring(
    model_path, vic, tmp_path, no_scoring, monkeypatch, capsys
):
    afile = tmp_path / "afile"
    afile.write_text("x")
    folder_json = tmp_path / "d.json"
    folder_json.mkdir()
    existing = tmp_path / "old.safetensors"
    existing.write_bytes(b"a model")
    single = ["calibrate", model_path, vic, "--faces", "none", "-o"]
    ensemble = ["calibrate", f"{model_path}+{model_path}", vic, "--faces", "none", "-o"]
    for argv, words in (
        ([*single, afile / "x.safetensors"], "is a file, not a folder"),
        ([*single, "/proc/x.safetensors"], "not writable"),
        ([*ensemble, folder_json], "is a folder"),
        ([*single, tmp_path / "x.json"], ".safetensors"),
        ([*ensemble, tmp_path / "e.safetensors"], ".json"),
        ([*single, existing], "--force"),
        ([*single, model_path], "inputs"),
    ):
        refused([*argv, "--force"] if "inputs" in words else argv, monkeypatch, capsys, words)
    assert existing.read_bytes() == b"a model"
    assert leftovers(tmp_path) == [] and list(folder_json.iterdir()) == []


# --------------------------------------------------------------------------- item 2


def test_train_refuses_a_folder_holding_a_model_without_force_or_resume(
    tmp_path, monkeypatch, capsys
):
    data = tmp_path / "tdata"
    data.mkdir()
    for held in ("best.safetensors", "summary.json"):
        keep = tmp_path / f"keep-{held}"
        keep.mkdir()
        (keep / held).write_bytes(b"the model")
        argv = ["train", data, "-o", keep, "--epochs", "1", "--workers", "0"]
        refused(argv, monkeypatch, capsys, "already holds a model", "--force")
        assert (keep / held).read_bytes() == b"the model"
        # --force passes this check (and fails later, on the empty data, not on the folder)
        code, _, err = cli([*argv, "--force"], monkeypatch, capsys)
        assert code == 2 and "already holds" not in err, err
        assert (keep / held).read_bytes() == b"the model"


def test_train_refuses_links_and_inputs_among_its_outputs(tmp_path, monkeypatch, capsys):
    data = tmp_path / "tdata"
    data.mkdir()
    out = tmp_path / "run"
    out.mkdir()
    (out / "curves.png").symlink_to(tmp_path / "elsewhere.png")
    argv = ["train", data, "--epochs", "1", "--workers", "0", "-o"]
    refused([*argv, out], monkeypatch, capsys, "curves.png", "symbolic link")
    refused([*argv, data], monkeypatch, capsys, "inputs")
    afile = tmp_path / "afile"
    afile.write_text("x")
    refused([*argv, afile], monkeypatch, capsys, "not a folder")
    refused([*argv, afile / "no" / "run"], monkeypatch, capsys, "is a file, not a folder")
    # a missing parent is no longer refused: it is made as the run starts (issue 34, item 11)


# --------------------------------------------------------------------------- item 18


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_models_and_outputs_get_the_umasks_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        model = save_model(
            create_model("meso4"), tmp_path / "m.safetensors", ModelCard("m", "meso4")
        )
        card = ModelCard(name="e", arch="ensemble", members=[{"model": "m.safetensors"}])
        save_ensemble(card, tmp_path / "e.json")
        write_output(tmp_path / "r.csv", "path\n")
        from mesonet.training.checkpoint import save_checkpoint

        save_checkpoint(tmp_path / "last.pt", {"format": 1})
    finally:
        os.umask(old)
    assert model.weights_sha256
    for name in ("m.safetensors", "e.json", "r.csv", "last.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_check_output_file_refuses_an_existing_model_only_without_overwrite(tmp_path):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"x")
    with pytest.raises(OutputError, match="--force") as refusal:
        check_output_file(model, "model", overwrite=False)
    assert refusal.value.exit_code == 2
    assert check_output_file(model, "model") == model
    with pytest.raises(OutputError, match="empty name"):
        check_output_file("", "model")
