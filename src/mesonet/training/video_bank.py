"""What a video model trains on, made once per run: each clip's frames as the model sees them.

A video model's training windows are slices of whole clips (24 of a clip's 32 frames), so
each clip is prepared once per *variant* and the windows are cut from it:

- ``clip``: the cached crops as they are;
- ``aug``: the whole clip through one :func:`~mesonet.training.clips.augment_window` draw
  (so every window cut from it shares that augmentation, H.264 included);
- ``sbi``: a real clip made fake by :func:`~mesonet.training.temporal_sbi.temporal_self_blend`,
  then augmented (the codec comes after the forgery, as in a real fake video).

For a temporal head the frozen frame model runs once per frame of each variant and the bank
keeps its embeddings and logits (a few hundred KB per clip); for ``meso4video`` it keeps the
crops at the model's input size. Every draw is seeded by (seed, clip, variant), so a bank is
the same whatever the order of the clips, and it is saved in the run folder for resumes,
with ``<bank>.json`` beside it: the digest of what it was made from (the model's input and
frame model, the clips, the draws) and the sha256 of its bytes, both checked when it is read
(a bank made from other inputs, or damaged, is made again).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from mesonet.destinations import replacing, write_output
from mesonet.models.video_models import TemporalConv, VideoNet
from mesonet.pipeline.score import to_batch
from mesonet.training.clips import Clip, augment_window
from mesonet.training.temporal_sbi import temporal_self_blend
from mesonet.training.videos import file_sha256

BANK_FORMAT = 2
EMBED_BATCH = 32


@dataclass
class Entry:
    """One variant of one clip: its per-frame items (embeddings and logit, or pixels)."""

    clip: str
    kind: str  # "clip", "aug" or "sbi"
    label: int  # 1 = fake (a fake clip, or a self-blended real one)
    indices: tuple[int, ...]
    items: torch.Tensor  # T x (D + 1) float32 (embedding, frame logit) or T x 3 x s x s uint8

    def to_dict(self) -> dict:
        return {
            "clip": self.clip,
            "kind": self.kind,
            "label": self.label,
            "indices": list(self.indices),
            "items": self.items,
        }


def featurizer(model: VideoNet) -> Callable[[Sequence[np.ndarray]], torch.Tensor]:
    """Per-frame items of a list of RGB uint8 256 px crops, as ``model`` is trained on them."""
    if isinstance(model, TemporalConv):

        @torch.no_grad()
        def embed(frames: Sequence[np.ndarray]) -> torch.Tensor:
            parts = []
            for i in range(0, len(frames), EMBED_BATCH):
                batch = to_batch(frames[i : i + EMBED_BATCH]).contiguous()
                embeddings, logits = model.embed(batch)
                parts.append(torch.cat([embeddings, logits.unsqueeze(1)], dim=1).float())
            return torch.cat(parts)

        return embed
    size = model.preprocess.size

    def pixels(frames: Sequence[np.ndarray]) -> torch.Tensor:
        small = [
            cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) if f.shape[0] != size else f
            for f in frames
        ]
        return torch.from_numpy(np.stack(small)).permute(0, 3, 1, 2).contiguous()

    return pixels


def variants_of(
    clip: Clip, augmented: int, blended: int, seed: int
) -> list[tuple[str, int, list[np.ndarray]]]:
    """(kind, label, frames) of ``clip``: as cached, ``augmented`` augmented copies and, for
    a real clip, ``blended`` temporal self-blends."""
    frames = clip.load()
    out = [("clip", clip.label, frames)]
    key = zlib.crc32(clip.key.encode())
    for v in range(augmented):
        rng = np.random.default_rng([seed, key, 1, v])
        out.append(("aug", clip.label, augment_window(frames, rng)))
    for v in range(blended if clip.label == 0 else 0):
        rng = np.random.default_rng([seed, key, 2, v])
        fakes, _, _ = temporal_self_blend(frames, rng)
        out.append(("sbi", 1, augment_window(fakes, rng)))
    return out


def build_bank(
    clips: Sequence[Clip],
    model: VideoNet,
    augmented: int,
    blended: int,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[Entry]:
    """Every variant of every clip, featurised for ``model`` (see the module docstring)."""
    featurize = featurizer(model)
    entries = []
    for done, clip in enumerate(clips, 1):
        for kind, label, frames in variants_of(clip, augmented, blended, seed):
            entries.append(Entry(clip.key, kind, label, clip.indices, featurize(frames)))
        if progress is not None:
            progress(done, len(clips))
    return entries


def bank_key(model: VideoNet, clips: Sequence[Clip], augmented: int, blended: int, seed: int):
    """What a saved bank must match to be reused: the model's input, the clips, the draws."""
    frame = getattr(model, "frame", None)
    from mesonet.models.card import tensors_sha256

    return {
        "format": BANK_FORMAT,
        "arch": model.arch,
        "input": model.preprocess.size,
        "frame": tensors_sha256(frame.state_dict()) if frame is not None else "",
        "clips": [c.key for c in clips],
        "augmented": augmented,
        "blended": blended,
        "seed": seed,
    }


def digest_path(path: Path) -> Path:
    """Where the bank ``path``'s digests are kept: ``<name>.json`` beside it."""
    return path.with_name(path.stem + ".json")


def _saved_bank(path: Path, key: dict, warn: Callable[[str], None]) -> list[Entry] | None:
    """The entries of the bank at ``path`` when it was made from ``key`` and is intact (its
    bytes match the sha256 stored beside it); None (a warning when damaged) otherwise."""
    if not path.is_file():
        return None
    try:
        stored = json.loads(digest_path(path).read_text(encoding="utf-8"))
        made_from, sha = stored["key"], stored["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        warn(f"warning: {path} has no digest beside it: made again")
        return None
    if made_from != key_digest(key):
        return None  # made for other clips, settings or another frame model
    try:
        if file_sha256(path) != sha:
            warn(f"warning: {path} does not match its digest (damaged): made again")
            return None
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return [Entry(**{**e, "indices": tuple(e["indices"])}) for e in saved["entries"]]
    except Exception as exc:  # a file that matches its digest yet does not load: remade too
        warn(f"warning: {path} cannot be read ({type(exc).__name__}): made again")
        return None


def key_digest(key: dict) -> str:
    """The sha256 of everything a bank is made from (:func:`bank_key`)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def cached_bank(
    path: Path,
    clips: Sequence[Clip],
    model: VideoNet,
    augmented: int,
    blended: int,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] = print,
) -> list[Entry]:
    """:func:`build_bank`, saved to ``path`` and read back while it was made from the same
    inputs (the digest of :func:`bank_key`) and its bytes match their sha256; both digests
    are kept beside it (:func:`digest_path`), so a damaged bank is made again."""
    key = bank_key(model, clips, augmented, blended, seed)
    entries = _saved_bank(path, key, warn)
    if entries is not None:
        return entries
    entries = build_bank(clips, model, augmented, blended, seed, progress)
    with replacing(path, "clip bank", durable=False) as handle:
        torch.save({"key": key, "entries": [e.to_dict() for e in entries]}, handle)
    stored = {"format": BANK_FORMAT, "key": key_digest(key), "sha256": file_sha256(path)}
    write_output(digest_path(path), json.dumps(stored), "clip bank digest", durable=False)
    return entries
