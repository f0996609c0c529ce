"""Detect and align the faces of a tree of images the way `mesonet predict` does.

    python tools/align_faces.py ../shared/datasets/dfdc-faces /tmp/dfdc-aligned --splits train val

Mirrors SRC's folders under DST: each image becomes one PNG, the most confident face found
by the MTCNN detector, cut by `mesonet.faces.align_face` (eyes levelled, 1.3x the face box,
256 px), the crops that `predict` and `evaluate --faces detect` score. Images where no
face is found, or that cannot be decoded, are left out and counted. A training set built
this way matches what the model sees at prediction time instead of the framing of someone
else's crops.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
from rich.progress import Progress

from mesonet.faces import align_face, create_detector
from mesonet.inputs import discover
from mesonet.media import MediaError, read_image


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("src", type=Path, help="a folder of images (any depth)")
    parser.add_argument("dst", type=Path, help="where the aligned crops go (same layout)")
    parser.add_argument("--splits", nargs="*", default=[], help="only these top-level folders")
    parser.add_argument("--min-face", type=int, default=40, help="smallest face, source pixels")
    args = parser.parse_args()
    roots = [args.src / s for s in args.splits] if args.splits else [args.src]
    files = sorted(i.path for i in discover(roots, recursive=True) if i.kind == "image")
    if not files:
        parser.error(f"no images under {', '.join(map(str, roots))}")
    detector = create_detector("mtcnn", min_face_size=args.min_face)
    missing = 0
    with Progress() as progress:
        task = progress.add_task("aligning", total=len(files))
        for path in files:
            out = (args.dst / path.relative_to(args.src)).with_suffix(".png")
            progress.advance(task)
            if out.exists():
                continue
            try:
                rgb = read_image(path)
            except MediaError:
                rgb = None
            faces = detector.detect([rgb])[0] if rgb is not None else []
            if not faces:
                missing += 1
                continue
            crop = align_face(rgb, faces[0])
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(
                str(out), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1]
            )
    print(
        f"{len(files) - missing} of {len(files)} images aligned into {args.dst}; "
        f"no face in {missing}"
    )


if __name__ == "__main__":
    main()
