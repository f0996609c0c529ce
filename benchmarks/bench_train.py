"""Training throughput (images/s) on 2 cores: the bare step, then the real loop.

1. The step alone (forward, loss, backward, Adam) on batches of 64 cached uint8 crops:
   eager NCHW fp32 (the baseline), channels-last fp32, channels-last with bf16 autocast
   (``precision = "bf16"``), and with ``--compile`` the same under ``torch.compile``.
2. ``mesonet.training.train`` itself for two epochs on ``--images`` crops of
   ../shared/datasets/dfdc-faces (cached, ``standard`` augmentation, workers 0, as
   configs/dfdc-meso4.toml), precision fp32 and bf16, option ``compile`` off and on: the
   ``images_per_s`` its log reports (training phase only; decoding the cache and validation
   excluded). Epoch 1 includes compiling; epoch 2 is the steady state (the target).

Target: at least 100 images/s.

    python benchmarks/bench_train.py
    python benchmarks/bench_train.py --compile   # + torch.compile rows of the bare step
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _speed import DFDC, CpuWatch, machine_note, ratio, table  # noqa: E402

from mesonet.models import create_model  # noqa: E402

TARGET = 100.0
BATCH = 64


def real_batches(count: int) -> list[torch.Tensor]:
    """``count`` uint8 batches of dfdc crops (random pixels when the data is absent)."""
    from mesonet.training.data import read_face

    paths = sorted((DFDC / "train").rglob("*.jpg"))[: count * BATCH]
    if len(paths) < count * BATCH:
        rng = np.random.default_rng(0)
        shape = (BATCH, 256, 256, 3)
        return [torch.from_numpy(rng.integers(0, 256, shape, np.uint8)) for _ in range(count)]
    images = np.stack([read_face(p) for p in paths])
    return [torch.from_numpy(images[i * BATCH : (i + 1) * BATCH]) for i in range(count)]


def step_rate(
    batches: list[torch.Tensor], channels_last: bool, bf16: bool, compile_: bool, steps: int
) -> tuple[float, float]:
    """(images/s over ``steps`` steps after warm-up, seconds of the first two steps)."""
    torch.manual_seed(0)
    model = create_model("meso4").train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    logits = torch.compile(model.logits) if compile_ else model.logits
    labels = (torch.arange(BATCH) % 2).float()
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def step(images: torch.Tensor) -> float:
        x = images.permute(0, 3, 1, 2).float().div_(255.0).contiguous(memory_format=fmt)
        context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with context:
            z = logits(x)
        loss = F.binary_cross_entropy_with_logits(z.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    start = time.perf_counter()
    step(batches[0])
    step(batches[1 % len(batches)])
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    return steps * BATCH / (time.perf_counter() - start), warmup


def loop_rates(images: int, precision: str, compile_: bool = False) -> tuple[float, float] | None:
    """images/s of epochs 1 and 2 of ``mesonet.training.train`` on dfdc-faces (None without it).

    Epoch 1 includes the compiling of ``compile = true``; epoch 2 is the steady state.
    """
    if not (DFDC / "train").is_dir():
        return None
    from mesonet.training import TrainConfig, train

    config = TrainConfig(
        arch="meso4",
        epochs=2,
        batch_size=BATCH,
        augment="standard",
        cache=True,
        workers=0,
        threads=0,
        precision=precision,
        compile=compile_,
        max_train=images,
        max_val=BATCH,
        patience=0,
        seed=0,
    )
    with tempfile.TemporaryDirectory(prefix="mesonet-bench-train-") as out:
        result = train(DFDC, Path(out) / "run", config)
    first, second = (float(row["images_per_s"]) for row in result.history[-2:])
    return first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per step variant")
    parser.add_argument("--images", type=int, default=1920, help="training images, loop part")
    parser.add_argument("--compile", action="store_true", help="torch.compile rows, bare step")
    parser.add_argument("--skip-loop", action="store_true", help="only the bare step")
    args = parser.parse_args()
    print(machine_note())
    watch = CpuWatch()
    batches = real_batches(4)
    variants = [
        ("eager NCHW fp32: baseline", False, False, False),
        ("eager channels-last fp32", True, False, False),
        ("eager channels-last bf16 autocast", True, True, False),
    ]
    if args.compile:
        variants += [
            ("torch.compile channels-last fp32", True, False, True),
            ("torch.compile channels-last bf16", True, True, True),
        ]
    results = []
    for label, channels_last, bf16, compile_ in variants:
        rate, warmup = step_rate(batches, channels_last, bf16, compile_, args.steps)
        results.append((label, rate, warmup))
    base = results[0][1]
    rows = [
        (label, rate, ratio(rate, base), f"{warmup:.1f}", "met" if rate >= TARGET else "NOT met")
        for label, rate, warmup in results
    ]
    print()
    header = ("training step (batch 64)", "images/s", "vs baseline", "first 2 steps s", ">= 100")
    print(table("meso4: the bare training step", header, rows))
    if args.skip_loop:
        print(watch.note())
        return
    rows = []
    loops = [("fp32", False), ("bf16", False), ("fp32", True), ("bf16", True)]
    for precision, compile_ in loops:
        rates = loop_rates(args.images, precision, compile_)
        if rates is None:
            print("(dfdc-faces not present: loop part skipped)")
            break
        first, rate = rates
        verdict = "met" if rate >= TARGET else "NOT met"
        label = f"precision {precision}, compile {str(compile_).lower()}"
        rows.append((label, f"{first:.1f}", rate, ratio(rate, base), verdict))
    print()
    header = (
        "mesonet.training.train (augment standard, cache)",
        "epoch 1 images/s",
        "epoch 2 images/s",
        "vs step baseline",
        ">= 100",
    )
    print(table(f"meso4: two epochs of {args.images} dfdc-faces crops", header, rows))
    print(watch.note())


if __name__ == "__main__":
    main()
