"""Aligned face crops of a media folder, as a training source: the project's own detector
(MTCNN) and alignment, as prediction sees faces.

    python tools/extract_faces.py ~/.cache/mesonet-data/wild-train \\
        ~/.cache/mesonet-data/wild-train-faces

SRC holds real/ (and optionally fake/) with images and videos, sub-folders included; OUT gets
real/ (and fake/) with one 256 px PNG per face, named ``<file>_<n>.png`` so that a split by
video name keeps every face of one file on one side. Faces under ``--min-size`` px (the
larger side of the detector's box, in source pixels) or below ``--min-confidence`` are left
out; a video gives the faces of ``--frames`` frames sampled evenly. A file whose crops are
already in OUT is skipped, so a rerun only adds what is new. The crops are derived from the
media: keep OUT outside the repository, like the media.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
from rich.progress import track

from mesonet.faces import align_face, create_detector
from mesonet.inputs import discover
from mesonet.media import iter_video_frames, probe_video, read_image, sample_frame_indices
from mesonet.pipeline.faces import CROP_SIZE
from mesonet.video import plausible_faces


def _name(src: Path, path: Path) -> str:
    relative = path.relative_to(src).with_suffix("")
    return "__".join(relative.parts[1:]).replace(" ", "_")


def _frames(path: Path, kind: str, frames: int):
    if kind == "image":
        yield read_image(path)
        return
    info = probe_video(path)
    indices = sample_frame_indices(info, frames)
    for frame in iter_video_frames(path, indices):
        yield frame.image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="folder with real/ (and fake/) media")
    parser.add_argument("out", type=Path, help="folder for real/ (and fake/) face crops")
    parser.add_argument("--min-size", type=float, default=32.0, help="smallest face, px")
    parser.add_argument("--min-confidence", type=float, default=0.9)
    parser.add_argument("--frames", type=int, default=8, help="frames sampled per video")
    parser.add_argument("--max-faces", type=int, default=40, help="most faces kept per file")
    args = parser.parse_args(argv)
    classes = [c for c in ("real", "fake") if (args.src / c).is_dir()]
    if "real" not in classes:
        print(f"error: {args.src} has no real/ folder", file=sys.stderr)
        return 2
    detector = create_detector("mtcnn")
    totals = {c: [0, 0] for c in classes}  # files, faces
    for label in classes:
        items = discover([args.src / label], recursive=True)
        (args.out / label).mkdir(parents=True, exist_ok=True)
        for item in track(items, description=f"{label}: faces"):
            path = Path(item.path)
            stem = _name(args.src, path)
            if any((args.out / label).glob(f"{stem}_*.png")):
                continue
            kept = 0
            try:
                for index, image in enumerate(_frames(path, item.kind, args.frames)):
                    found = plausible_faces(detector.detect([image])[0], image.shape)
                    found = [
                        f
                        for f in found
                        if f.confidence >= args.min_confidence
                        and max(f.box[2], f.box[3]) >= args.min_size
                    ]
                    for face in found:
                        if kept >= args.max_faces:
                            break
                        crop = align_face(image, face, CROP_SIZE)
                        target = args.out / label / f"{stem}_{index * 1000 + kept}.png"
                        cv2.imwrite(str(target), crop[:, :, ::-1])
                        kept += 1
            except Exception as exc:  # one unreadable file must not end the extraction
                print(f"skipped {path}: {exc}", file=sys.stderr)
                continue
            totals[label][0] += 1
            totals[label][1] += kept
    for label, (files, faces) in totals.items():
        print(f"{label}: {faces} faces from {files} new files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
