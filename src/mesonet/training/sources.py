"""Several training sources, each with a weight; held-out sources for validation only.

A run trains on one or more labelled datasets (each found like a single one: train/ + val/,
or real/ + fake/ split by ``val_fraction``, or a zip) and validates on each source's own
validation split plus any held-out source (a labelled folder used whole, never trained on).

An epoch draws ``epoch_size`` training images from the sources in proportion to their weights,
not their sizes: a 6,800-image source with weight 1 and a 16,000-image source with weight 1
give the same number of draws. Within a source, images come in a seeded random order without
replacement, starting a new permutation when one runs out. Self-blended fakes (``synthetic``)
take a share of the epoch, made from the sources' real images in the same proportions.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mesonet.models.calibration import finite_number
from mesonet.models.card import check_name, shown
from mesonet.training.config import read_toml
from mesonet.training.errors import TrainingError


@dataclass(frozen=True)
class SourceSpec:
    """One dataset of a run.

    ``weight``: its share of each epoch's draws (relative to the other training sources).
    ``holdout``: validation only (all its images), never trained on.
    ``val_fraction``: for a single real/fake folder, the share held out for validation;
    0 trains on all of it (then it has no validation rows of its own). None: the run's value.
    ``max_val``: validate on a seeded subset of this many of its images (0 = all).
    """

    path: str
    weight: float = 1.0
    holdout: bool = False
    name: str = ""
    val_fraction: float | None = None
    max_val: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.path, str) and self.path.strip()):
            raise TrainingError("a source needs a path")
        if not finite_number(self.weight):
            raise TrainingError(f"source {self.path}: weight must be a finite number")
        if self.name:  # "" is the default: the folder's name
            try:
                check_name(self.name, "its name")
            except ValueError as exc:
                raise TrainingError(f"source {self.path}: {exc}") from None
        if self.weight <= 0 and not self.holdout:
            raise TrainingError(f"source {self.path}: weight must be positive, not {self.weight}")
        if self.val_fraction is not None and not 0.0 <= self.val_fraction < 1.0:
            raise TrainingError(
                f"source {self.path}: val_fraction must be in [0, 1), not {self.val_fraction}"
            )
        if not 0 <= self.max_val < 2**63:
            raise TrainingError(f"source {self.path}: max_val must be 0 or more (64-bit)")

    @property
    def label(self) -> str:
        """The name rows and plots use: ``name``, else the folder (or zip) name."""
        return self.name or Path(self.path).stem or str(self.path)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SOURCE_KEYS = {"path", "weight", "holdout", "name", "val_fraction", "max_val"}


def source_from_mapping(values: Mapping[str, Any], where: str = "") -> SourceSpec:
    """A :class:`SourceSpec` from a TOML table or a checkpoint's dict; errors name the key."""
    prefix = f"{where}: " if where else ""
    unknown = sorted(set(values) - _SOURCE_KEYS)
    if unknown:
        raise TrainingError(
            f"{prefix}unknown source key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(_SOURCE_KEYS))}"
        )
    if "path" not in values:
        raise TrainingError(f"{prefix}every [[sources]] entry needs a path")
    kinds = {
        "path": (str,),
        "weight": (int, float),
        "holdout": (bool,),
        "name": (str,),
        "val_fraction": (int, float, type(None)),
        "max_val": (int,),
    }
    for key, value in values.items():
        bad_bool = isinstance(value, bool) and key not in ("holdout",)
        if not isinstance(value, kinds[key]) or bad_bool:
            raise TrainingError(f"{prefix}source {key} has the wrong type: {shown(value)}")
    data = dict(values)
    if data["path"].startswith("~"):  # a data folder kept in the user's home (~/.cache/...)
        data["path"] = os.path.expanduser(data["path"])
    for key in ("weight", "val_fraction"):
        if data.get(key) is not None:
            if not finite_number(data[key]):  # float() would overflow, or NaN pass
                raise TrainingError(f"{prefix}source {key} must be a finite number")
            data[key] = float(data[key])
    try:
        return SourceSpec(**data)
    except TrainingError as exc:
        raise TrainingError(f"{prefix}{exc}") from None


def load_sources(path: str | Path) -> list[SourceSpec]:
    """The ``[[sources]]`` tables of a TOML file (an empty list when it has none).

    Relative paths are taken from the working directory, as on the command line.
    """
    tables = read_toml(path).get("sources", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise TrainingError(f"{path}: sources must be [[sources]] tables")
    return [source_from_mapping(t, f"{path} source {i + 1}") for i, t in enumerate(tables)]


def check_sources(sources: Sequence[SourceSpec]) -> None:
    """At least one training source, and names that tell the sources apart."""
    if not any(not s.holdout for s in sources):
        held = ", ".join(s.label for s in sources[:5]) + (", ..." if len(sources) > 5 else "")
        raise TrainingError(
            f"no training source: every source is a holdout ({held}), used for validation "
            "only; give DATA, or a [[sources]] entry without holdout = true"
        )
    labels = [s.label for s in sources]
    dupes = sorted({n for n in labels if labels.count(n) > 1})
    if dupes:
        raise TrainingError(f"two sources are named {', '.join(dupes)}: give them distinct `name`s")


def allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` draws in proportion to ``weights`` (largest remainders; exact sum)."""
    if total <= 0 or not weights:
        return [0] * len(weights)
    w = np.asarray(weights, dtype=np.float64)
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - int(counts.sum())]] += 1
    return counts.tolist()


class SourceSampler(torch.utils.data.Sampler[int]):
    """Indices for one epoch drawn from index ranges by weight, shuffled together.

    ``pools``: per training source, the dataset indices of its images (``reals``: of its real
    images, for synthetic draws). Synthetic draws are yielded as ``index + offset``, which
    :class:`~mesonet.training.batches.FaceDataset` turns into a self-blended fake of image
    ``index``. With ``balance_classes``, each source's draws are split evenly between its real
    and fake images (``fakes`` then lists its fake images).
    """

    def __init__(
        self,
        pools: Sequence[Sequence[int]],
        weights: Sequence[float],
        epoch_size: int,
        seed: int,
        *,
        reals: Sequence[Sequence[int]] | None = None,
        fakes: Sequence[Sequence[int]] | None = None,
        synthetic_share: float = 0.0,
        offset: int = 0,
        balance_classes: bool = False,
    ) -> None:
        self.pools = [list(p) for p in pools]
        self.weights = list(weights)
        self.epoch_size = epoch_size
        self.seed = seed
        self.reals = [list(r) for r in reals] if reals is not None else None
        self.fakes = [list(f) for f in fakes] if fakes is not None else None
        self.synthetic_share = synthetic_share if self.reals is not None else 0.0
        self.offset = offset
        self.balance_classes = balance_classes and self.reals is not None and self.fakes is not None
        self._indices = self._draw()

    @property
    def synthetic_count(self) -> int:
        return round(self.epoch_size * self.synthetic_share)

    def counts(self) -> list[int]:
        """Real-image draws per source this epoch (synthetic draws not included)."""
        return allocate(self.epoch_size - self.synthetic_count, self.weights)

    @staticmethod
    def _take(pool: Sequence[int], n: int, rng: random.Random) -> list[int]:
        """``n`` items of ``pool``: whole seeded permutations, then part of one more."""
        out: list[int] = []
        while len(out) < n and pool:
            perm = list(pool)
            rng.shuffle(perm)
            out.extend(perm[: n - len(out)])
        return out

    def _draw(self) -> list[int]:
        rng = random.Random(self.seed)
        indices: list[int] = []
        for i, n in enumerate(self.counts()):
            if self.balance_classes:
                assert self.reals is not None and self.fakes is not None
                half = n // 2
                indices += self._take(self.reals[i], n - half, rng)
                indices += self._take(self.fakes[i], half, rng)
            else:
                indices += self._take(self.pools[i], n, rng)
        if self.synthetic_count and self.reals is not None:
            for i, n in enumerate(allocate(self.synthetic_count, self.weights)):
                indices += [j + self.offset for j in self._take(self.reals[i], n, rng)]
        rng.shuffle(indices)
        return indices

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices)

    def __len__(self) -> int:
        return len(self._indices)
