"""Video AUC of a frame model alone, a video model alone and the two combined, with the cost
per video of each path, from one pass over a labelled video folder.

Each video is analysed twice, as ``mesonet evaluate`` would: by the frame model alone
(``Detector(model)``: the usual 32 frames), then with the video model
(``Detector(model, video_model=..., video_rule="frames")``: those frames plus the video
model's runs of consecutive frames, the detector on every one). The second record holds
each track's frame and temporal evidence, so every rule of
:func:`mesonet.pipeline.temporal.combine` is applied to a copy of it: the figures are those
``mesonet evaluate DATA --model M --video-model V --video-rule R`` gives. Per-video rows go
to ``--out`` (JSON lines); the summary is printed as JSON::

    python tools/video_model_eval.py ../shared/datasets/ffpp-c40-videos \
        --model runs/video/lite0-noffpp-snapshot.safetensors \
        --video-model runs/video/temporal-lite0/best.safetensors --threads 1

``temporal`` is the video model's score where a track has a window (tracks without one keep
their frame score); ``videos_with_temporal`` counts the videos whose decisive track had one.
``--rows FILE`` summarises rows written before instead of analysing again; ``--figure PNG``
plots each video's frame evidence against its temporal evidence (docs/video-model.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from mesonet.evaluation.runner import CLASS_FOLDERS
from mesonet.media import VIDEO_EXTENSIONS
from mesonet.pipeline import Detector
from mesonet.pipeline.analysis import Analysis
from mesonet.pipeline.temporal import VIDEO_RULES, combine


def labelled_videos(data: Path) -> list[tuple[Path, int]]:
    found = []
    for name, label in CLASS_FOLDERS.items():
        folder = data / name
        if folder.is_dir():
            found += [
                (p, label) for p in sorted(folder.iterdir()) if p.suffix.lower() in VIDEO_EXTENSIONS
            ]
    return found


def auc(labels: list[int], scores: list[float | None]) -> float | None:
    from sklearn.metrics import roc_auc_score

    pairs = [(y, s) for y, s in zip(labels, scores, strict=True) if s is not None]
    ys = [y for y, _ in pairs]
    if len(set(ys)) < 2:
        return None
    return round(float(roc_auc_score(ys, [s for _, s in pairs])), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder with real/ and fake/ videos")
    parser.add_argument("--model", required=True, help="the frame model (name or file)")
    parser.add_argument("--video-model", required=True, help="the video model (name or file)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--limit", type=int, default=0, help="at most N videos (0 = all)")
    parser.add_argument("--out", type=Path, help="per-video rows (JSON lines)")
    parser.add_argument("--rows", type=Path, help="summarise these rows (from --out) instead")
    parser.add_argument("--figure", type=Path, help="frame vs temporal evidence, as a PNG")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rows:
        rows = [json.loads(line) for line in args.rows.read_text().splitlines() if line]
    else:
        rows = analyse(args)
    print(json.dumps(summarise(rows, args), indent=2))
    if args.figure:
        plot(rows, args.figure, card_threshold(args.model), card_threshold(args.video_model))


def card_threshold(name: str) -> float:
    from mesonet.models.registry import read_card, resolve_model_path

    return float(read_card(resolve_model_path(name)).threshold)


def analyse(args: argparse.Namespace) -> list[dict]:
    """One row per video: both paths' scores, every rule's, the time each path took."""
    plain = Detector(args.model)
    video = Detector(args.model, video_model=args.video_model, video_rule="frames")
    records = Analysis.of(video).records
    threshold = float(video.temporal.model.card.threshold)
    videos = labelled_videos(args.data)
    if args.limit:
        videos = videos[:: max(1, len(videos) // args.limit)][: args.limit]
    rows = []
    out = args.out.open("w", encoding="utf-8") if args.out else None
    for path, label in videos:
        start = time.perf_counter()
        frames_only = plain.predict(path)
        middle = time.perf_counter()
        both = video.predict(path)
        end = time.perf_counter()
        row = {
            "path": str(path),
            "label": label,
            "frame_model": frames_only.fake_probability,
            "seconds_frames": round(middle - start, 3),
            "seconds_video": round(end - middle, 3),
            "frames_analyzed": [frames_only.frames_analyzed, both.frames_analyzed],
        }
        for rule in VIDEO_RULES:
            result = copy.deepcopy(both)
            combine(result, rule, threshold, records)
            row[rule] = result.fake_probability
            if rule == "temporal":
                decisive = result.decisive_track
                row["has_temporal"] = bool(decisive and decisive.temporal_probability is not None)
        rows.append(row)
        if out:
            out.write(json.dumps(row) + "\n")
            out.flush()
    if out:
        out.close()
    return rows


def summarise(rows: list[dict], args: argparse.Namespace) -> dict:
    labels = [r["label"] for r in rows]
    return {
        "data": str(args.data),
        "model": args.model,
        "video_model": args.video_model,
        "videos": len(rows),
        "videos_with_temporal": sum(r["has_temporal"] for r in rows),
        "auc": {
            "frame_model_alone": auc(labels, [r["frame_model"] for r in rows]),
            **{f"rule_{rule}": auc(labels, [r[rule] for r in rows]) for rule in VIDEO_RULES},
        },
        "auc_by_method": by_method(rows),
        "seconds_per_video": {
            "frame_model_alone": round(float(np.mean([r["seconds_frames"] for r in rows])), 2),
            "with_video_model": round(float(np.mean([r["seconds_video"] for r in rows])), 2),
        },
        "frames_per_video": {
            "frame_model_alone": round(float(np.mean([r["frames_analyzed"][0] for r in rows])), 1),
            "with_video_model": round(float(np.mean([r["frames_analyzed"][1] for r in rows])), 1),
        },
    }


def by_method(rows: list[dict]) -> dict[str, dict]:
    """Each manipulation (the fake file name's prefix before "__") against all real videos."""
    methods = sorted({Path(r["path"]).name.split("__")[0] for r in rows if r["label"] == 1})
    found = {}
    for method in methods:
        keep = [r for r in rows if r["label"] == 0 or Path(r["path"]).name.startswith(method)]
        labels = [r["label"] for r in keep]
        found[method] = {
            "frame_model_alone": auc(labels, [r["frame_model"] for r in keep]),
            **{f"rule_{rule}": auc(labels, [r[rule] for r in keep]) for rule in VIDEO_RULES},
        }
    return found


def plot(rows: list[dict], path: Path, frame_cut: float, video_cut: float) -> None:
    """Each video as a point: its score by the frame evidence (x) and by the temporal
    evidence (y), real and fake apart; the dashed lines are the models' thresholds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.6), dpi=120)
    for label, name, marker, colour in ((0, "real", "o", "#2b7bba"), (1, "fake", "^", "#d1495b")):
        xs = [r["frames"] for r in rows if r["label"] == label]
        ys = [r["temporal"] for r in rows if r["label"] == label]
        ax.scatter(xs, ys, marker=marker, c=colour, label=f"{name} ({len(xs)})", alpha=0.8)
    ax.axhline(video_cut, color="grey", lw=0.8, ls="--")
    ax.axvline(frame_cut, color="grey", lw=0.8, ls="--")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="frame evidence (decisive track's mean)",
           ylabel="temporal evidence (video model)")  # fmt: skip
    ax.set_title("Two kinds of evidence per video", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
