"""Start-up: seconds from `mesonet predict IMAGE` to its record, cold and warm, per model.

Each model is run as a user runs it, in a fresh process: ``mesonet predict`` on one packaged
sample image with ``--format jsonl``. "cold" starts with an empty cache folder
(``MESONET_CACHE`` pointing at a new temporary folder: no converted or compiled OpenVINO
graph kept); "warm" is a second run with the same folder (what every later start costs).
Each figure is the median of ``--repeats`` runs (cold: each with its own empty folder), and
the ratio column compares it with the first model's warm start, measured in the same run.

    python benchmarks/bench_startup.py --model meso4.dfdc --model efficientnet_lite0.all
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _speed import REPO, CpuWatch, machine_note, ratio, table  # noqa: E402

SAMPLE = REPO / "src" / "mesonet" / "samples" / "real" / "real00240.jpg"
TARGET_WARM_S = 1.5


def run_once(model: str, cache: Path) -> float:
    """Seconds for one `mesonet predict` process to print its record."""
    env = {**os.environ, "MESONET_CACHE": str(cache)}
    command = [sys.executable, "-m", "mesonet.cli", "predict", str(SAMPLE), "-f", "jsonl"]
    command += ["--model", model]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    if done.returncode != 0 or '"status": "ok"' not in done.stdout:
        raise SystemExit(f"{model}: predict failed: {done.stderr.strip()[-400:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="bundled name or path (repeatable)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    models = args.model or ["meso4.dfdc"]
    print(machine_note())
    watch = CpuWatch()
    rows, base = [], None
    for model in models:
        cold, warm = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="mesonet-cache-") as tmp:
                cold.append(run_once(model, Path(tmp)))
                warm.append(run_once(model, Path(tmp)))
        c, w = statistics.median(cold), statistics.median(warm)
        base = base or w
        met = "met" if w <= TARGET_WARM_S else "NOT met"
        rows.append((model, f"{c:.2f}", f"{w:.2f}", ratio(w, base), met))
    print(
        table(
            f"seconds to the first record of one image (median of {args.repeats}); "
            f"target warm <= {TARGET_WARM_S} s",
            ("model", "cold s", "warm s", f"warm vs {models[0]}", "target"),
            rows,
        )
    )
    print(watch.note())


if __name__ == "__main__":
    main()
