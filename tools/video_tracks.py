"""Video-level AUC and deciding-track coverage of `mesonet predict` records, under track rules.

    mesonet predict ../shared/datasets/ffpp-c40-videos -r -f jsonl -o ffpp.jsonl
    python tools/video_tracks.py ffpp.jsonl

The label of each video is its folder (``real/`` or ``fake/``). Prints, for the records as
written and re-decided from their tracks under other rules (``--rule SHARE:SIZE``, repeatable;
``0:0`` lets every track decide): the video-level ROC AUC and how many videos are decided by
a track covering less than ``--short`` of the analysed frames. Records written before videos
had ``tracks`` are summarised from their faces (the track ids they carry), so the figures of
an older version's output can be compared with the same script.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mesonet.evaluation.metrics import compute_metrics, group_of
from mesonet.results import FaceResult, TrackResult
from mesonet.video import TRACK_SHARE, TRACK_SIZE, choose_decisive, summarise_tracks

LABELS = {"real": 0, "fake": 1, "df": 1}


def tracks_of(record: dict, threshold: float) -> list[TrackResult]:
    """The record's tracks, or (an older record) tracks summarised from its faces."""
    if "tracks" in record:
        return [TrackResult(**t) for t in record["tracks"]]
    faces = [FaceResult(**f) for f in record["faces"]]
    return summarise_tracks(faces, record["frames_analyzed"], record["aggregation"], threshold)


def decide(tracks: list[TrackResult], rule: str) -> TrackResult:
    """The decisive track under ``rule``: "as-recorded", "max" (the old rule) or SHARE:SIZE."""
    if rule == "as-recorded":
        marked = [t for t in tracks if t.decisive]
        if marked:
            return marked[0]
        rule = "max"  # an older record: the most suspicious track decided
    if rule == "max":
        return max(tracks, key=lambda t: t.fake_probability)
    share, size = (float(v) for v in rule.split(":"))
    return choose_decisive(tracks, share, size)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("records", type=Path, help="JSON Lines from mesonet predict -f jsonl")
    parser.add_argument(
        "--rule",
        action="append",
        default=[],
        help=f"SHARE:SIZE to re-decide with (default: as recorded, {TRACK_SHARE}:{TRACK_SIZE}, "
        "0:0)",
    )
    parser.add_argument("--short", type=float, default=0.25, help="'short' track share")
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="for vote aggregation of older records"
    )
    args = parser.parse_args()
    records = [json.loads(line) for line in args.records.read_text().splitlines() if line]
    videos = [r for r in records if r.get("kind") == "video" and r["status"] == "ok"]
    rules = args.rule or ["as-recorded", f"{TRACK_SHARE}:{TRACK_SIZE}", "0:0"]
    print(f"{len(videos)} scored videos of {len(records)} records in {args.records}")
    for rule in rules:
        labels, scores, groups, short = [], [], [], []
        for record in videos:
            decisive = decide(tracks_of(record, args.threshold), rule)
            labels.append(LABELS[Path(record["path"]).parent.name])
            scores.append(decisive.fake_probability)
            groups.append(group_of(record["path"]))
            if decisive.share < args.short:
                short.append(Path(record["path"]).name)
        metrics = compute_metrics(labels, scores, args.threshold, groups=groups)
        print(
            f"rule {rule:>12}: AUC {metrics['auc']:.4f}, decided by a track under "
            f"{args.short:.0%} of the frames: {len(short)} of {len(videos)}"
            + (f" ({', '.join(short)})" if short else "")
        )


if __name__ == "__main__":
    main()
