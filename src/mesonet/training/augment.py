"""Training augmentations (albumentations) on 256 x 256 RGB uint8 face crops.

``standard`` is the paper's recipe (zoom, rotation, horizontal flip, brightness/contrast and
hue changes) plus blur and JPEG re-compression last, as a video codec would, so the model
learns cues that survive compressed video rather than the dataset's own compression.
"""

from __future__ import annotations

import albumentations as A
import cv2

from mesonet.training.errors import TrainingError

STRENGTHS = ("none", "flip", "light", "standard", "strong")


def _geometric(scale: float, rotate: float, p: float) -> A.BasicTransform:
    return A.Affine(
        scale=(1.0 - scale, 1.0 + scale),
        rotate=(-rotate, rotate),
        translate_percent=(-0.05, 0.05),
        border_mode=cv2.BORDER_REFLECT_101,
        p=p,
    )


def build_augment(strength: str = "standard") -> A.Compose | None:
    """The augmentation pipeline for ``strength``, or None for ``none``.

    Strengths: ``flip`` (horizontal flip only), ``light`` (flip, small zoom/rotation and
    brightness), ``standard`` (paper-like zoom 0.8-1.2, rotation +-15 deg, colour, blur and
    JPEG quality 30-95), ``strong`` (the same, applied more often, plus noise).
    Call ``set_random_seed`` on the result for reproducible draws (see ``FaceDataset.reseed``).
    """
    if strength == "none":
        return None
    if strength == "flip":
        transforms: list[A.BasicTransform] = [A.HorizontalFlip(p=0.5)]
    elif strength == "light":
        transforms = [
            A.HorizontalFlip(p=0.5),
            _geometric(0.1, 10, p=0.5),
            A.RandomBrightnessContrast(0.1, 0.1, p=0.3),
        ]
    elif strength in ("standard", "strong"):
        strong = strength == "strong"
        transforms = [
            A.HorizontalFlip(p=0.5),
            _geometric(0.2, 15, p=0.8 if strong else 0.6),
            A.RandomBrightnessContrast(0.2, 0.2, p=0.6 if strong else 0.4),
            A.HueSaturationValue(10, 15, 10, p=0.4 if strong else 0.3),
            A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.2, 1.5), p=0.3 if strong else 0.2),
        ]
        if strong:
            transforms.append(A.GaussNoise(std_range=(0.01, 0.05), p=0.2))
        transforms.append(
            A.ImageCompression(quality_range=(30, 95), p=0.7 if strong else 0.5),
        )
    else:
        raise TrainingError(f"augment must be one of {', '.join(STRENGTHS)}, not {strength!r}")
    return A.Compose(transforms, seed=0)
