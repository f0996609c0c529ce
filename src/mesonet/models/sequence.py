"""The input description of a video model: a card's ``sequence`` object.

An image model's card has ``sequence`` empty; a video model's card says what it takes:
``frames`` crops of one face track, in order, ``frame_step`` source frames apart (1: every
frame, as it was trained), each crop resized and normalised as the card's ``input_size``,
``mean`` and ``std`` say. A temporal head over a frozen frame model also names that model
(``frame_model``: its name, architecture and the sha256 of its tensors, which are stored
inside the video model's file under ``frame.``).

Kept apart from :mod:`mesonet.models.card` (which calls :func:`check_sequence`) so the rules
sit with the architectures they describe, without an import cycle.
"""

from __future__ import annotations

import re
from typing import Any

VIDEO_ARCHS = ("meso4video", "temporal_conv")
"""Architectures whose input is a sequence of crops (see :mod:`mesonet.models.video_models`)."""
HEAD_ARCHS = ("temporal_conv",)
"""Video architectures that sit on a frozen frame model (and so name it in their card)."""
FRAME_ARCHS = ("meso4", "meso4w", "mesoinception4", "efficientnet_lite0")
"""Image architectures a temporal head may sit on."""
MIN_FRAMES, MAX_FRAMES = 2, 256
MAX_FRAME_STEP = 300
SEQUENCE_KEYS = ("frames", "frame_step", "frame_model")
FRAME_MODEL_KEYS = ("name", "arch", "sha256")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _int_in(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def check_sequence(sequence: Any, arch: str) -> None:
    """Raise ``ValueError`` unless ``sequence`` describes the input of ``arch``: empty for an
    image model; for a video model ``frames`` (2 to 256), ``frame_step`` (1 to 300, default
    1) and, for a temporal head and only for it, ``frame_model``. Unknown keys are refused
    (a misspelt key would silently change what the model is fed)."""
    if not isinstance(sequence, dict):
        raise ValueError(f"sequence must be an object, not {type(sequence).__name__}")
    if arch not in VIDEO_ARCHS:
        if sequence:
            raise ValueError(f"sequence describes a video model's input; {arch!r} takes images")
        return
    if not sequence:
        raise ValueError(f"{arch} is a video model: its card needs a sequence (frames)")
    unknown = sorted(set(sequence) - set(SEQUENCE_KEYS))
    if unknown:
        raise ValueError(f"sequence has unknown keys: {', '.join(map(str, unknown))}")
    if not _int_in(sequence.get("frames"), MIN_FRAMES, MAX_FRAMES):
        raise ValueError(
            f"sequence.frames must be an integer from {MIN_FRAMES} to {MAX_FRAMES}, "
            f"not {sequence.get('frames')!r}"[:200]
        )
    if not _int_in(sequence.get("frame_step", 1), 1, MAX_FRAME_STEP):
        raise ValueError(
            f"sequence.frame_step must be an integer from 1 to {MAX_FRAME_STEP}, "
            f"not {sequence.get('frame_step')!r}"[:200]
        )
    frame_model = sequence.get("frame_model")
    if arch not in HEAD_ARCHS:
        if frame_model is not None:
            raise ValueError(f"{arch} sees pixels: its card names no frame_model")
        return
    if not isinstance(frame_model, dict):
        raise ValueError(f"{arch} sits on a frame model: sequence.frame_model must name it")
    unknown = sorted(set(frame_model) - set(FRAME_MODEL_KEYS))
    if unknown or any(not isinstance(frame_model.get(k), str) for k in FRAME_MODEL_KEYS):
        raise ValueError('sequence.frame_model must be {"name": ..., "arch": ..., "sha256": ...}')
    if not frame_model["name"].strip():
        raise ValueError("sequence.frame_model.name is empty")
    if frame_model["arch"] not in FRAME_ARCHS:
        raise ValueError(
            f"sequence.frame_model.arch must be one of {', '.join(FRAME_ARCHS)}, "
            f"not {frame_model['arch']!r}"[:200]
        )
    if not _SHA256.fullmatch(frame_model["sha256"]):
        raise ValueError("sequence.frame_model.sha256 must be 64 lowercase hex digits")


def sequence_frames(card: Any) -> int:
    """How many frames a model's card says it takes (0: an image model)."""
    sequence = getattr(card, "sequence", None) or {}
    return int(sequence.get("frames", 0))


def is_video_card(card: Any) -> bool:
    return getattr(card, "arch", None) in VIDEO_ARCHS
