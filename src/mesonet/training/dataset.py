"""Training data on disk: find the labelled images of a folder and split them.

Accepted layouts (class folders ``real/`` and ``fake/``; the authors' ``df/`` counts as fake):

- ``DATA/train/{real,fake}`` and ``DATA/validation/{real,fake}`` (or ``val/``): splits as given;
- ``DATA/{real,fake}``: one labelled folder, split by a seeded ``val_fraction``, keeping
  frames of one video (``<video>_<frame>.jpg``) on the same side;
- a ``.zip`` holding either layout (optionally inside one top folder), extracted safely
  (:mod:`mesonet.training.zipdata`). Label 1 means fake.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesonet.training.errors import DatasetError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
REAL_DIRS = ("real",)
FAKE_DIRS = ("fake", "df")
TRAIN_DIRS = ("train",)
VAL_DIRS = ("validation", "val")
_FRAME_SUFFIX = re.compile(r"^(.+)_\d+$")


@dataclass
class Sample:
    """One labelled image: ``label`` 1 = fake, 0 = real."""

    path: Path
    label: int


@dataclass
class DataSplit:
    """Training and validation samples, and how they were found (for the model card)."""

    train: list[Sample]
    val: list[Sample]
    layout: str  # "train/val folders" or "single folder split"
    root: Path
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """Counts per split and class, for logs and the model card."""

        def counts(samples: Sequence[Sample]) -> dict[str, int]:
            fake = sum(s.label for s in samples)
            return {"real": len(samples) - fake, "fake": fake, "total": len(samples)}

        return {
            "layout": self.layout,
            "train": counts(self.train),
            "val": counts(self.val),
            **self.details,
        }


# --------------------------------------------------------------------------- layout


def _child(folder: Path, names: Sequence[str]) -> list[Path]:
    """Subfolders of ``folder`` whose lower-cased name is in ``names``."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.lower() in names)


def _images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def _labelled(folder: Path, what: str, real_only: bool = False) -> list[Sample]:
    """Samples of a folder holding ``real/`` and ``fake/`` (or ``df/``); errors name the gap.
    ``real_only``: a folder with ``real/`` alone is accepted too."""
    real_dirs, fake_dirs = _child(folder, REAL_DIRS), _child(folder, FAKE_DIRS)
    if real_only and real_dirs and not fake_dirs:
        real = [Sample(p, 0) for d in real_dirs for p in _images(d)]
        if not real:
            raise DatasetError(f"{what} {folder} has no real images")
        return real
    missing = [n for n, d in (("real/", real_dirs), ("fake/ (or df/)", fake_dirs)) if not d]
    if missing:
        raise DatasetError(f"{what} {folder} has no {' or '.join(missing)} folder")
    real = [Sample(p, 0) for d in real_dirs for p in _images(d)]
    fake = [Sample(p, 1) for d in fake_dirs for p in _images(d)]
    for name, items in (("real", real), ("fake", fake)):
        if not items:
            raise DatasetError(
                f"{what} {folder} has no {name} images "
                f"({', '.join(sorted(IMAGE_SUFFIXES))} files under its {name} folder)"
            )
    return real + fake


def _is_labelled(folder: Path) -> bool:
    return bool(_child(folder, REAL_DIRS) or _child(folder, FAKE_DIRS))


def _is_split(folder: Path) -> bool:
    return bool(_child(folder, TRAIN_DIRS))


def _video_key(path: Path) -> str:
    """Frames named ``<video>_<frame>`` share a key so a split keeps them together."""
    match = _FRAME_SUFFIX.match(path.stem)
    return f"{path.parent}/{match.group(1) if match else path.stem}"


def split_by_group(samples: Sequence[Sample], val_fraction: float, seed: int) -> tuple[list, list]:
    """Seeded split keeping each video's frames on one side, about ``val_fraction`` held out
    per class (so both splits hold both classes whenever a class has two videos or more)."""
    train: list[Sample] = []
    val: list[Sample] = []
    rng = random.Random(seed)
    for label in (0, 1):
        groups: dict[str, list[Sample]] = {}
        for s in samples:
            if s.label == label:
                groups.setdefault(_video_key(s.path), []).append(s)
        keys = sorted(groups)
        rng.shuffle(keys)
        n_val = min(max(1, round(len(keys) * val_fraction)), len(keys) - 1) if keys else 0
        for i, key in enumerate(keys):
            (val if i < n_val else train).extend(groups[key])
    return train, val


def _locate(root: Path) -> Path:
    """The folder under ``root`` that holds the layout (a zip often wraps it in one top folder)."""
    if not root.exists():
        raise DatasetError(f"data not found: {root}")
    if not root.is_dir():
        raise DatasetError(f"{root}: expected a folder or a .zip of one")
    folder = root
    while not (_is_split(folder) or _is_labelled(folder)):
        subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))]
        if len(subdirs) != 1:
            raise DatasetError(
                f"{root}: no training data found: expected train/ and validation/ (or val/) "
                "folders, or real/ and fake/ folders"
            )
        folder = subdirs[0]
    return folder


def _val_dir(folder: Path) -> Path:
    val_dirs = _child(folder, VAL_DIRS)
    if not val_dirs:
        raise DatasetError(
            f"{folder} has train/ but no validation/ (or val/) folder; add one, or pass "
            "a single folder with real/ and fake/ to split it by val_fraction"
        )
    return val_dirs[0]


def find_dataset(root: str | Path, val_fraction: float = 0.1, seed: int = 0) -> DataSplit:
    """Labelled training and validation samples of an (already extracted) data folder.

    A single real/fake folder is split by ``val_fraction``; 0 puts all of it in training.
    With ``val_fraction`` 0 a folder of real faces alone (``real/``, no ``fake/``) is taken
    too: its faces train as real and, with ``synthetic = "sbi"``, become self-blended fakes.
    """
    folder = _locate(Path(root))
    if _is_split(folder):
        val_dir = _val_dir(folder)
        train = _labelled(_child(folder, TRAIN_DIRS)[0], "training folder")
        val = _labelled(val_dir, "validation folder")
        return DataSplit(train, val, "train/val folders", folder)
    samples = _labelled(folder, "data folder", real_only=val_fraction == 0)
    if val_fraction == 0:
        return DataSplit(samples, [], "single folder, all for training", folder)
    train, val = split_by_group(samples, val_fraction, seed)
    if not {s.label for s in train} == {s.label for s in val} == {0, 1}:
        raise DatasetError(
            f"{folder}: too few videos per class to hold out a validation split with both "
            "classes; add images or give train/ and validation/ folders"
        )
    details = {"val_fraction": val_fraction, "split_seed": seed, "grouped_by": "video name"}
    return DataSplit(train, val, "single folder split", folder, details)


def find_holdout(root: str | Path) -> list[Sample]:
    """Samples of a validation-only source: all of a real/fake folder, or the validation split
    of a train/val layout (its training split is never read)."""
    folder = _locate(Path(root))
    if _is_split(folder):
        return _labelled(_val_dir(folder), "validation folder")
    return _labelled(folder, "data folder")


def subsample(samples: Sequence[Sample], limit: int, seed: int) -> list[Sample]:
    """A seeded random subset of ``limit`` samples keeping the class proportions (0 = all)."""
    if not limit or limit >= len(samples):
        return list(samples)
    rng = random.Random(seed)
    out: list[Sample] = []
    for label in (0, 1):
        group = [s for s in samples if s.label == label]
        share = max(1, round(limit * len(group) / len(samples)))
        out.extend(rng.sample(group, min(share, len(group))))
    return out
