"""Which judging limits and image rule to ship: measured on records of a labelled set.

    mesonet predict ~/.cache/mesonet-data/wild-dev -r -f jsonl --judge-px 0 \\
        --judge-sharpness 0 > runs/wild/default-raw.jsonl
    python tools/wild_rules.py runs/wild/default-raw.jsonl --model ensemble.lite0-f2f

The records must judge every face (``--judge-px 0 --judge-sharpness 0``) so each face's raw
score, box, confidence and sharpness are there; each file's label is its class folder
(``real/`` or ``fake/``). For every combination of image rule, smallest judged face and
sharpness limit, the images' scores and verdicts are made again as ``mesonet predict`` would
(:mod:`mesonet.pipeline.records`); videos keep their recorded scores (their tracks are judged
by the same limits in the pipeline; rerun ``mesonet evaluate`` with the chosen ones). Prints
AUC, the share of real files called likely forged, of forged ones called likely forged, and
of files called uncertain for lack of a judged face.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

from sklearn.metrics import roc_auc_score

from mesonet.evaluation.runner import label_of
from mesonet.judge import unjudged_reason
from mesonet.models import load_model
from mesonet.models.calibration import verdict_for
from mesonet.pipeline.records import card_thresholds, image_score
from mesonet.results import FaceResult


def evaluate_rule(records, threshold, bands, card_threshold, rule, min_px, min_sharp):
    rows = []  # (label, score, verdict, kind, unjudgeable)
    for record in records:
        label = label_of(record["path"])
        if label is None or record["status"] != "ok":
            continue
        if record["kind"] != "image":
            rows.append((label, record["fake_probability"], record["verdict"], "video", False))
            continue
        faces = [
            FaceResult(
                box=f["box"], confidence=f["confidence"], fake_probability=f["fake_probability"]
            )
            for f in record["faces"]
        ]
        sharps = [f.get("sharpness") for f in record["faces"]]
        judged = [
            face
            for face, sharp in zip(faces, sharps, strict=True)
            if unjudged_reason(max(face.box[2], face.box[3]), sharp, min_px, min_sharp) is None
        ]
        score = image_score(judged or faces, rule)
        verdict = (
            "uncertain" if not judged else verdict_for(score, threshold, bands, card_threshold)
        )
        rows.append((label, score, verdict, "image", not judged))
    return rows


def summary(rows):
    labels = [r[0] for r in rows]
    scores = [r[1] for r in rows]
    reals = [r for r in rows if r[0] == 0]
    fakes = [r for r in rows if r[0] == 1]
    return {
        "n": len(rows),
        "auc": roc_auc_score(labels, scores) if 0 < sum(labels) < len(labels) else None,
        "false_alarm": sum(r[2] == "likely forged" for r in reals) / max(len(reals), 1),
        "detected": sum(r[2] == "likely forged" for r in fakes) / max(len(fakes), 1),
        "unjudged": sum(r[4] for r in rows) / max(len(rows), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("records", type=Path)
    parser.add_argument("--model", required=True, help="the model that made the records")
    parser.add_argument("--px", default="0,32,40,48,64", help="smallest judged faces to try")
    parser.add_argument("--sharpness", default="0,0.08,0.10,0.12", help="limits to try")
    args = parser.parse_args(argv)
    records = [json.loads(line) for line in args.records.read_text().splitlines() if line]
    threshold, card_threshold, bands = card_thresholds(load_model(args.model).card)
    pxs = [float(v) for v in args.px.split(",")]
    sharps = [float(v) for v in args.sharpness.split(",")]
    print(f"{len(records)} records; model {args.model}, threshold {threshold:.3f}")
    print(
        f"{'rule':9s} {'px':>4s} {'sharp':>5s} | {'AUC':>6s} {'images':>6s} {'videos':>6s} | "
        f"{'false alarms':>12s} {'detected':>8s} {'unjudged':>8s}"
    )
    for rule, px, sharp in itertools.product(("max", "largest", "weighted"), pxs, sharps):
        rows = evaluate_rule(records, threshold, bands, card_threshold, rule, px, sharp)
        every = summary(rows)
        images = summary([r for r in rows if r[3] == "image"])
        videos = summary([r for r in rows if r[3] == "video"])

        def f(v):
            return "     -" if v is None else f"{v:6.3f}"

        print(
            f"{rule:9s} {px:4.0f} {sharp:5.2f} | {f(every['auc'])} {f(images['auc'])} "
            f"{f(videos['auc'])} | {every['false_alarm']:12.1%} {every['detected']:8.1%} "
            f"{every['unjudged']:8.1%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
