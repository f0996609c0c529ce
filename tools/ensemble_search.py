#!/usr/bin/env python3
"""Per-set AUC of models and of their logit-space ensembles, to choose a default.

    python tools/ensemble_search.py meso4.dfdc runs/mix/best.safetensors Meso4_DF.safetensors \
        --set dfdc-val=../shared/datasets/dfdc-faces/val \
        --set mesonet-val=../shared/datasets/mesonet-deepfake-val \
        --set ffpp-dev=../shared/datasets/ffpp-faces-dev --max 2000

Each set is a labelled folder (real/, fake/) of face crops, scored whole (``--faces none``,
resized as each model's card says). Ensembles combine members' calibrated logits (as
``mesonet.models.Ensemble`` does) with weights from a small grid (weights summing to 1);
rows are sorted by the minimum AUC over the sets, the rule issue 12 picks the default by.

``--video NAME=FOLDER`` then measures the ``--video-top`` best rows on a video set with
``mesonet evaluate``'s own code (faces detected, default frames and aggregation), each row
as an ensemble card written to ``--cards``; MTCNN runs once per frame for all rows (its
detections are cached by frame content), so each further row costs decoding and scoring
only. Those rows are printed again, sorted by the minimum over every set.

``--flip`` scores each image-set crop as is and mirrored and averages the two logits
(test-time augmentation), to measure what that would gain.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from mesonet.evaluation.runner import evaluate
from mesonet.faces.align import crop_whole
from mesonet.faces.detector import CachingDetector
from mesonet.media import read_image
from mesonet.models import load_model, save_ensemble
from mesonet.models.calibration import calibrate_logits
from mesonet.models.ensemble import ensemble_card
from mesonet.pipeline import Detector
from mesonet.training.data import find_holdout


def _images(folder: str, limit: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    samples = find_holdout(folder)
    if limit and limit < len(samples):
        rng = np.random.default_rng(seed)
        samples = [samples[i] for i in sorted(rng.choice(len(samples), limit, replace=False))]
    return [read_image(s.path) for s in samples], np.array([s.label for s in samples])


@torch.no_grad()
def _logits(model, images: list[np.ndarray], batch: int = 128, flip: bool = False) -> np.ndarray:
    """Calibrated logits; with ``flip``, averaged over each crop and its mirror image."""
    resize = getattr(model.card, "resize", "auto")
    out = []
    for i in range(0, len(images), batch):
        crops = np.stack([crop_whole(im, 256, resize) for im in images[i : i + batch]])
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(255.0)
        logits = model.logits(x).float()
        if flip:
            logits = (logits + model.logits(x.flip(3)).float()) / 2
        out.append(logits.numpy())
    return calibrate_logits(model.card.calibration, np.concatenate(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="bundled names or .safetensors files")
    parser.add_argument("--set", action="append", required=True, help="NAME=FOLDER")
    parser.add_argument("--max", type=int, default=0, help="seeded subset per set (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", type=float, default=0.25, help="weight step of ensembles")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--video", help="NAME=FOLDER of labelled videos")
    parser.add_argument("--video-top", type=int, default=8, help="rows measured on video")
    parser.add_argument("--cards", default="runs/ensemble-search", help="folder for cards")
    parser.add_argument(
        "--flip",
        action="store_true",
        help="image sets: average each model's logits over the crop and its mirror image "
        "(test-time augmentation; the video rows are scored without it)",
    )
    args = parser.parse_args()
    sets = dict(s.split("=", 1) for s in args.set)
    models = {m: load_model(m) for m in args.models}
    logits: dict[str, dict[str, np.ndarray]] = {m: {} for m in models}
    labels: dict[str, np.ndarray] = {}
    for name, folder in sets.items():
        images, labels[name] = _images(folder, args.max, args.seed)
        for m, model in models.items():
            logits[m][name] = _logits(model, images, flip=args.flip)
    steps = np.arange(0.0, 1.0 + 1e-9, args.grid)
    rows = []
    names = list(models)
    for k in range(1, len(names) + 1):
        for members in itertools.combinations(names, k):
            for w in itertools.product(steps, repeat=k):
                if abs(sum(w) - 1.0) > 1e-6 or min(w) == 0:
                    continue
                aucs = {
                    s: float(
                        roc_auc_score(
                            labels[s],
                            sum(wi * logits[m][s] for wi, m in zip(w, members, strict=True)),
                        )
                    )
                    for s in sets
                }
                rows.append((min(aucs.values()), members, w, aucs))
    rows.sort(key=lambda r: -r[0])
    for low, members, w, aucs in rows[: args.top]:
        print(_row_text(low, members, w, aucs))
    single = {m: next(r[3] for r in rows if r[1] == (m,)) for m in names}
    print(json.dumps({"single": single}, indent=1), flush=True)
    if args.video:
        video_rows(rows[: args.video_top], models, args.video, Path(args.cards))


def video_rows(rows: list, models: dict, video: str, cards: Path) -> None:
    """Video AUC of each row by `mesonet evaluate`'s code, detections shared between rows."""
    name, folder = video.split("=", 1)
    cards.mkdir(parents=True, exist_ok=True)
    first = next(iter(models))
    shared = CachingDetector(Detector(first, faces="detect").video_face_detector)
    measured = []
    for index, (_, members, w, aucs) in enumerate(rows):
        card = ensemble_card(f"search-{index}", [models[m] for m in members], list(w))
        for member, spec in zip(card.members, members, strict=True):
            member["model"] = spec  # the name or path given, so files load too
        path = cards / f"search-{index}.json"
        save_ensemble(card, path)
        detector = Detector(str(path), faces="detect", face_detector=shared)
        auc = evaluate(detector, folder)["auc"]
        row_aucs = {**aucs, name: auc}
        measured.append((min(row_aucs.values()), members, w, row_aucs, path))
        print(f"measured {path} on {name}: AUC {auc:.4f}", file=sys.stderr, flush=True)
    measured.sort(key=lambda r: -r[0])
    print(f"rows measured on {name} (sorted by the minimum over every set):")
    for low, members, w, aucs, path in measured:
        print(f"{_row_text(low, members, w, aucs)} | {path}", flush=True)


def _row_text(low: float, members: tuple, w: tuple, aucs: dict[str, float]) -> str:
    combo = " + ".join(f"{wi:.2f}*{m}" for wi, m in zip(w, members, strict=True))
    per = ", ".join(f"{s} {a:.4f}" for s, a in aucs.items())
    return f"min {low:.4f} | {combo} | {per}"


if __name__ == "__main__":
    main()
