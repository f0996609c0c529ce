#!/usr/bin/env python3
"""Does image size separate real from fake after the training pipeline? (issue 12's trap)

    python tools/resampling_check.py ../shared/datasets/mesonet-deepfake-train --per-class 600

Reads a seeded sample of DATA/real and DATA/fake, then prints ROC AUCs (real vs fake, and
"original exactly 256 px" vs not) for: the original side length alone; a linear resampling
detector (mesonet.training.resampling) on the crops as decoded for training (resized to
256, no resampling step); the same after the `--resample` step with the default range.
0.5 = no information; the model card quotes this output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from mesonet.training.config import TrainConfig
from mesonet.training.data import read_face
from mesonet.training.resampling import check, resampled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder with real/ and fake/")
    parser.add_argument("--per-class", type=int, default=600, help="images per class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    files: list[tuple[Path, int]] = []
    for label, name in ((0, "real"), (1, "fake")):
        found = sorted(p for p in (args.data / name).iterdir() if p.is_file())
        pick = rng.choice(len(found), min(args.per_class, len(found)), replace=False)
        files += [(found[i], label) for i in sorted(pick)]
    labels = [label for _, label in files]
    sides = np.array([min(Image.open(p).size) for p, _ in files])
    exactly = (sides == 256).astype(int).tolist()
    images = [read_face(p) for p, _ in files]
    cfg = TrainConfig()
    rows = {
        "original side length (AUC, real vs fake)": roc_auc_score(labels, sides),
        "original exactly 256 px (AUC, real vs fake)": roc_auc_score(
            labels, [1 - e for e in exactly]
        ),
    }
    before = check(images, labels, None, {"exactly 256": exactly}, args.seed)
    after = check(
        images,
        labels,
        lambda xs: resampled(xs, cfg.resample_min, cfg.resample_max, args.seed),
        {"exactly 256": exactly},
        args.seed,
    )
    for target in before:
        rows[f"linear resampling detector, {target}: decoded only"] = before[target]
        rows[f"linear resampling detector, {target}: with --resample"] = after[target]
    share = {
        n: float(np.mean([e for e, y in zip(exactly, labels, strict=True) if y == c]))
        for n, c in (("real", 0), ("fake", 1))
    }
    print(
        f"{args.data}: {len(files)} images; exactly 256 px: real {share['real']:.0%}, "
        f"fake {share['fake']:.0%}"
    )
    for name, value in rows.items():
        print(f"  {name}: {value:.3f}")
    print(json.dumps({k: round(v, 4) for k, v in rows.items()}))


if __name__ == "__main__":
    main()
