"""Throughput of ``mesonet scan``: the local engine, then the Ray engine with 1 and 2 workers.

Each configuration is one ``mesonet scan`` command in a fresh process writing a fresh
output, timed end to end (process start, Ray start-up and actor start-up included), on:

  - images: dfdc-faces test crops (../shared, 2,000 files), ``--faces none``;
  - videos: ffpp-c40-videos (../shared, 60 files), faces detected, ``--frames 8``;
  - images-16k (``--sets images-16k``): dfdc-faces train crops (16,000 files), ``--faces none``.

Prints files/s per configuration (the best of ``--repeat`` runs), the seconds until its first
record (start-up), and its ratio to the local engine measured in the same run (and Ray 2
workers against Ray 1 worker).

    python benchmarks/bench_scan.py                        # the bundled default model
    python benchmarks/bench_scan.py --model runs/x.safetensors --workers 1 2 4
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SETS = {
    "images": (SHARED / "dfdc-faces" / "test", ["--recursive", "--faces", "none"]),
    "videos": (SHARED / "ffpp-c40-videos", ["--recursive", "--frames", "8"]),
    # longer: start-up weighs less (dfdc-faces train, 16,000 crops)
    "images-16k": (SHARED / "dfdc-faces" / "train", ["--recursive", "--faces", "none"]),
}
TIMEOUT_S = 1800


def run(source: Path, extra: list[str], engine: list[str], out: Path) -> dict:
    """One scan command: its wall time, the records it wrote and their statuses."""
    cmd = [sys.executable, "-m", "mesonet.cli", "scan", str(source), "-o", str(out)]
    cmd += extra + engine
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    statuses: dict[str, int] = {}
    for record in records:
        statuses[record["status"]] = statuses.get(record["status"], 0) + 1
    summary = re.search(
        r"in ([\d.]+) s, [\d.]+ files/s(?: \(first after ([\d.]+) s\))?", proc.stdout
    )
    return {
        "command": " ".join(["mesonet", *cmd[3:]]),
        "files": len(records),
        "wall_s": wall,
        "files_per_s": len(records) / wall,
        "scan_s": float(summary.group(1)) if summary else None,
        "first_record_s": float(summary.group(2)) if summary and summary.group(2) else None,
        "statuses": statuses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model name or .safetensors (default: bundled default)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=["images", "videos"])
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (best)")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()
    model = ["--model", args.model] if args.model else []
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        for name in args.sets:
            source, extra = SETS[name]
            if not source.exists():
                raise SystemExit(f"{source} not found (../shared data is needed)")
            engines = [("local", [])] + [
                (f"ray x{n}", ["--engine", "ray", "--workers", str(n)]) for n in args.workers
            ]
            base = None
            for label, engine in engines:
                runs = []
                for n in range(args.repeat):
                    out = Path(tmp) / f"{name}-{label.replace(' ', '')}-{n}.jsonl"
                    runs.append(run(source, extra + model, engine, out))
                result = max(runs, key=lambda r: r["files_per_s"])
                result["all_files_per_s"] = [round(r["files_per_s"], 2) for r in runs]
                result.update(set=name, engine=label)
                base = base or result["files_per_s"]
                result["vs_local"] = result["files_per_s"] / base
                results.append(result)
                print(
                    f"{name:7} {label:8} {result['files']:5} files  {result['wall_s']:7.1f} s  "
                    f"{result['files_per_s']:7.2f} files/s  x{result['vs_local']:.2f} vs local  "
                    f"first record {result['first_record_s']} s  runs {result['all_files_per_s']}  "
                    f"{result['statuses']}",
                    flush=True,
                )
            by_engine = {r["engine"]: r for r in results if r["set"] == name}
            if "ray x1" in by_engine and "ray x2" in by_engine:
                ratio = by_engine["ray x2"]["files_per_s"] / by_engine["ray x1"]["files_per_s"]
                print(f"{name:7} ray x2 vs ray x1: x{ratio:.2f}", flush=True)
    for result in results:
        print(f"  {result['command']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
