"""Temporal self-blended fakes: a real clip's frames each blended with an altered copy of
themselves, the alteration drifting and jittering from frame to frame.

A face swap renders the inner face frame by frame, and its colour match, scale and position
against the surrounding head are never quite stable: they wander and flicker through time.
:func:`temporal_self_blend` makes that artefact from real crops alone, after the image
version (:mod:`mesonet.training.synthetic`, Shiohara & Yamasaki, CVPR 2022) whose mask and
blend ratios it reuses: one set of alteration parameters is drawn for the window, then each
frame's parameters move from it along a random drift (a smooth path to a second draw) plus a
per-frame jitter, and so do the mask's position and size and the blend ratio. Every change
lies inside that frame's mask: pixels where it is 0 keep their values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import cv2
import numpy as np

from mesonet.training.synthetic import BLEND_RATIOS, face_mask


@dataclass(frozen=True)
class Alteration:
    """How the copy blended into one frame differs from the frame."""

    gain: tuple[float, float, float]  # per RGB channel
    bias: tuple[float, float, float]
    contrast: float
    hue: float  # OpenCV hue units (0-180)
    saturation: float
    scale: float
    shift: tuple[float, float]  # fraction of the crop's side
    mask_shift: tuple[float, float]  # the mask's move, fraction of the side
    mask_scale: float
    ratio: float  # blend ratio: the mask's peak opacity

    def vector(self) -> np.ndarray:
        return np.hstack([np.ravel(getattr(self, f.name)) for f in fields(self)])

    @classmethod
    def from_vector(cls, v: np.ndarray) -> Alteration:
        v = [float(x) for x in v]
        return cls(
            tuple(v[0:3]), tuple(v[3:6]), v[6], v[7], v[8], v[9], tuple(v[10:12]),
            tuple(v[12:14]), v[14], min(1.0, max(0.05, v[15])),
        )  # fmt: skip


def _draw(rng: np.random.Generator, ratio: float) -> np.ndarray:
    """One alteration's parameters, as the image version draws them."""
    return Alteration(
        gain=tuple(rng.uniform(0.9, 1.1, 3)),
        bias=tuple(rng.uniform(-12, 12, 3)),
        contrast=rng.uniform(0.85, 1.15),
        hue=rng.uniform(-5, 5),
        saturation=rng.uniform(0.85, 1.15),
        scale=rng.uniform(0.95, 1.05),
        shift=tuple(rng.uniform(-0.03, 0.03, 2)),
        mask_shift=(0.0, 0.0),
        mask_scale=1.0,
        ratio=ratio,
    ).vector()


JITTER = Alteration(
    gain=(0.02, 0.02, 0.02),
    bias=(3.0, 3.0, 3.0),
    contrast=0.02,
    hue=1.0,
    saturation=0.03,
    scale=0.008,
    shift=(0.006, 0.006),
    mask_shift=(0.008, 0.008),
    mask_scale=0.015,
    ratio=0.05,
).vector()
"""Standard deviation of each parameter's frame-to-frame jitter."""


def alterations(n: int, rng: np.random.Generator) -> list[Alteration]:
    """``n`` frames' alterations: a start and an end drawn as the image version would, the
    path between them eased in and out (the drift), plus independent per-frame noise (the
    jitter) scaled by a random strength, so some windows mostly drift, some mostly flicker."""
    ratio = float(rng.choice(BLEND_RATIOS))
    start, end = _draw(rng, ratio), _draw(rng, ratio)
    end[14] = rng.uniform(0.96, 1.04)  # the mask grows or shrinks over the window
    end[12:14] = rng.uniform(-0.02, 0.02, 2)  # ... and wanders
    drift = rng.uniform(0.3, 1.0)
    flicker = rng.uniform(0.3, 1.5)
    t = np.linspace(0.0, 1.0, n)
    path = (1 - np.cos(np.pi * t)) / 2 * drift  # eased, part of the way to the end draw
    out = []
    for k in range(n):
        v = start + (end - start) * path[k] + rng.normal(0.0, 1.0, JITTER.size) * JITTER * flicker
        out.append(Alteration.from_vector(v))
    return out


def _altered_copy(image: np.ndarray, a: Alteration, detail: int, small: float) -> np.ndarray:
    h, w = image.shape[:2]
    src = image.astype(np.float32) * np.asarray(a.gain) + np.asarray(a.bias)
    mean = src.mean()
    src = np.clip((src - mean) * a.contrast + mean, 0, 255)
    hsv = cv2.cvtColor(src.astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + a.hue) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * a.saturation, 0, 255)
    src = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    matrix = np.array(
        [
            [a.scale, 0, (1 - a.scale) * w / 2 + a.shift[0] * w],
            [0, a.scale, (1 - a.scale) * h / 2 + a.shift[1] * h],
        ],
        dtype=np.float32,
    )
    src = cv2.warpAffine(src, matrix, (w, h), borderMode=cv2.BORDER_REFLECT_101)
    if detail == 1:  # rendered small, then pasted: as a swap model's output size
        tiny = cv2.resize(src, (max(1, int(w * small)), max(1, int(h * small))), cv2.INTER_AREA)
        src = cv2.resize(tiny, (w, h), interpolation=cv2.INTER_LINEAR)
    elif detail == 2:  # sharpened
        src = cv2.addWeighted(src, 1.5, cv2.GaussianBlur(src, (0, 0), 1.0), -0.5, 0)
    return np.clip(src, 0, 255)


def _moved_mask(mask: np.ndarray, a: Alteration) -> np.ndarray:
    h, w = mask.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, a.mask_scale)
    matrix[:, 2] += (a.mask_shift[0] * w, a.mask_shift[1] * h)
    moved = cv2.warpAffine(mask, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    return np.clip(moved, 0.0, 1.0) * a.ratio


def temporal_self_blend(
    frames: Sequence[np.ndarray], rng: np.random.Generator
) -> tuple[list[np.ndarray], list[np.ndarray], list[Alteration]]:
    """A temporal self-blended fake of a window of RGB uint8 crops of one face.

    Returns the blended frames, each frame's mask (float32 in [0, 1], its blend opacity) and
    each frame's :class:`Alteration`. One mask shape (:func:`face_mask`) and one level of
    detail (as rendered, smaller, or sharpened) hold for the window; the alteration, the
    mask's position and size and the blend ratio drift and jitter from frame to frame.
    The same ``rng`` state gives the same fake.
    """
    if not frames:
        return [], [], []
    for frame in frames:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected RGB uint8 frames, got {frame.dtype} {frame.shape}")
    base = face_mask(frames[0].shape[:2], rng)
    detail = int(rng.integers(3))
    small = float(rng.uniform(0.4, 0.8))
    steps = alterations(len(frames), rng)
    fakes, masks = [], []
    for frame, a in zip(frames, steps, strict=True):
        mask = _moved_mask(base, a)
        m = mask[..., None]
        blended = _altered_copy(frame, a, detail, small) * m + frame.astype(np.float32) * (1 - m)
        fake = np.rint(blended).clip(0, 255).astype(np.uint8)
        fake[mask <= 0] = frame[mask <= 0]  # exactly unchanged outside the mask
        fakes.append(fake)
        masks.append(mask)
    return fakes, masks, steps
