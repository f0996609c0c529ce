"""What a newcomer meets first (issue 26): help and tables at 80 columns that break lines only
between words, the version, the model named above the table, reasons for "no face", what
was written and what was skipped, missing paths refused, JSON laid out alike."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from mesonet.cli import app


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
