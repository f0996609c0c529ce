"""Training augmentations (albumentations) on 256 x 256 RGB uint8 face crops.

``standard`` is the paper's recipe (zoom, rotation, horizontal flip, brightness/contrast and
hue changes) plus blur and JPEG re-compression last, as a video codec would, so the model
learns cues that survive compressed video rather than the dataset's own compression.
``video`` applies a compression step more often (70%), and half of those times it is a real
H.264 encode and decode of the face at the size it has in a video frame
(:class:`VideoCompression`): the artefacts of heavily compressed video (FaceForensics++ c40),
which none of the training crops carry.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np

from mesonet import degradations as D
from mesonet.training.errors import TrainingError

STRENGTHS = ("none", "flip", "light", "paper", "standard", "video", "strong", "wild")


def _geometric(scale: float, rotate: float, p: float) -> A.BasicTransform:
    return A.Affine(
        scale=(1.0 - scale, 1.0 + scale),
        rotate=(-rotate, rotate),
        translate_percent=(-0.05, 0.05),
        border_mode=cv2.BORDER_REFLECT_101,
        p=p,
    )


class VideoCompression(A.ImageOnlyTransform):
    """The face as a video codec leaves it: scaled to the size it has in a frame, encoded
    as H.264 (libx264, 4:2:0 chroma, a constant quantiser drawn from ``qp_range``), decoded
    and scaled back. FaceForensics++ c40 is H.264 at quantisation parameter 40 (c23: 23),
    hence ``qp_range``; a face in a frame is often smaller than the 256 px crop it is then
    scaled to, hence ``scale_range``.
    """

    def __init__(
        self,
        qp_range: tuple[int, int] = (23, 45),
        scale_range: tuple[float, float] = (0.35, 1.0),
        p: float = 0.5,
    ):
        super().__init__(p=p)
        self.qp_range = qp_range
        self.scale_range = scale_range

    def get_params(self) -> dict[str, Any]:
        return {
            "qp": self.py_random.randint(*self.qp_range),
            "scale": self.py_random.uniform(*self.scale_range),
        }

    def apply(self, img: np.ndarray, qp: int, scale: float, **params: Any) -> np.ndarray:
        return h264_roundtrip(img, qp, scale)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("qp_range", "scale_range")


def h264_roundtrip(image: np.ndarray, qp: int, scale: float = 1.0) -> np.ndarray:
    """``image`` (H x W x 3 uint8 RGB) after an H.264 encode and decode at quantiser ``qp``,
    done at ``scale`` times its size (even sides, as 4:2:0 needs) and scaled back
    (:func:`mesonet.degradations.codec_roundtrip`, which ``wild`` uses for every codec)."""
    return D.codec_roundtrip(image, "h264", qp, scale)


class WildQuality(A.ImageOnlyTransform):
    """Every degradation of the robustness benchmark (:mod:`mesonet.degradations`) at random
    strengths, in the order a real image meets them: the face shrunk to ``side_range`` px and
    restored (40%), blur of sigma up to 3 (25%), sensor noise up to sigma 10 (20%), gamma or
    contrast (20%), then a compression (70%): JPEG, WebP, or one frame of H.264, MPEG-4 Part 2
    or VP9 at a low bitrate on the face at 35-100% of its size. Applied to real and forged
    faces alike, so that image quality never tells them apart.
    """

    def __init__(self, side_range: tuple[int, int] = (32, 128), p: float = 0.8):
        super().__init__(p=p)
        self.side_range = side_range

    def get_params(self) -> dict[str, Any]:
        r = self.py_random
        steps: list[tuple[str, float]] = []
        if r.random() < 0.4:
            steps.append(("down", r.randint(*self.side_range)))
        if r.random() < 0.25:
            steps.append(("blur", r.uniform(0.5, 3.0)))
        if r.random() < 0.2:
            steps.append(("noise", r.uniform(2.0, 10.0)))
        if r.random() < 0.2:
            kind = r.choice(("gamma", "contrast"))
            steps.append((kind, r.uniform(0.6, 1.6) if kind == "gamma" else r.uniform(0.5, 1.3)))
        if r.random() < 0.7:
            kind = r.choice(("jpeg", "webp", "h264", "mpeg4", "vp9"))
            quality = {
                "jpeg": r.randint(25, 90),
                "webp": r.randint(20, 80),
                "h264": r.randint(26, 45),
                "mpeg4": r.randint(8, 31),
                "vp9": r.randint(35, 63),
            }[kind]
            steps.append((kind, quality))
            steps.append(("scale", r.uniform(0.35, 1.0)))
        return {"steps": steps, "noise_seed": r.randint(0, 2**31 - 1)}

    def apply(self, img: np.ndarray, steps: list, noise_seed: int, **params: Any) -> np.ndarray:
        scale = dict(steps).get("scale", 1.0)
        for kind, value in steps:
            if kind == "down":
                img = D.downscale(img, int(value))
            elif kind == "blur":
                img = D.blur(img, value)
            elif kind == "noise":
                img = D.noise(img, value, np.random.default_rng(noise_seed))
            elif kind == "gamma":
                img = D.gamma(img, value)
            elif kind == "contrast":
                img = D.contrast(img, value)
            elif kind == "jpeg":
                img = D.jpeg(img, int(value))
            elif kind == "webp":
                img = D.webp(img, int(value))
            elif kind in D.CODECS:
                img = D.codec_roundtrip(img, kind, int(value), scale)
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("side_range",)


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
    JPEG quality 30-95), ``video`` (``standard`` whose compression step, applied 70% of
    the time, is with equal odds that JPEG or H.264 at quantiser 23-45 on the face scaled to
    35-100%),
    ``strong`` (``standard`` applied more often, plus noise),
    ``wild`` (flip, zoom, rotation, colour, then :class:`WildQuality`: every degradation of the
    robustness benchmark at random strengths, 80% of the time).
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
    elif strength == "wild":
        transforms = [
            A.HorizontalFlip(p=0.5),
            _geometric(0.2, 15, p=0.6),
            A.RandomBrightnessContrast(0.2, 0.2, p=0.4),
            A.HueSaturationValue(10, 15, 10, p=0.3),
            WildQuality(),
        ]
    elif strength in ("standard", "video", "strong"):
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
        if strength == "video":  # JPEG or H.264, with equal odds
            jpeg_or_h264 = [A.ImageCompression(quality_range=(30, 95)), VideoCompression()]
            transforms.append(A.OneOf(jpeg_or_h264, p=0.7))
        else:
            transforms.append(A.ImageCompression(quality_range=(30, 95), p=0.7 if strong else 0.5))
    else:
        raise TrainingError(f"augment must be one of {', '.join(STRENGTHS)}, not {strength!r}")
    return A.Compose(first + transforms, seed=0)
