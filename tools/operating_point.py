"""The operating point of a model: the lowest score at which it may say "likely forged" while
calling at most 5% of the real files of every measured set forged (issue 33, item 5).

    python tools/operating_point.py ensemble.lite0-f2f \\
        ../shared/datasets/dfdc-faces/val:none ../shared/datasets/mesonet-deepfake-val:none \\
        ../shared/datasets/ffpp-faces-dev:none ~/.cache/mesonet-data/wild-dev:detect \\
        --scores runs/op/default.json \\
        --write src/mesonet/models/weights/ensemble.lite0-f2f.json

Each SET is a labelled folder (real/ and fake/) and how faces are found there (``none``:
the images are face crops; ``detect``: MTCNN, as ``mesonet predict``), or the records of
``mesonet predict FOLDER -r -f jsonl`` (``RECORDS.jsonl:records``), each file labelled by its
class folder. Files are scored as
``mesonet predict`` scores them (judging rules included); a file without a judged face is
``uncertain`` whatever its score and so never a false alarm, and it counts as undetected.
Per set, the cut is the smallest score above which at most ``--max-false-alarm`` of its real
files lie; the operating point is the highest cut over the sets (never under the card's own
band). The table gives each set's false-alarm and detection rates at it. ``--write`` puts it
in an ensemble card (.json) as the top of ``verdict_bands.uncertain``, with the measurements
in ``verdict_bands.operating_point``. ``--scores`` keeps the per-file scores, so a rerun
with other sets scores only what is new.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from mesonet.evaluation.runner import collect_labelled, label_of
from mesonet.pipeline import Detector


def _cut(real_scores: list[float], share: float) -> float:
    """The smallest score s with at most ``share`` of ``real_scores`` >= s."""
    scores = np.sort(np.asarray(real_scores, dtype=float))[::-1]
    allowed = int(np.floor(share * len(scores)))  # reals that may lie at or above the cut
    if allowed >= len(scores):
        return 0.0
    return float(np.nextafter(scores[allowed], 1.0))  # just above the first real not allowed


def set_name(folder: str) -> str:
    """``dfdc-faces/val`` for ``../shared/datasets/dfdc-faces/val``, else the folder's name."""
    parts = Path(folder).expanduser().with_suffix("").parts
    return "/".join(parts[parts.index("datasets") + 1 :]) if "datasets" in parts else parts[-1]


def read_records(path: str) -> list[dict]:
    """Per-file rows of predict's JSON Lines records, labelled by their class folder."""
    rows = []
    for line in Path(path).expanduser().read_text().splitlines():
        record = json.loads(line) if line.strip() else None
        label = label_of(record["path"]) if record else None
        if record is None or label is None or record["status"] != "ok":
            continue
        rows.append(
            {
                "path": record["path"],
                "label": label,
                "p": record["fake_probability"],
                "judged": record.get("note") is None,
            }
        )
    return rows


def score_set(model: str, folder: str, faces: str, cache: dict) -> list[dict]:
    """Per-file rows (path, label, probability, judged) of ``folder``, scored or cached."""
    if faces == "records":
        return read_records(folder)
    key = f"{faces}:{Path(folder).expanduser().resolve()}"
    if key in cache:
        return cache[key]
    detector = Detector(model, faces=faces)
    labelled = collect_labelled(Path(folder).expanduser())
    rows = []
    for lab, result in zip(
        labelled, detector.predict_items(lab.item for lab in labelled), strict=True
    ):
        if result.status != "ok":
            continue
        rows.append(
            {
                "path": result.path,
                "label": lab.label,
                "p": result.fake_probability,
                "judged": result.note is None,
            }
        )
    cache[key] = rows
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model")
    parser.add_argument("sets", nargs="+", metavar="SET:FACES")
    parser.add_argument("--max-false-alarm", type=float, default=0.05)
    parser.add_argument("--scores", type=Path, help="JSON file keeping per-file scores")
    parser.add_argument("--write", type=Path, help="an ensemble card (.json) to update")
    args = parser.parse_args(argv)
    cache = json.loads(args.scores.read_text()) if args.scores and args.scores.exists() else {}
    per_set = {}
    for spec in args.sets:
        folder, _, faces = spec.rpartition(":")
        if faces not in ("none", "detect", "records") or not folder:
            print(
                f"error: {spec}: give SET:none, SET:detect or FILE.jsonl:records", file=sys.stderr
            )
            return 2
        per_set[set_name(folder)] = score_set(args.model, folder, faces, cache)
        if args.scores:
            args.scores.parent.mkdir(parents=True, exist_ok=True)
            args.scores.write_text(json.dumps(cache))
    cuts = {}
    for name, rows in per_set.items():
        reals = [r["p"] for r in rows if r["label"] == 0 and r["judged"]]
        cuts[name] = _cut(reals, args.max_false_alarm) if reals else 0.0
    card = None
    floor = 0.5
    if args.write:
        card = json.loads(args.write.read_text())
        floor = max(floor, card["verdict_bands"]["uncertain"][1])
    point = max([floor, *cuts.values()])
    table = {}
    print(
        f"{args.model}: operating point {point:.4f} (at most {args.max_false_alarm:.0%} "
        "of each set's real files likely forged)"
    )
    header = ("set", "reals", "fakes", "cut", "false alarms", "detected")
    print(f"{header[0]:28s} " + " ".join(f"{h:>{max(6, len(h))}s}" for h in header[1:]))
    for name, rows in per_set.items():
        reals = [r for r in rows if r["label"] == 0]
        fakes = [r for r in rows if r["label"] == 1]
        fa = sum(r["judged"] and r["p"] >= point for r in reals) / max(len(reals), 1)
        det = sum(r["judged"] and r["p"] >= point for r in fakes) / max(len(fakes), 1)
        table[name] = {
            "n_real": len(reals),
            "n_fake": len(fakes),
            "cut": round(cuts[name], 6),
            "false_alarm_rate": round(fa, 4),
            "detection_rate": round(det, 4) if fakes else None,
        }
        print(
            f"{name:28s} {len(reals):6d} {len(fakes):6d} {cuts[name]:7.4f} {fa:13.1%} "
            + (f"{det:9.1%}" if fakes else f"{'-':>9s}")
        )
    if card is not None:
        bands = card["verdict_bands"]
        bands["uncertain"][1] = round(point, 6)
        bands["operating_point"] = {
            "score": round(point, 6),
            "max_false_alarm": args.max_false_alarm,
            "sets": table,
            "command": "python tools/operating_point.py "
            + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        }
        args.write.write_text(json.dumps(card, indent=2) + "\n")
        print(f"written to {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
