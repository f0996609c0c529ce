"""A folder of face crops scored with ``--faces none``: throughput and peak memory.

Scores 10,000 crops of ../shared/datasets/dfdc-faces (read in place: the first 10,000 of its
20,000 files in sorted order) through ``Detector.predict_many``, as
``mesonet predict FOLDER --faces none`` does, each case in a fresh subprocess so its peak
resident memory is its own. The baseline is the serial path as it was before issue 6 (a batch
decoded by a thread pool, then scored by eager PyTorch, then the next batch), timed on
``--baseline-n`` crops. Targets: at least 320 faces/s (80% of the 400 faces/s scoring target)
and a peak under 1.5 GB.

    python benchmarks/bench_folder.py
    python benchmarks/bench_folder.py --n 2000 --backend torch
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _speed import DFDC, CpuWatch, load_bench_model, machine_note, peak_rss_mb, ratio, table  # noqa: E402

TARGET_RATE = 0.8 * 400.0
TARGET_MB = 1500.0


def crop_paths(n: int) -> list[Path]:
    paths = sorted(DFDC.rglob("*.jpg"))
    if not paths:
        raise SystemExit(f"no crops under {DFDC}")
    return paths[:n]


def child(mode: str, n: int, backend: str, model_arg: str | None) -> None:
    """Run one case in this (fresh) process and print its JSON line."""
    import numpy as np

    paths = crop_paths(n)
    model, _ = load_bench_model("meso4", model_arg)
    if mode == "baseline":
        import torch

        from mesonet.faces import crop_whole
        from mesonet.media import read_image
        from mesonet.pipeline import to_batch

        model = model.eval().to(memory_format=torch.channels_last)
        start = time.perf_counter()
        scores = []
        for i in range(0, len(paths), 64):
            batch = paths[i : i + 64]
            with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
                images = list(pool.map(read_image, batch))
            crops = [crop_whole(im, 256, "auto") for im in images]
            with torch.inference_mode():
                scores.extend(model(to_batch(crops)).tolist())
        ok = len(scores)
    else:
        from mesonet.pipeline import Detector

        detector = Detector(model, faces="none", backend=backend)
        detector.score_crops(np.zeros((1, 256, 256, 3), np.uint8))  # compile outside the clock
        start = time.perf_counter()
        ok = sum(r.status == "ok" for r in detector.predict_many(paths))
        backend = detector.backend
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "mode": mode,
                "backend": backend,
                "n": len(paths),
                "ok": ok,
                "seconds": seconds,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def run_child(mode: str, n: int, backend: str, model_arg: str | None) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--n", str(n), "--backend", backend]
    if model_arg:
        command += ["--model", model_arg]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="crops to score")
    parser.add_argument("--baseline-n", type=int, default=2_000, help="crops for the baseline")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--model", help="weights (bundled name or .safetensors)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n, args.backend, args.model)
        return
    print(machine_note())
    watch = CpuWatch()
    base = run_child("baseline", args.baseline_n, "torch", args.model)
    new = run_child("detector", args.n, args.backend, args.model)
    rows = []
    for label, run in (("serial eager (before): baseline", base), ("Detector", new)):
        rate = run["n"] / run["seconds"]
        name = label if run["mode"] == "baseline" else f"{label}, backend {run['backend']}"
        rows.append(
            (
                name,
                run["n"],
                run["ok"],
                run["seconds"],
                rate,
                ratio(rate, base["n"] / base["seconds"]),
                run["peak_rss_mb"],
            )
        )
    print()
    print(
        table(
            f"dfdc-faces crops, --faces none (targets: >= {TARGET_RATE:.0f} faces/s, "
            f"peak < {TARGET_MB:.0f} MB)",
            ("pipeline", "crops", "ok", "seconds", "faces/s", "vs baseline", "peak MB"),
            rows,
        )
    )
    rate = new["n"] / new["seconds"]
    print(
        f"throughput {'met' if rate >= TARGET_RATE else 'NOT met'} "
        f"({rate:.0f} faces/s = {rate / 400:.0%} of target 1); "
        f"memory {'met' if new['peak_rss_mb'] < TARGET_MB else 'NOT met'} "
        f"({new['peak_rss_mb']:.0f} MB peak)"
    )
    print(watch.note())


if __name__ == "__main__":
    main()
