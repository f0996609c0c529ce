"""Scoring crops: the model's scorer (:mod:`mesonet.scoring`) fed with the crops of found
faces, all at once for a batch of images or ``batch_size`` at a time along a video.

>>> frames = score_all(finder.find(images), scorer)           # FrameFaces with scores
>>> frames = score_stream(finder.video(...), scorer, batch_size=64)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from mesonet.errors import MesonetError
from mesonet.judge import sharpness
from mesonet.pipeline.faces import FrameFaces

Scorer = Callable[[np.ndarray], np.ndarray]
"""uint8 RGB crops N x 256 x 256 x 3 -> N fake probabilities (a
:class:`~mesonet.scoring.ModelScorer`)."""


def unit_batch(crops: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 RGB crops (N x 256 x 256 x 3) -> float32 N x 3 x 256 x 256 in [0, 1] (numpy)."""
    return np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)


def to_batch(crops: Sequence[np.ndarray]) -> Any:
    """uint8 RGB crops (N x 256 x 256 x 3) -> float32 N x 3 x 256 x 256 in [0, 1], channels-last
    (a PyTorch tensor: the training side's and a module's input)."""
    import torch

    array = np.stack(crops)
    batch = torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255.0)
    return batch.contiguous(memory_format=torch.channels_last)


def score_crops(scorer: Scorer, crops: Sequence[np.ndarray]) -> np.ndarray:
    """Fake probabilities of uint8 RGB 256 x 256 crops (the scorer batches them)."""
    if len(crops) == 0:
        return np.zeros(0, dtype=np.float32)
    scores = scorer(np.stack(crops) if not isinstance(crops, np.ndarray) else crops)
    if not np.isfinite(scores).all():
        raise MesonetError(
            "the model gave a non-finite score (NaN or infinity): its weights are broken"
        )
    return scores


def score_all(
    found: Sequence[tuple[FrameFaces, list[np.ndarray]]], scorer: Scorer
) -> list[FrameFaces]:
    """Score the crops of every frame in one call; each frame gets its faces' scores."""
    crops = [crop for _, frame_crops in found for crop in frame_crops]
    scores = iter(score_crops(scorer, crops).tolist())
    for frame, frame_crops in found:
        frame.scores = [next(scores) for _ in frame.faces]
        frame.sharpness = [sharpness(crop) for crop in frame_crops]
    return [frame for frame, _ in found]


def score_stream(
    found: Iterable[tuple[FrameFaces, list[np.ndarray]]], scorer: Scorer, batch_size: int
) -> list[FrameFaces]:
    """Score frames as they come, ``batch_size`` crops (or a few more) at a time.

    Only one batch of crops is held at once, so a long video's frames need not be kept.
    """
    analysed: list[FrameFaces] = []
    crops: list[np.ndarray] = []
    unscored: list[FrameFaces] = []  # frames whose crops wait in `crops`

    def flush() -> None:
        scores = iter(score_crops(scorer, crops).tolist())
        for record in unscored:
            record.scores = [next(scores) for _ in record.faces]
        crops.clear()
        unscored.clear()

    for frame, frame_crops in found:
        crops.extend(frame_crops)
        frame.sharpness = [sharpness(crop) for crop in frame_crops]
        analysed.append(frame)
        unscored.append(frame)
        if len(crops) >= batch_size:
            flush()
    if crops or unscored:
        flush()
    return analysed
