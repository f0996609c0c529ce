"""tools/operating_point.py: the lowest score calling at most 5% of each set's reals forged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mesonet.inputs import sample_paths

TOOL = Path(__file__).parents[1] / "tools" / "operating_point.py"
WEIGHTS = Path(__file__).parents[1] / "src" / "mesonet" / "models" / "weights"
sys.path.insert(0, str(TOOL.parent))
from operating_point import _cut  # noqa: E402


def test_the_cut_lets_through_at_most_the_share_of_reals():
    reals = [i / 100 for i in range(100)]  # 0.00 .. 0.99
    cut = _cut(reals, 0.05)
    assert sum(r >= cut for r in reals) <= 5
    assert sum(r >= cut - 0.011 for r in reals) > 5  # and no lower cut would do
    assert _cut([0.3, 0.9], 0.05) > 0.9  # two reals: none may pass


@pytest.mark.slow
def test_the_operating_point_is_written_into_the_card(tmp_path):
    data = tmp_path / "set"
    for path in sample_paths():
        (data / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, data / path.parent.name / path.name)
    card = tmp_path / "ensemble.lite0-f2f.json"
    shutil.copy(WEIGHTS / "ensemble.lite0-f2f.json", card)
    run = subprocess.run(
        [sys.executable, str(TOOL), "ensemble.lite0-f2f", f"{data}:none", "--write", str(card)],
        capture_output=True,
        text=True,
        check=True,
    )
    bands = json.loads(card.read_text())["verdict_bands"]
    point = bands["operating_point"]
    assert bands["uncertain"][1] == point["score"] >= 0.5
    assert point["sets"]["set"]["false_alarm_rate"] == 0.0
    assert point["sets"]["set"]["n_real"] == 2
    assert "operating point" in run.stdout
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run([sys.executable, str(TOOL), "m", "x:maybe"], check=True, capture_output=True)
