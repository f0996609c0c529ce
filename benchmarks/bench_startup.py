"""Start-up: seconds from `mesonet predict IMAGE` to its record, cold and warm, per model.

Each model is run as a user runs it, in a fresh process: ``mesonet predict`` on one packaged
sample image with ``--format jsonl``. "cold" starts with an empty cache folder
(``MESONET_CACHE`` pointing at a new temporary folder: no converted or compiled OpenVINO
graph kept); "warm" is a second run with the same folder (what every later start costs).
Each figure is the median of ``--repeats`` runs (cold: each with its own empty folder), and
the ratio column compares it with the first model's warm start, measured in the same run.

    python benchmarks/bench_startup.py --model meso4.dfdc --model efficientnet_lite0.all

``--against REV`` (issue 35) instead times this tree against the git revision REV (checked
out in a temporary worktree and run with the same interpreter and packages), each command a
new process, the median of ``--repeats``: ``mesonet --help``, ``--version``, one image to its
record (warm: a second run with the same cache) and a 30 s 720p clip (made from a packaged
sample face) to its record; this tree also with the train extra blocked from import, as a
prediction-only install runs it. ``--venv DIR`` adds the size of that install's folder::

    python benchmarks/bench_startup.py --against 1a4c8a4 --venv /tmp/leanvenv
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


BLOCKER = (
    "import sys\n"
    "class _NoTrainExtra:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in {'torch', 'nncf', 'sklearn', 'scipy', 'h5py'}:\n"
    "            raise ModuleNotFoundError(name, name=name)\n"
    "sys.meta_path.insert(0, _NoTrainExtra())\n"
)
CLIP_TARGET_S, HELP_TARGET_S, IMAGE_TARGET_S = 2.0, 0.3, 1.0


def clip_720p(folder: Path, seconds: int = 30, fps: int = 25) -> Path:
    """A 1280 x 720 MP4 (MPEG-4 Part 2) of a packaged face moving across a grey frame."""
    import cv2
    import numpy as np

    face = cv2.resize(cv2.imread(str(SAMPLE)), (300, 300))
    path = folder / "clip720p.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (1280, 720))
    for i in range(seconds * fps):
        frame = np.full((720, 1280, 3), 120, np.uint8)
        x = 200 + (i * 2) % 600
        frame[200:500, x : x + 300] = face
        writer.write(frame)
    writer.release()
    return path


def timed_run(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr.strip()[-400:]}")
    return seconds


def against(rev: str, repeats: int, venv: str | None) -> None:
    """This tree (with and without the train extra) against ``rev``: see the docstring."""
    with tempfile.TemporaryDirectory(prefix="mesonet-startup-") as tmp:
        tmp_path = Path(tmp)
        base = tmp_path / "base"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "-q", str(base), rev], check=True
        )
        try:
            (tmp_path / "lean").mkdir()
            (tmp_path / "lean" / "sitecustomize.py").write_text(BLOCKER)
            trees = {
                f"{rev} (today's)": str(base / "src"),
                "this tree": str(REPO / "src"),
                "this tree, no train extra": f"{tmp_path / 'lean'}{os.pathsep}{REPO / 'src'}",
            }
            clip = clip_720p(tmp_path)
            cli = ["-m", "mesonet.cli"]
            commands = {
                "--help": [*cli, "--help"],
                "--version": [*cli, "--version"],
                "one image, warm": [*cli, "predict", str(SAMPLE), "-f", "jsonl"],
                "30 s 720p clip, warm": [*cli, "predict", str(clip), "-f", "jsonl"],
            }
            targets = {"--help": HELP_TARGET_S, "--version": HELP_TARGET_S}
            targets |= {"one image, warm": IMAGE_TARGET_S, "30 s 720p clip, warm": CLIP_TARGET_S}
            rows = []
            for what, command in commands.items():
                figures = {}
                for tree, path in trees.items():
                    cache = tmp_path / f"cache-{len(figures)}"
                    env = {**os.environ, "PYTHONPATH": path, "MESONET_CACHE": str(cache)}
                    timed_run(command, env)  # warm-up: caches, page cache
                    figures[tree] = statistics.median(
                        timed_run(command, env) for _ in range(repeats)
                    )
                first = next(iter(figures.values()))
                lean_s = figures["this tree, no train extra"]
                rows.append(
                    (
                        what,
                        *(f"{v:.2f}" for v in figures.values()),
                        ratio(first, lean_s),
                        "met" if lean_s <= targets[what] else "NOT met",
                    )
                )
            header = ("command", *trees, "today / lean", "target (lean)")
            print(table(f"seconds, new process each (median of {repeats})", header, rows))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)])
    if venv:
        size = subprocess.run(["du", "-sm", venv], capture_output=True, text=True).stdout
        print(f"prediction install {venv}: {size.split()[0]} MB (target <= 600 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="bundled name or path (repeatable)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--against", metavar="REV", help="time this tree against REV")
    parser.add_argument("--venv", help="with --against: a prediction install's folder")
    args = parser.parse_args()
    if args.against:
        print(machine_note())
        watch = CpuWatch()
        against(args.against, args.repeats, args.venv)
        print(watch.note())
        return
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
