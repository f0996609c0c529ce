"""Training augmentations (albumentations) on 256 x 256 RGB uint8 face crops.

``standard`` is the paper's recipe (zoom, rotation, horizontal flip, brightness/contrast and
hue changes) plus blur and JPEG re-compression last, as a video codec would, so the model
learns cues that survive compressed video rather than the dataset's own compression.
"""

from __future__ import annotations

import albumentations as A
import cv2

from mesonet.training.errors import TrainingError

STRENGTHS = ("none", "flip", "light", "paper", "standard", "strong")


def _geometric(scale: float, rotate: float, p: float) -> A.BasicTransform:
    return A.Affine(
        scale=(1.0 - scale, 1.0 + scale),
        rotate=(-rotate, rotate),
        translate_percent=(-0.05, 0.05),
        border_mode=cv2.BORDER_REFLECT_101,
        p=p,
    )


def resample_step(low: float, high: float) -> A.BasicTransform:
    """Scale every crop down by a random factor in [low, high], then back up (always applied).

    Crops of a dataset often differ in how they were resampled by class (the MesoNet authors'
    real crops are mostly exactly 256 px, their fakes mostly resized): a model then learns
    "resized" rather than "forged". Putting every crop through one more random down-and-up
    scale, with the interpolation drawn at random too, buries those traces under the same
    ones for both classes. ``tools/resampling_check.py`` measures how well it works.
    """
    pairs = [
        {"downscale": down, "upscale": up}
        for down in (cv2.INTER_AREA, cv2.INTER_LINEAR)
        for up in (cv2.INTER_LINEAR, cv2.INTER_CUBIC)
    ]
    return A.OneOf(
        [A.Downscale(scale_range=(low, high), interpolation_pair=pair, p=1.0) for pair in pairs],
        p=1.0,
    )


def build_augment(
    strength: str = "standard", resample: tuple[float, float] | None = None
) -> A.Compose | None:
    """The augmentation pipeline for ``strength``, or None for ``none`` without ``resample``.

    ``resample`` = (low, high) puts :func:`resample_step` first, for every crop.

    Strengths: ``flip`` (horizontal flip only), ``light`` (flip, small zoom/rotation and
    brightness), ``paper`` (the paper's slight zoom, rotation, flip, brightness and hue),
    ``standard`` (paper-like zoom 0.8-1.2, rotation +-15 deg, colour, blur and
    JPEG quality 30-95), ``strong`` (the same, applied more often, plus noise).
    Call ``set_random_seed`` on the result for reproducible draws (see ``FaceDataset.reseed``).
    """
    first = [resample_step(*resample)] if resample else []
    if strength == "none":
        return A.Compose(first, seed=0) if first else None
    if strength == "flip":
        transforms: list[A.BasicTransform] = [A.HorizontalFlip(p=0.5)]
    elif strength == "light":
        transforms = [
            A.HorizontalFlip(p=0.5),
            _geometric(0.1, 10, p=0.5),
            A.RandomBrightnessContrast(0.1, 0.1, p=0.3),
        ]
    elif strength == "paper":  # the paper's list: zoom, rotation, flip, brightness, hue
        transforms = [
            A.HorizontalFlip(p=0.5),
            _geometric(0.1, 10, p=0.5),
            A.RandomBrightnessContrast(0.15, 0.0, p=0.3),
            A.HueSaturationValue(8, 0, 0, p=0.3),
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
    return A.Compose(first + transforms, seed=0)
