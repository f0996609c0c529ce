"""Which faces can be judged: a face too small or too blurred to tell real from forged is
reported with the reason, and does not decide.

Two measures, both cheap (no model): the face's **size** in source pixels (the larger side
of the detector's box; the whole image with ``--faces none``), and its **sharpness**, the
share of the face's detail finer than a 48 px face holds (:func:`sharpness`). The limits
(:data:`MIN_FACE_PX`, :data:`MIN_SHARPNESS`) were measured on the robustness benchmark
(docs/results.md#judging-faces): below them the models' AUC falls by more than the strong
degradations' 0.05 budget, and real faces are called forged far more often.
"""

from __future__ import annotations

import cv2
import numpy as np

from mesonet.defaults import MIN_FACE_PX as MIN_FACE_PX
from mesonet.defaults import MIN_SHARPNESS as MIN_SHARPNESS
from mesonet.degradations import downscale

DETAIL_PX = 48
"""The face size whose detail :func:`sharpness` looks past."""


def sharpness(crop: np.ndarray) -> float:
    """The share of a face's detail finer than a :data:`DETAIL_PX` px face holds, from its
    aligned crop (H x W x 3 uint8 RGB, the face in its central half): the standard deviation
    of what a 48 px version loses, over that of what an 8 px version loses. About 0.2 for a
    sharp face, under 0.1 for one blurred with sigma 3 px or shrunk to 32 px; independent of
    brightness and contrast."""
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY).astype(np.float32)
    h, w = grey.shape
    face = np.ascontiguousarray(grey[h // 4 : h - h // 4, w // 4 : w - w // 4])
    fine = float((face - downscale(face, DETAIL_PX)).std())
    coarse = float((face - downscale(face, 8)).std())
    return fine / coarse if coarse > 1e-3 else 0.0


def face_px(box: tuple[float, ...] | list[float]) -> float:
    """A face's size in source pixels: the larger side of its box [x, y, w, h]."""
    return float(max(box[2], box[3]))


def unjudged_reason(
    size_px: float,
    sharp: float | None,
    min_px: float = MIN_FACE_PX,
    min_sharpness: float = MIN_SHARPNESS,
) -> str | None:
    """Why a face cannot be judged (``"too small: 31 px, under 40"``), or None if it can."""
    if size_px < min_px:
        return f"too small: {size_px:.0f} px, under {min_px:.0f}"
    if sharp is not None and sharp < min_sharpness:
        return f"too blurred: sharpness {sharp:.3f}, under {min_sharpness:.2f}"
    return None


IMAGE_RULES = ("max", "largest", "weighted")
"""How an image's judged faces make its score: ``max`` the most suspicious face; ``largest``
the largest face; ``weighted`` the mean log-odds weighted by face size times confidence."""


def check_judging(min_px: float, min_sharpness: float, image_rule: str) -> None:
    """Raise a one-line :class:`~mesonet.errors.MesonetError` for impossible settings."""
    from mesonet.errors import MesonetError

    if not (0.0 <= float(min_px) < 100_000):
        raise MesonetError(f"the smallest judged face must be 0 to 100000 px, not {min_px}")
    if not (0.0 <= float(min_sharpness) <= 1.0):
        raise MesonetError(f"the sharpness limit must be between 0 and 1, not {min_sharpness}")
    if image_rule not in IMAGE_RULES:
        raise MesonetError(
            f"image rule must be one of {', '.join(IMAGE_RULES)}, not {image_rule!r}"
        )


def file_reason(reasons: list[str], sizes: list[float], sharps: list[float | None]) -> str:
    """Why no face of a file could be judged, in words for the record."""
    if all(r.startswith("too small") for r in reasons):
        return f"faces too small to judge: the largest is {max(sizes):.0f} px"
    known = [s for s in sharps if s is not None]
    if all(r.startswith("too blurred") for r in reasons) and known:
        return f"faces too blurred to judge: the sharpest is {max(known):.3f}"
    return "no face large and sharp enough to judge"
