"""What an evidence map costs per face, against plain scoring in the same run.

For the model (default: the bundled default, on its ``auto`` engine), on FACES real face
crops (dfdc-faces test reals, or the packaged samples without ../shared), resized to the
256 px crop:

- plain scoring, one face per call (what one more face costs the detector on its own) and
  at batch 64 (per face);
- the evidence map of one face (:meth:`mesonet.explain.Occlusion.map`: one batched call of
  the crop and its occluded copies), and the whole entry the record gets (the map, the
  overlay and its PNG).

Milliseconds per face (median over the faces), and each as a ratio to one plain face::

    python benchmarks/bench_explain.py                 # ~1 min
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
from _speed import DFDC, CpuWatch, machine_note, table


def crops(count: int) -> list[np.ndarray]:
    from mesonet.faces import crop_whole
    from mesonet.inputs import sample_paths

    folder = DFDC / "test" / "real"
    paths = sorted(folder.glob("*.jpg"))[:count] if folder.is_dir() else sample_paths()
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    return [crop_whole(image, 256) for image in images]


def per_face(fn, faces: list[np.ndarray], repeats: int = 3) -> float:
    """Median seconds of ``fn(face)`` over the faces (each the best of ``repeats``)."""
    seconds = []
    for face in faces:
        fn(face)  # warm: compiled shapes, caches
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fn(face)
            best = min(best, time.perf_counter() - start)
        seconds.append(best)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="default: the bundled default")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--faces", type=int, default=20)
    args = parser.parse_args()

    from mesonet.explain import Occlusion, overlay, png_bytes
    from mesonet.pipeline import Detector

    print(machine_note())
    detector = Detector(args.model, faces="none", backend=args.backend)
    scorer, occlusion = detector.scorer, Occlusion()
    faces = crops(args.faces)
    watch = CpuWatch()
    one = per_face(lambda f: scorer(f[None]), faces)
    batch = np.stack([faces[i % len(faces)] for i in range(64)])
    batched = per_face(lambda _: scorer(batch), faces[:3]) / 64
    mapped = per_face(lambda f: occlusion.map(scorer.logits, f), faces)

    def entry(face: np.ndarray) -> bytes:
        return png_bytes(overlay(face, occlusion.map(scorer.logits, face)))

    whole = per_face(entry, faces)
    rows = [
        ["plain score, one face a call", 1000 * one, "1.00x"],
        ["plain score, batch 64 (per face)", 1000 * batched, f"{batched / one:.2f}x"],
        [
            f"evidence map ({occlusion.batch_size} crops, one call)",
            1000 * mapped,
            f"{mapped / one:.1f}x",
        ],
        ["map + overlay + PNG (the record's)", 1000 * whole, f"{whole / one:.1f}x"],
    ]
    title = (
        f"{detector.model_name} on {detector.backend}, {len(faces)} faces, "
        f"occlusion {occlusion.grid}x{occlusion.grid} cells, {occlusion.fill} "
        f"{256 // occlusion.grid * occlusion.patch} px patches: ms per face"
    )
    print(table(title, ["what", "ms/face", "vs plain"], rows))
    print(watch.note())


if __name__ == "__main__":
    main()
