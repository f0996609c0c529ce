"""How the CLI reads: help at 80 columns, tables in a pipe, JSON and CSV shape, --samples."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mesonet.cli import app, main
from mesonet.inputs import sample_paths
from mesonet.output import shorten_path

COMMANDS = [
    "",
    "models",
    "import-keras",
    "export",
    "predict",
    "evaluate",
    "calibrate",
    "train",
    "scan",
    "serve",
]


def run(args: list[str], columns: int = 80):
    return CliRunner().invoke(app, [a for a in args if a], env={"COLUMNS": str(columns)})


def help_blocks(text: str) -> list[tuple[list[str], int]]:
    """Each wrapped text of a help page at 80 columns (click's layout: 78 wide) with the room
    it wraps in: the paragraphs (from column 2) and each option's or command's description
    (from its column)."""
    blocks: list[tuple[list[str], int]] = []
    open_block = False  # the last block goes on with the next line at its column
    column = 2  # where the text of the block being read starts
    in_section = below = False
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        if not line.strip() or line.startswith("Usage:") or indent == 0:
            open_block = False
            in_section = in_section or (indent == 0 and line.endswith(":"))
            continue
        if in_section and indent == 2:  # a row: its name, its description beside or below
            _, _, rest = line[2:].partition("  ")
            open_block, below = False, not rest.strip()
            if below:
                continue
            column, line = len(line) - len(rest.lstrip()), rest
        elif open_block:
            assert indent == column, line
            blocks[-1][0].append(line.strip())
            continue
        elif below:
            column, below = indent, False
        blocks.append(([line.strip()], 78 - column))
        open_block = True
    return blocks


def first_word(line: str) -> str:
    """The first unbreakable piece of a line (``[default: 32]`` is one)."""
    if line.startswith("[default:"):
        return line[: line.index("]") + 1] if "]" in line else line
    return line.split()[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_wraps_cleanly_at_80_columns(command):
    """No line over 80 columns; paragraphs and descriptions wrap greedily (no line ends
    early, as when a docstring's own line breaks were kept), only between words;
    descriptions have room; placeholders are words, not Python types."""
    result = run([command, "--help"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    blocks = help_blocks(result.output)
    assert blocks
    for block, room in blocks:
        assert room >= 48, block  # never the 24-character column of rich's panels
        for line, following in zip(block, block[1:], strict=False):
            assert len(line) + 1 + len(first_word(following)) > room, (line, following)
            assert not line.endswith("-") and not line.endswith("[default:"), line
    for placeholder in ("<bool>", "<str>", "<int>", "<float>", "<path>", "<list", "{"):
        assert placeholder not in result.output, (command, placeholder)


def test_help_lists_fixed_choices():
    text = run(["predict", "--help"]).output
    for choices in ("[table|json|jsonl|csv]", "[detect|none]", "[mean|vote|confident]"):
        assert choices in text
    assert "Usage: mesonet predict [OPTIONS] [PATH...]" in text


def test_shorten_path_keeps_the_distinctive_end():
    path = "../shared/reference/mesonet-keras/test_images/df/df00204.jpg"
    assert shorten_path(path, 80) == path
    assert shorten_path(path, 30) == "…/test_images/df/df00204.jpg"
    assert shorten_path(path, 20) == "…/df/df00204.jpg"
    assert shorten_path(path, 10) == "…00204.jpg"
    for width in range(5, 70):
        short = shorten_path(path, width)
        assert len(short) <= width and path.endswith(short.lstrip("…"))


def test_samples_are_the_authors_four_images_with_their_licence():
    paths = sample_paths()
    assert sorted(p.parent.name for p in paths) == ["df", "df", "real", "real"]
    folder = paths[0].parent.parent
    assert "Apache License" in (folder / "LICENSE").read_text()
    assert "Afchar" in (folder / "NOTICE").read_text()


def test_predict_samples_table_in_a_pipe(served_model, tmp_path):
    """--samples alone, in a pipe at 80 columns: four rows, whole names, nothing wrapped."""
    deep = tmp_path / ("a-very-long-folder-name-" * 3) / "nested" / "deeper"
    deep.mkdir(parents=True)
    shutil.copy(sample_paths()[0], deep / "distinctive_name.jpg")
    result = run(["predict", "--samples", str(deep), "-m", str(served_model)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if ".jpg" in line]
    assert len(rows) == 5
    for name in ("df/df00204.jpg", "df/df01254.jpg", "real/real00240.jpg", "distinctive_name"):
        assert any(name in row for row in rows), name  # whole, not wrapped mid-name
    verdicts = [row.split()[1] for row in rows]
    assert all(v in ("likely", "uncertain", "no") for v in verdicts), verdicts


def main_exit(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """Run ``mesonet.cli.main`` (which turns library errors into one line and exit 2)."""
    monkeypatch.setattr("sys.argv", ["mesonet", *args])
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exit_:
        main()
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


def test_media_only_in_sub_folders_asks_for_recursive(served_model, tmp_path, capsys, monkeypatch):
    (tmp_path / "sub").mkdir()
    shutil.copy(sample_paths()[0], tmp_path / "sub" / "face.jpg")
    (tmp_path / "notes.txt").write_text("not media")
    code, out, err = main_exit(
        ["predict", str(tmp_path), "-m", str(served_model)], capsys, monkeypatch
    )
    assert code == 2 and out == ""  # no empty table
    assert "--recursive" in err and "sub-folders" in err
    assert err.count("\n") == 1  # one line, no traceback
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = main_exit(
        ["predict", str(empty), "-m", str(served_model)], capsys, monkeypatch
    )
    assert (code, out) == (2, "") and f"no images or videos in {empty}" in err
    result = run(["predict", str(tmp_path), "-r", "-m", str(served_model), "-f", "jsonl"])
    assert result.exit_code == 0 and json.loads(result.stdout)["path"].endswith("face.jpg")


def test_predict_needs_paths_or_samples():
    result = run(["predict"])
    assert result.exit_code == 2 and "--samples" in result.output


def test_json_is_indented_with_one_face_a_line(served_model):
    result = run(["predict", "--samples", "-m", str(served_model), "-f", "json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert len(records) == 4
    lines = result.stdout.splitlines()
    faces = [line for line in lines if line.strip().startswith('{"box"')]
    assert len(faces) == sum(len(r["faces"]) for r in records) >= 1
    # about ten lines a record, not one per number
    assert len(lines) <= 2 + sum(12 + len(r["faces"]) for r in records)


def test_csv_header_says_what_faces_counts(served_model):
    result = run(["predict", "--samples", "-m", str(served_model), "-f", "csv"])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 4
    assert "faces" not in rows[0] and {"face_detections", "face_tracks"} <= rows[0].keys()
    assert all(r["face_tracks"] == "" for r in rows)  # images have no tracks


def test_models_text_is_never_cut():
    result = run(["models"])
    assert result.exit_code == 0
    assert not re.search("…(?!/)", result.output)  # only paths shortened from the left
    assert max(len(line) for line in result.output.splitlines()) <= 80
    from mesonet.cli.models import trained_on
    from mesonet.models import list_models

    words = set(result.output.split())
    for card in list_models():
        assert card.name in result.output
        assert set(trained_on(card).split()) <= words, card.name  # no name split over lines


def test_samples_path_is_inside_the_package():
    import mesonet

    assert all(Path(mesonet.__file__).parent in p.parents for p in sample_paths())


def test_train_input_size_and_body_lr_scale_set_those_training_options(tmp_path, monkeypatch):
    """The flags override the config keys of their names, checked there like the others."""
    from types import SimpleNamespace

    import mesonet.training
    from mesonet.training import TrainingError

    seen = {}

    def fake_train(sources, out_dir, config, **kwargs):
        seen["config"] = config
        return SimpleNamespace(best_path=None, checkpoint_path=out_dir / "last.pt")

    monkeypatch.setattr(mesonet.training, "train", fake_train)
    args = ["train", str(tmp_path), "--out", str(tmp_path / "run")]
    result = run([*args, "--input-size", "224", "--body-lr-scale", "0.2"])
    assert result.exit_code == 0 and "no epoch trained" in result.output, result.output
    assert (seen["config"].input_size, seen["config"].body_lr_scale) == (224, 0.2)
    for flag, value in (("--input-size", "-1"), ("--body-lr-scale", "0")):
        result = run([*args, flag, value])
        assert isinstance(result.exception, TrainingError), flag
        assert flag[2:].replace("-", "_") in str(result.exception)


def _video_record(path: str, p: float, label: str, verdict: str, segments) -> object:
    from mesonet.results import MediaResult, Segment, TrackResult

    tracks = [
        TrackResult(i, 8, 1.0 if i == 0 else 0.2, 90.0, 0.99, p, i == 0, i == 0) for i in range(3)
    ]
    return MediaResult(
        path, "video", "ok", "m", p, label, frames_analyzed=8, duration_s=12.0, verdict=verdict,
        tracks=tracks, segments=[Segment(a, b, 0.9, 0) for a, b in segments],
    )  # fmt: skip


def test_predict_table_at_80_columns_keeps_names_whole_and_details_short():
    """Issue 34, item 13: in 80 columns no file name is cut, a video's detail is a line of
    its own under its row (not a narrow column five lines deep), and a video that is not
    called fake says what its flagged frames mean."""
    from rich.console import Console

    from mesonet.output import _summary_table

    folder = "some_long_folder_name_here"
    long_name = f"{folder}/a_rather_long_video_file_name_from_a_camera_2024.mp4"
    records = [
        _video_record(f"{folder}/Deepfakes__585_599.mp4", 0.867, "fake", "likely forged",
                      [(0.0, 11.9), (0.0, 4.5), (9.0, 11.9)]),
        _video_record(long_name, 0.067, "real", "likely real", [(0.0, 0.7)]),
    ]  # fmt: skip
    console = Console(width=80, record=True)
    console.print(_summary_table(records, 0.39, 80, "m"))
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in text
    assert "a_rather_long_video_file_name_from_a_camera_2024.mp4" in "".join(
        line.split()[0] if line.strip() else "" for line in lines
    )
    details = [line for line in lines if line.startswith("  8 frames") or line.startswith("  ")]
    assert len(details) <= 2 * 2  # each video's detail in two lines of 80 (five of 20 before)
    flat = " ".join(text.split())
    assert "flagged 0.0-11.9s" in flat and "flagged 0.0-0.7s" not in flat
    assert "frames over the threshold at 0.0-0.7s, too few to flag it" in flat
