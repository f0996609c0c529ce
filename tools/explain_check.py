"""Do evidence maps point at the forgery? Measured on self-blended fakes, where it is known.

For each real face crop of FOLDER (default: dfdc-faces test reals), as ``--faces none`` sees
it (resized to the 256 px crop): MTCNN finds its five landmarks on the crop, a self-blended
fake is made from it (:func:`mesonet.training.synthetic.self_blend`, seeded per image, mask
from the landmarks), and the model's evidence map (:mod:`mesonet.explain`) is computed for
the fake and for the real crop. It prints, as JSON:

- ``fake.peak_in_mask``: the share of the fakes' maps whose peak lies inside the blend mask
  (where the mask, scaled to its maximum, is at least 0.5: the blended ellipse before its
  edge was softened), beside the same share for random maps (random logit drops through
  the same cells and peak: ``random_map``), for a point drawn uniformly over the crop
  (``uniform_point``: the mask's mean area) and for a map that always peaks at the crop's
  centre (``centre``);
- ``fake.called_fake``: the same, counted on the fakes the model scores at or above its
  threshold;
- ``real.peak_outside_face``: the share of the real faces' maps peaking "outside the face"
  (:func:`mesonet.explain.face_region`), beside the random maps' share.

    python tools/explain_check.py --limit 300       # about 10 min on 2 busy cores
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from mesonet.explain import Occlusion, face_region
from mesonet.faces import create_detector, crop_whole
from mesonet.training.synthetic import self_blend

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared/datasets/dfdc-faces/test/real"


def measure(
    folder: Path,
    model: str | None = None,
    limit: int | None = None,
    occlusion: Occlusion | None = None,
    seed: int = 0,
    backend: str = "auto",
) -> dict:
    """The figures above for the first ``limit`` images of ``folder`` (sorted by name)."""
    from mesonet.pipeline import Detector

    occlusion = occlusion or Occlusion()
    detector = Detector(model, faces="none", backend=backend)
    threshold = detector.threshold
    finder = create_detector("mtcnn")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    paths = paths[:limit] if limit else paths
    rng = np.random.default_rng(seed)
    rows, skipped, started = [], 0, time.perf_counter()
    for i, path in enumerate(paths):
        crop = crop_whole(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), 256)
        faces = finder.detect([crop])[0]
        if not faces:
            skipped += 1
            continue
        landmarks = np.asarray(faces[0].landmarks)
        fake, mask = self_blend(crop, np.random.default_rng(seed * 100_003 + i), landmarks)
        inside = mask >= 0.5 * mask.max()
        fake_map = occlusion.map(detector.scorer.logits, fake)
        real_map = occlusion.map(detector.scorer.logits, crop)
        noise = occlusion.cells(rng.normal(size=len(occlusion.positions)))
        random_peak = _peak(noise)
        rows.append(
            {
                "fake_in": bool(_at(inside, fake_map.peak)),
                "fake_called": _probability(detector, fake_map.logit) >= threshold,
                "random_in": bool(_at(inside, random_peak)),
                "area": float(inside.mean()),
                "centre_in": bool(inside[128, 128]),
                "real_out": face_region(real_map.peak, landmarks) == "outside the face",
                "random_out": face_region(random_peak, landmarks) == "outside the face",
            }
        )
    seconds = time.perf_counter() - started

    def share(key: str, subset: list[dict] | None = None) -> float | None:
        subset = rows if subset is None else subset
        return round(float(np.mean([r[key] for r in subset])), 3) if subset else None

    called = [r for r in rows if r["fake_called"]]
    return {
        "folder": str(folder),
        "model": detector.model_name,
        "backend": detector.backend,
        "occlusion": {"grid": occlusion.grid, "patch": occlusion.patch, "fill": occlusion.fill},
        "images": len(paths),
        "faces": len(rows),
        "no_landmarks": skipped,
        "fake": {
            "peak_in_mask": share("fake_in"),
            "random_map": share("random_in"),
            "uniform_point": share("area"),
            "centre": share("centre_in"),
            "called_fake": {"faces": len(called), "peak_in_mask": share("fake_in", called)},
        },
        "real": {"peak_outside_face": share("real_out"), "random_map": share("random_out")},
        "seconds": round(seconds, 1),
    }


def _probability(detector, logit: float) -> float:
    """The model's calibrated fake probability from its logit (as its scorer gives it)."""
    from mesonet.models.calibration import calibrate_logits, sigmoid

    z = calibrate_logits(detector.scorer.calibration, np.array([logit]))
    return float(sigmoid(z)[0])


def _peak(cells: np.ndarray) -> tuple[float, float]:
    row, col = np.unravel_index(int(np.argmax(cells)), cells.shape)
    step = 256 / cells.shape[0]
    return ((col + 0.5) * step, (row + 0.5) * step)


def _at(mask: np.ndarray, point: tuple[float, float]) -> bool:
    x, y = (min(max(int(v), 0), mask.shape[0] - 1) for v in point)
    return bool(mask[y, x])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, nargs="?", default=DEFAULT.resolve())
    parser.add_argument("--model", default=None, help="default: the bundled default")
    parser.add_argument("--limit", type=int, default=None, help="first N images (by name)")
    parser.add_argument("--grid", type=int, default=Occlusion.grid)
    parser.add_argument("--patch", type=int, default=Occlusion.patch)
    parser.add_argument("--fill", default=Occlusion.fill)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    occlusion = Occlusion(args.grid, args.patch, args.fill)
    print(json.dumps(measure(args.folder, args.model, args.limit, occlusion, 0, args.backend)))


if __name__ == "__main__":
    main()
