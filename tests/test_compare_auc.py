"""tools/compare_auc.py: the paired bootstrap behind the README's "is it really better?"."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

TOOL = Path(__file__).resolve().parents[1] / "tools" / "compare_auc.py"


def write(path: Path, scores: dict[str, float]) -> Path:
    lines = [json.dumps({"path": p, "fake_probability": s}) for p, s in scores.items()]
    lines.append(json.dumps({"path": "data/real/broken.mp4", "fake_probability": None}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True
    )


def test_a_better_model_is_better_in_every_resample_and_a_copy_never(tmp_path):
    rng = np.random.default_rng(0)
    paths = [f"data/{'fake' if i % 2 else 'real'}/{i}.jpg" for i in range(200)]
    truth = np.array([i % 2 for i in range(200)], dtype=float)
    noisy = {p: float(t * 0.2 + rng.random()) for p, t in zip(paths, truth, strict=True)}
    sharp = {p: float(t * 2.0 + rng.random()) for p, t in zip(paths, truth, strict=True)}
    a, b = write(tmp_path / "a.jsonl", noisy), write(tmp_path / "b.jsonl", sharp)
    better = run(a, b, "--resamples", 300)
    assert better.returncode == 0, better.stderr
    assert "200 files (100 fake)" in better.stdout and "B 1.0000" in better.stdout
    assert "B not better in 0.0% of them" in better.stdout
    same = run(a, a, "--resamples", 300)
    assert "B - A +0.0000" in same.stdout and "B not better in 100.0%" in same.stdout
    # unlabelled paths only: a clear error, not a traceback
    unlabelled = write(tmp_path / "u.jsonl", {"x/1.jpg": 0.5})
    refused = run(unlabelled, unlabelled)
    assert refused.returncode == 2 and "labelled" in refused.stderr
