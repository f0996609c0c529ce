"""What a newcomer meets first (issue 26): help and tables at 80 columns that break lines only
between words, the version, the model named above the table, reasons for "no face", what
was written and what was skipped, missing paths refused, JSON laid out alike."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from mesonet.cli import app
from tests.test_cli_output import main_exit


def run(args: list[str], columns: int = 80):
    return CliRunner().invoke(app, args, env={"COLUMNS": str(columns)})


def test_version_prints_and_exits_0():
    import mesonet

    result = run(["--version"])
    assert result.exit_code == 0
    assert result.output == f"mesonet {mesonet.__version__}\n"
    assert "--version" in run(["--help"]).output


def test_predict_help_gives_descriptions_room_at_80_columns():
    """click's layout: an option's description starts at column 28 (50 columns of text, not
    rich's 24), and a name too long for that column gets a line of its own."""
    text = run(["predict", "--help"]).output
    lines = text.splitlines()
    assert len(lines) < 100  # 141 in rich's panels, with the same options
    model = "  -m, --model NAME|FILE     Bundled model name or .safetensors path"
    assert any(line.startswith(model) for line in lines)
    row = lines.index("  -f, --format [table|json|jsonl|csv]")
    assert lines[row + 1].startswith(" " * 28 + "table, json")
    # hyphenated words and defaults are never split across lines
    for line in lines:
        assert not re.search(r"\w-$", line) and not line.rstrip().endswith("[default:"), line


def render_table(results, width: int = 80, model: str = "meso4.test") -> list[str]:
    """The results table as ``mesonet predict`` prints it ``width`` columns wide."""
    import io

    from rich.console import Console

    from mesonet.output import _summary_table

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, no_color=True)
    console.print(_summary_table(results, 0.448885, width, model))
    return buffer.getvalue().splitlines()


def table_results():
    """An image forged, one with no face, an error, and a video with three tracks, five
    flagged spans and a long name: every cell the table has."""
    from mesonet.results import FaceResult, MediaResult, Segment, TrackResult

    folder = "/data/a rather long folder name/with sub-folders/"
    face = FaceResult(box=[1, 2, 3, 4], confidence=0.99, fake_probability=0.93)
    tracks = [
        TrackResult(i, 10, 0.3, 80.0, 0.99, 0.2 + i / 10, eligible=True, decisive=i == 2)
        for i in range(3)
    ]
    segments = [Segment(i * 1.5, i * 1.5 + 0.5, 0.8, 2) for i in range(5)]
    return [
        MediaResult(folder + "forged-face.jpg", "image", "ok", "m", 0.93, "fake", [face]),
        MediaResult(
            folder + "tiny.png",
            "image",
            "no_face",
            "m",
            error="image 10x10 px, smaller than the detector's minimum face (40 px)",
        ),
        MediaResult(folder + "broken.jpg", "image", "error", "m", error="cannot decode image"),
        MediaResult(
            folder + "interview-with-three-people-recorded-2024.mp4",
            "video",
            "ok",
            "m",
            0.81,
            "fake",
            [face],
            frames_analyzed=32,
            duration_s=8.0,
            aggregation="mean",
            segments=segments,
            tracks=tracks,
        ),
    ]


def test_table_at_80_columns_keeps_words_and_verdicts_whole():
    """The model and its threshold (two decimals) above the table; "likely forged" on one
    line; a video's detail in a few lines; every word of every cell whole on one line."""
    lines = render_table(table_results_with_verdicts())
    assert lines[0] == "model meso4.test, threshold 0.45 (fake when p(fake) >= threshold)"
    assert "0.448885" not in "\n".join(lines)
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines[3:] if line.strip()]
    assert sum("likely forged" in row for row in rows) == 2
    video = next(i for i, row in enumerate(rows) if ".mp4" in row)
    continued = 0
    for row in rows[video + 1 :]:
        if row[:1].strip():
            break
        continued += 1
    assert continued <= 5, rows[video:]  # 10 lines before, "likely forged" on two
    words = {w for line in lines for w in line.split()}
    for text in (
        "32 frames, 8.0s; track 2 decides (30% of frames); 3 of 3 can decide; flagged "
        "0.0-0.5s, 1.5-2.0s, 3.0-3.5s +2",
        "image 10x10 px, smaller than the detector's minimum face (40 px)",
        "cannot decode image",
    ):
        for word in text.split():
            assert word in words, (word, lines)


def table_results_with_verdicts():
    results = table_results()
    for result in results:
        result.verdict = "likely forged" if result.status == "ok" else None
    return results


def test_no_face_records_say_why_in_the_record_table_and_annotated_copy(served_model, tmp_path):
    """A 10x10 image is smaller than the smallest face the detector looks for; a plain
    gradient has none: each record's error says which, the table shows it, and the
    annotated copy carries it as a caption (a dark band under the image)."""
    import cv2
    import numpy as np

    from mesonet.pipeline import Detector

    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "tiny.png"), np.full((10, 10, 3), 200, np.uint8))
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    cv2.imwrite(str(folder / "gradient.png"), np.dstack([ramp] * 3))
    annotated = tmp_path / "annotated"
    detector = Detector(served_model, annotate_dir=annotated)
    tiny, gradient = (detector.predict(folder / n) for n in ("tiny.png", "gradient.png"))
    assert tiny.status == gradient.status == "no_face"
    assert tiny.error == "image 10x10 px, smaller than the detector's minimum face (40 px)"
    assert gradient.error == "no face found"
    assert tiny.to_dict()["error"] == tiny.error
    copy = cv2.imread(str(annotated / "in_gradient.png.annotated.jpg"))
    assert copy.shape[0] > 240 and copy.shape[1] == 320
    band = copy[245:]
    assert band.mean() < 80 and band.max() > 200  # light letters on a dark band
    assert cv2.imread(str(annotated / "in_tiny.png.annotated.jpg")).shape[1] >= 320

    result = run(["predict", str(folder), "-m", str(served_model)])
    assert result.exit_code == 0, result.output
    assert "no face found" in result.output and "minimum face" in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_timeline_png_has_a_title_naming_file_model_and_verdict():
    from mesonet.annotate import timeline_figure
    from mesonet.results import FaceResult, MediaResult

    face = FaceResult([0, 0, 9, 9], 0.99, 0.72, frame=0, time_s=0.0, track=0)
    result = MediaResult(
        "/videos/interview.mp4",
        "video",
        "ok",
        "meso4.df",
        0.72,
        "fake",
        [face],
        frames_analyzed=1,
        duration_s=2.0,
        aggregation="mean",
        verdict="likely forged",
    )
    title = timeline_figure(result, 0.5)._suptitle.get_text()
    assert title == "interview.mp4  ·  meso4.df  ·  likely forged, p(fake) 0.72"
    empty = MediaResult("/v/grey.mp4", "video", "no_face", "meso4.df", error="no face found")
    assert timeline_figure(empty, 0.5)._suptitle.get_text().endswith("·  no face found")


def test_quiet_cases_are_told(served_model, tmp_path, capsys, monkeypatch):
    """A missing path and a folder without media are usage errors (one line, exit 2, before
    any output); sub-folders skipped without -r are named; -o says what it wrote."""
    import shutil

    from mesonet.inputs import sample_paths

    model = ["-m", str(served_model)]
    folder = tmp_path / "media"
    (folder / "sub").mkdir(parents=True)
    (folder / "empty").mkdir()
    shutil.copy(sample_paths()[0], folder / "top.jpg")
    shutil.copy(sample_paths()[1], folder / "sub" / "inner.jpg")

    code, out, err = main_exit(["predict", str(folder / "nope.jpg"), *model], capsys, monkeypatch)
    assert (code, out) == (2, "") and err == f"error: no such file or folder: {folder}/nope.jpg\n"
    code, out, err = main_exit(["predict", str(folder / "empty"), *model], capsys, monkeypatch)
    assert (code, out) == (2, "") and "no images or videos in" in err and err.count("\n") == 1

    results = tmp_path / "out.jsonl"
    args = ["predict", str(folder), *model, "-f", "jsonl", "-o", str(results)]
    code, out, err = main_exit(args, capsys, monkeypatch)
    assert code == 0 and out == "" and len(results.read_text().splitlines()) == 1
    assert "skipped 1 sub-folder of" in err and "(sub/): add --recursive (-r)" in err
    assert f"wrote 1 record to {results}" in err
    code, out, err = main_exit([*args, "-r"], capsys, monkeypatch)
    assert "skipped" not in err and "wrote 2 records" in err


def test_scan_summary_counts_in_words(capsys):
    from types import SimpleNamespace

    from mesonet.cli.predict import _print_scan_summary

    summary = SimpleNamespace(
        written=1,
        listed=1,
        skipped=0,
        output="o.jsonl",
        seconds=1.0,
        files_per_s=1.0,
        first_record_s=None,
        statuses={"error": 1},
        lost=["a.jpg"],
        retried=1,
        failed=1,
    )
    _print_scan_summary(summary)
    captured = capsys.readouterr()
    assert captured.out.startswith("1 of 1 input analysed")
    assert "1 input lost with failing workers" in captured.err
    assert "1 input with an error record analysed again" in captured.err
    assert "1 input has an error record" in captured.err and "repair it and" in captured.err


def test_models_table_at_80_columns_keeps_names_whole_and_says_what_each_was_trained_on():
    from mesonet.cli.models import trained_on
    from mesonet.models import default_model_name, list_models

    result = run(["models"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "trained on" in result.output
    assert f"Default: {default_model_name()}" in result.output
    words = {w for line in lines for w in line.split()}
    for card in list_models():
        assert card.name in words
        for word in trained_on(card).split():  # dataset names never broken mid-word
            assert word in words, (card.name, word)
    assert "meso4.mix" in words and "dfdc-faces" in words and "mesonet-deepfake-train" in words
    from mesonet.cli.models import MODEL_SETS, auc_text

    for card in list_models():  # every figure whole: none cropped at the right edge
        row = next(line.split() for line in lines if line.startswith(card.name + " "))
        for key, _ in MODEL_SETS:
            auc = (card.metrics.get(key) or {}).get("auc")
            if isinstance(auc, float):
                assert auc_text(auc) in row, (card.name, key, row)


def test_models_rounds_as_the_readme_and_cards_do():
    """Halves round up from the exact value (0.6175: a 60-video AUC of 494/800, stored as
    0.61749999...), so `mesonet models` and the README agree to the third decimal."""
    from pathlib import Path

    from mesonet.cli.models import MODEL_SETS, auc_text
    from mesonet.models import list_models

    assert auc_text(0.6174999999999999) == "0.618"
    assert auc_text(0.617451) == "0.617"
    assert auc_text(0.6899505) == "0.690"
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    compared = 0
    for card in list_models():
        row = next((r for r in readme.splitlines() if r.startswith(f"| `{card.name}`")), None)
        if row is None:
            continue
        shown = [cell.strip() for cell in row.strip("|").split("|")][-len(MODEL_SETS) :]
        ours = [auc_text(card.metrics[key]["auc"]) for key, _ in MODEL_SETS]
        assert shown == ours, card.name
        compared += 1
    assert compared >= 5


def test_rays_own_notices_are_dropped_and_its_errors_kept(capfd, caplog):
    """What `mesonet scan --engine ray` filters, checked without starting Ray (a real scan,
    in a pipe and in a terminal, was read by eye: neither notice, Ray Data's lines kept)."""
    import logging
    import os
    import time

    from mesonet.scan.ray_noise import AUTH_LOGGER, quiet_auth_notice, without_notices

    notice = (
        b"[2026-12-04 14:24:38,834 E 12701 12701] core_worker.cc:2465: Actor with class name: "
        b"'MapWorker(MapBatches(Analyser))' and ID: 'f676' has constructor arguments in the "
        b"object store and max_restarts > 0. If the arguments in the object store go out of "
        b"scope or are lost, the actor restart will fail. See https://github.com/ray-project/"
        b"ray/issues/53727 for more details.\n"
    )
    real = b"[2026-12-04 14:24:39,000 E 12701 12701] core_worker.cc:99: Failed to do X.\n"
    with without_notices():
        os.write(2, b"Running 0: 50%")  # a progress bar's line: through before its end
        for _ in range(50):
            time.sleep(0.02)
            if "50%" in capfd.readouterr().err:
                break
        else:
            raise AssertionError("a partial line was held back")
        os.write(2, b"\n" + notice[:60])  # the notice in two writes
        os.write(2, notice[60:] + real)
        os.write(2, b"mesonet's own message\n")
        os.write(2, b"[no end")
    err = capfd.readouterr().err
    assert err == "\n" + real.decode() + "mesonet's own message\n[no end"

    quiet_auth_notice()
    quiet_auth_notice()  # once only
    logger = logging.getLogger(AUTH_LOGGER)
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger=AUTH_LOGGER):
        logger.warning("Token authentication is enabled for this Ray cluster. Set ...")
        logger.warning("Token authentication is disabled for this Ray cluster. Anyone ...")
    assert [r.getMessage()[:32] for r in caplog.records] == ["Token authentication is disabled"]


def test_a_command_missing_its_extra_says_which_to_install(monkeypatch, capsys):
    """On a lean install (no [train] extra), evaluate's first import of scikit-learn is a
    one-line hint, exit 2, not a traceback."""
    import builtins

    import mesonet.cli as cli

    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)

    def evaluate_without_sklearn():
        import sklearn  # noqa: F401 - what evaluate's metrics import first

    monkeypatch.setattr(cli, "app", evaluate_without_sklearn)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "pip install 'mesonet[train]'" in err and len(err.strip().splitlines()) == 1
