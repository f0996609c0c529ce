"""Face crops for the model: eye-levelled square crops, or the whole image resized.

The crop is a square of side ``margin * max(w, h)`` centred on the detector's box, so
some forehead, chin and cheeks (where face-swap blending seams live) are kept. MesoNet's
authors and DeepfakeBench both crop about 1.3x the detected box; our default matches.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from mesonet.faces.detector import Face

__all__ = [
    "DEFAULT_MARGIN",
    "align_face",
    "crop_matrix",
    "crop_whole",
    "eye_angle",
    "from_crop",
    "to_crop",
]

DEFAULT_MARGIN = 1.3
"""Crop side as a multiple of the box's longer side (authors / DeepfakeBench ~1.3)."""

_RESIZE = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}
_BORDERS = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}


def eye_angle(face: Face) -> float:
    """Roll of the face in degrees: the angle of the left-eye -> right-eye line.

    Positive when the right eye (image right) is lower, i.e. the head is tilted
    clockwise on screen. 0 when the face has no landmarks.
    """
    if len(face.landmarks) < 2:
        return 0.0
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def crop_matrix(
    face: Face, size: int = 256, margin: float = DEFAULT_MARGIN
) -> tuple[np.ndarray, int]:
    """The 2 x 3 affine warp :func:`align_face` applies to the source image, and the side it
    renders at (``size``, or an integer multiple later area-averaged down to ``size``).

    A source point ``(x, y)`` lands at ``matrix @ (x, y, 1) * size / render`` in the crop
    (:func:`to_crop`)."""
    x, y, w, h = face.box
    side = margin * max(w, h)
    if side <= 0:
        raise ValueError(f"face box has no area: {face.box}")
    cx, cy = face.center
    if len(face.landmarks) >= 2:
        (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
        pivot = ((lx + rx) / 2.0, (ly + ry) / 2.0)
    else:
        pivot = (cx, cy)
    shrink = side / size  # source pixels per output pixel
    render = size * math.ceil(shrink) if shrink > 1.5 else size
    matrix = cv2.getRotationMatrix2D(pivot, eye_angle(face), render / side)
    # Where the box centre lands after rotation+scale; move it to the crop centre.
    mapped = matrix @ np.array([cx, cy, 1.0])
    matrix[:, 2] += render / 2.0 - mapped
    return matrix, render


def to_crop(
    face: Face, points: np.ndarray, size: int = 256, margin: float = DEFAULT_MARGIN
) -> np.ndarray:
    """Source-pixel ``points`` (N x 2) in the pixels of ``face``'s :func:`align_face` crop."""
    matrix, render = crop_matrix(face, size, margin)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return (pts @ matrix[:, :2].T + matrix[:, 2]) * (size / render)


def from_crop(
    face: Face, points: np.ndarray, size: int = 256, margin: float = DEFAULT_MARGIN
) -> np.ndarray:
    """Crop-pixel ``points`` (N x 2) of ``face``'s :func:`align_face` crop in source pixels."""
    matrix, render = crop_matrix(face, size, margin)
    inverse = cv2.invertAffineTransform(matrix)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) * (render / size)
    return pts @ inverse[:, :2].T + inverse[:, 2]


def align_face(
    image: np.ndarray,
    face: Face,
    size: int = 256,
    margin: float = DEFAULT_MARGIN,
    border: str = "constant",
) -> np.ndarray:
    """Cut a ``size`` x ``size`` RGB crop of ``face`` with its eyes level.

    One affine warp rotates the image about the eye midpoint by :func:`eye_angle`,
    scales it and translates the box centre to the crop centre; the crop covers
    ``margin * max(w, h)`` source pixels. When that shrinks more than 1.5x, the warp
    renders at an integer multiple of ``size`` and is then area-averaged down, which
    avoids the aliasing of a bilinear warp. Parts of the crop outside the image are
    filled per ``border``: ``"constant"`` (black) or ``"replicate"`` (edge pixels).
    """
    if size <= 0 or margin <= 0:
        raise ValueError(f"size and margin must be positive, got {size} and {margin}")
    if border not in _BORDERS:
        raise ValueError(f"border must be one of {sorted(_BORDERS)}, got {border!r}")
    matrix, render = crop_matrix(face, size, margin)
    crop = cv2.warpAffine(
        image,
        matrix,
        (render, render),
        flags=cv2.INTER_LINEAR,
        borderMode=_BORDERS[border],
        borderValue=(0, 0, 0),
    )
    if render != size:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return crop


def crop_whole(image: np.ndarray, size: int = 256, resize: str = "auto") -> np.ndarray:
    """Resize the whole image to ``size`` x ``size`` (aspect not kept), for ``--faces none``.

    Meant for inputs that already are face crops (like the authors' datasets). ``resize`` is
    the model card's: ``"auto"`` (area-average when shrinking, bilinear when enlarging),
    ``"nearest"`` (Keras' ``load_img``, as the authors' models expect), ``"bilinear"`` or
    ``"area"``.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    h, w = image.shape[:2]
    if resize == "auto":
        resize = "area" if w > size or h > size else "bilinear"
    if resize not in _RESIZE:
        raise ValueError(f"resize must be one of auto, {', '.join(_RESIZE)}; got {resize!r}")
    return cv2.resize(image, (size, size), interpolation=_RESIZE[resize])
