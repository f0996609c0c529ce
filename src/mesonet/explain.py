"""Evidence maps: which part of a face crop moves its score towards forged, by occlusion.

>>> occlusion = Occlusion()                       # 8 x 8 cells, 64 px patches, greyed
>>> m = occlusion.map(scorer.logits, crop)        # one batched pass: the crop and 49 copies
>>> m.cells                                       # 8 x 8 logit drops (> 0: evidence of forgery)
>>> face_region(m.peak, landmarks_in_crop)        # "mouth", "left jaw", "outside the face"...

A patch of the 256 px crop is hidden (greyed, or blurred) in one copy of the crop per
position; every copy and the crop itself go through the model's scorer in one batch (the
same engine as the score: OpenVINO, int8, a fused ensemble's combined logit). A cell's
evidence is the mean, over the patches covering it, of how far the model's logit falls when
the patch is hidden: positive where the region pushed the score towards forged. The model's
own input size does not matter: every model makes its input from the same 256 px crop.

Regions are named from the face's five landmarks (eyes, nose, mouth corners) in the crop:
"left" and "right" as seen in the picture (the subject's right is the picture's left).
Nothing here needs PyTorch.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

CROP = 256
"""The side of the aligned crop every model scores (:data:`mesonet.pipeline.CROP_SIZE`)."""
FILLS = ("grey", "blur")
"""How a hidden patch is filled: grey (the default: on 60 self-blended fakes its peaks fell
in the blend mask in 85% of maps, blurring's in 66%: blur keeps the colour mismatch a blend
leaves), or the crop blurred (keeps colour, removes detail)."""
FAINT = 0.25
"""Overlays are scaled to the map's largest drop, but never to less than this (logit units):
a map whose evidence is all weaker than that is drawn faint."""

Logits = Callable[[np.ndarray], np.ndarray]
"""uint8 RGB crops N x 256 x 256 x 3 -> N logits (a ModelScorer's ``logits``)."""


@dataclass(frozen=True)
class EvidenceMap:
    """The evidence of one crop: ``cells`` (grid x grid, logit drops when hidden), the
    crop's own ``logit`` and ``peak``, the centre of the strongest cell in crop pixels."""

    cells: np.ndarray
    logit: float

    @property
    def peak(self) -> tuple[float, float]:
        grid = self.cells.shape[0]
        row, col = np.unravel_index(int(np.argmax(self.cells)), self.cells.shape)
        step = CROP / grid
        return ((col + 0.5) * step, (row + 0.5) * step)

    @property
    def strength(self) -> float:
        """The strongest cell's logit drop (how much hiding it lowers the score)."""
        return float(self.cells.max())


@dataclass(frozen=True)
class Occlusion:
    """The occlusion scheme: a ``grid`` x ``grid`` map of the crop, patches of ``patch``
    cells moved one cell at a time, hidden by ``fill`` (see :data:`FILLS`)."""

    grid: int = 8
    patch: int = 2
    fill: str = "grey"

    def __post_init__(self) -> None:
        if self.fill not in FILLS:
            raise ValueError(f"fill must be one of {', '.join(FILLS)}, not {self.fill!r}")
        if not (1 <= self.patch <= self.grid and CROP % self.grid == 0):
            raise ValueError(f"a {self.grid} grid of {self.patch}-cell patches does not fit")

    @property
    def positions(self) -> list[tuple[int, int]]:
        """The top-left cell (row, column) of every patch."""
        n = self.grid - self.patch + 1
        return [(r, c) for r in range(n) for c in range(n)]

    @property
    def batch_size(self) -> int:
        """Crops scored per map: the crop and one copy per patch."""
        return 1 + len(self.positions)

    def batch(self, crop: np.ndarray) -> np.ndarray:
        """The crop followed by one copy per patch position with that patch hidden."""
        if crop.shape != (CROP, CROP, 3) or crop.dtype != np.uint8:
            raise ValueError(f"expected a uint8 {CROP} x {CROP} x 3 crop, got {crop.shape}")
        if self.fill == "grey":
            filler = np.full_like(crop, 128)
        else:
            filler = cv2.GaussianBlur(crop, (0, 0), CROP / self.grid / 2)
        step, side = CROP // self.grid, CROP // self.grid * self.patch
        out = np.repeat(crop[None], self.batch_size, axis=0)
        for i, (r, c) in enumerate(self.positions, start=1):
            y, x = r * step, c * step
            out[i, y : y + side, x : x + side] = filler[y : y + side, x : x + side]
        return out

    def cells(self, drops: np.ndarray) -> np.ndarray:
        """Per cell: the mean drop of the patches covering it."""
        total = np.zeros((self.grid, self.grid))
        count = np.zeros((self.grid, self.grid))
        for drop, (r, c) in zip(drops, self.positions, strict=True):
            total[r : r + self.patch, c : c + self.patch] += drop
            count[r : r + self.patch, c : c + self.patch] += 1
        return total / count

    def map(self, logits: Logits, crop: np.ndarray) -> EvidenceMap:
        """The evidence map of ``crop`` under ``logits`` (one call, one batch)."""
        z = np.asarray(logits(self.batch(crop)), dtype=np.float64).reshape(-1)
        if z.shape[0] != self.batch_size or not np.isfinite(z).all():
            raise ValueError("the model gave no finite logit for every occluded copy")
        return EvidenceMap(self.cells(z[0] - z[1:]), float(z[0]))


# --------------------------------------------------------------------------- regions


def face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The face's own axes from its five landmarks (crop pixels): the eyes' midpoint, the
    across unit (one per eye distance, towards the picture's right eye) and the down unit
    (one per eyes-to-mouth distance). None when the landmarks do not make a face."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if pts.shape[0] < 5:
        return None
    eyes, mouth = (pts[0] + pts[1]) / 2, (pts[3] + pts[4]) / 2
    across, down = pts[1] - pts[0], mouth - eyes
    width = float(np.hypot(*across))
    if width < 1e-6:
        return None
    ex = across / width
    ey = np.array([-ex[1], ex[0]])
    height = float(down @ ey)
    if height < 1e-6:  # the mouth not below the eyes: no face to name regions of
        return None
    return eyes, ex / width, ey / height


def face_coordinates(point: tuple[float, float], landmarks: np.ndarray) -> tuple[float, float]:
    """``point`` in the face's own units: ``u`` across (the eyes at -0.5 and 0.5), ``v`` down
    (0 at the eyes, 1 at the mouth). Raises ValueError without a usable face frame."""
    frame = face_frame(landmarks)
    if frame is None:
        raise ValueError("the landmarks do not make a face")
    origin, ux, uy = frame
    d = np.asarray(point, dtype=np.float64) - origin
    return float(d @ ux), float(d @ uy)


def inside_face(u: float, v: float) -> bool:
    """Within the face's outline: an ellipse from the forehead (v = -0.9) to the chin
    (v = 1.8), 1.1 eye distances either side of the nose line."""
    return (u / 1.1) ** 2 + ((v - 0.45) / 1.35) ** 2 <= 1.0


def face_region(point: tuple[float, float], landmarks: np.ndarray) -> str | None:
    """The region of the face ``point`` (crop pixels) lies in, named from the landmarks;
    None when they do not make a face. Sides as seen in the picture."""
    try:
        u, v = face_coordinates(point, landmarks)
    except ValueError:
        return None
    if not inside_face(u, v):
        return "outside the face"
    side = "left" if u < 0 else "right"
    if v < -0.3:
        return "forehead"
    if v < 0.3:
        return "eyes" if abs(u) < 0.25 else f"{side} eye"
    if v < 0.75:
        return "nose" if abs(u) < 0.3 else f"{side} cheek"
    if v < 1.25:
        return "mouth" if abs(u) < 0.55 else f"{side} jaw"
    return "chin" if abs(u) < 0.45 else f"{side} jaw"


# --------------------------------------------------------------------------- pictures


def heat(evidence: EvidenceMap, side: int = CROP) -> np.ndarray:
    """The map as a ``side`` x ``side`` float image in [0, 1]: 0 where hiding a region does
    not lower the score, 1 at the strongest drop (never scaled to less than :data:`FAINT`)."""
    cells = np.clip(evidence.cells / max(evidence.strength, FAINT), 0.0, 1.0).astype(np.float32)
    return cv2.resize(cells, (side, side), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def paint(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """``image`` (RGB) with ``heat`` (same height and width, in [0, 1]) drawn over it:
    transparent at 0, yellow to red as it grows."""
    colour = np.stack([np.full_like(heat, 255), 230 * (1 - heat), 40 * (1 - heat)], axis=-1)
    alpha = (0.65 * heat)[..., None]
    out = image.astype(np.float32) * (1 - alpha) + colour * alpha
    return out.round().clip(0, 255).astype(np.uint8)


def overlay(crop: np.ndarray, evidence: EvidenceMap, side: int = CROP) -> np.ndarray:
    """The crop with its evidence of forgery drawn over it (transparent where there is
    none, yellow to red as it grows) and the peak ringed, ``side`` pixels square (RGB)."""
    base = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    out = paint(base, heat(evidence, side))
    if evidence.strength > 0:
        scale = side / CROP
        centre = tuple(round(c * scale) for c in evidence.peak)
        radius = max(round(CROP / evidence.cells.shape[0] * 0.6 * scale), 4)
        cv2.circle(out, centre, radius + 1, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.circle(out, centre, radius, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def png_bytes(image: np.ndarray) -> bytes:
    """An RGB image as PNG bytes."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()


def png_data_url(image: np.ndarray) -> str:
    """An RGB image as a ``data:image/png;base64,...`` URL."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")
