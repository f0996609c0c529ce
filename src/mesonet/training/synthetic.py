"""Self-blended fakes: forged faces made from real ones, no forgery method needed.

After Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images" (CVPR 2022): a real
face is blended with a slightly altered copy of itself (colour, contrast, scale and position
jittered, sometimes blurred or sharpened) inside a soft face-shaped mask. The result carries the
traces every face swap leaves (a blending boundary, colour and resolution mismatches between the
inner face and its surroundings) without any one method's fingerprint, which is why training on
them transfers across datasets.

The mask comes from MTCNN's five landmarks when given, else from the face box; training crops
are cut around the face, so the box is the crop itself.
"""

from __future__ import annotations

import cv2
import numpy as np

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # as the paper: mostly full blends


def face_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    landmarks: np.ndarray | None = None,
) -> np.ndarray:
    """A soft float32 mask in [0, 1] of ``shape`` (H, W) over the face, randomly deformed.

    With ``landmarks`` (5 x 2 pixel coordinates: eyes, nose, mouth corners) the mask is an
    ellipse fitted around them and grown to cover the forehead and chin; without, an ellipse
    over the centre of the crop. Its edge is blurred by a random amount, as blending is.
    """
    h, w = shape
    if landmarks is not None:
        pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
        cx, cy = pts.mean(axis=0)
        span_x = max(np.ptp(pts[:, 0]), 1.0)
        span_y = max(np.ptp(pts[:, 1]), 1.0)
        cy += 0.1 * span_y  # the landmarks sit high in the face: centre towards the chin
        ax = span_x * rng.uniform(0.75, 1.0)
        ay = span_y * rng.uniform(1.1, 1.4)
    else:
        cx = w * (0.5 + rng.uniform(-0.03, 0.03))
        cy = h * (0.53 + rng.uniform(-0.03, 0.03))
        ax = w * rng.uniform(0.26, 0.36)
        ay = h * rng.uniform(0.32, 0.42)
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(
        mask,
        (round(cx), round(cy)),
        (max(1, round(ax)), max(1, round(ay))),
        float(rng.uniform(-12, 12)),
        0,
        360,
        1.0,
        -1,
    )
    # a random elastic-like deformation: shift rows and columns by smooth random offsets
    amp = 0.02 * min(h, w)
    dx = cv2.resize(rng.normal(0, amp, (4, 4)).astype(np.float32), (w, h))
    dy = cv2.resize(rng.normal(0, amp, (4, 4)).astype(np.float32), (w, h))
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mask = cv2.remap(mask, grid_x + dx, grid_y + dy, cv2.INTER_LINEAR, borderValue=0)
    k = 2 * int(rng.integers(min(h, w) // 40, min(h, w) // 10 + 1)) + 1
    mask = cv2.GaussianBlur(mask, (k, k), 0)
    return np.clip(mask / max(float(mask.max()), 1e-6), 0.0, 1.0)


def _jitter_source(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The altered copy: colour and contrast changes, a small rescale and shift, blur or sharpen."""
    h, w = image.shape[:2]
    src = image.astype(np.float32)
    src = src * rng.uniform(0.9, 1.1, size=3) + rng.uniform(-12, 12, size=3)  # per channel
    mean = src.mean()
    src = (src - mean) * rng.uniform(0.85, 1.15) + mean + rng.uniform(-10, 10)
    src = np.clip(src, 0, 255)
    hsv = cv2.cvtColor(src.astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + int(rng.integers(-5, 6))) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.85, 1.15), 0, 255)
    src = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    scale = rng.uniform(0.95, 1.05)
    shift = rng.uniform(-0.03, 0.03, size=2) * (w, h)
    matrix = np.array(
        [[scale, 0, (1 - scale) * w / 2 + shift[0]], [0, scale, (1 - scale) * h / 2 + shift[1]]],
        dtype=np.float32,
    )
    src = cv2.warpAffine(src, matrix, (w, h), borderMode=cv2.BORDER_REFLECT_101)
    kind = rng.integers(3)
    if kind == 1:  # a lower-resolution face, as a swap rendered small then pasted
        small = rng.uniform(0.4, 0.8)
        tiny = cv2.resize(src, (max(1, int(w * small)), max(1, int(h * small))), cv2.INTER_AREA)
        src = cv2.resize(tiny, (w, h), interpolation=cv2.INTER_LINEAR)
    elif kind == 2:  # sharpened
        blur = cv2.GaussianBlur(src, (0, 0), 1.0)
        src = cv2.addWeighted(src, 1.5, blur, -0.5, 0)
    return np.clip(src, 0, 255)


def self_blend(
    image: np.ndarray,
    rng: np.random.Generator,
    landmarks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A self-blended fake of the RGB uint8 ``image`` and the mask used: (fake, mask).

    The fake has the input's size and dtype; pixels where the mask is 0 are unchanged, so every
    change lies inside the mask. The same ``rng`` state gives the same fake.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image, got {image.dtype} {image.shape}")
    mask = face_mask(image.shape[:2], rng, landmarks)
    mask *= float(rng.choice(BLEND_RATIOS))
    source = _jitter_source(image, rng)
    m = mask[..., None]
    blended = source * m + image.astype(np.float32) * (1.0 - m)
    return np.rint(blended).clip(0, 255).astype(np.uint8), mask
