"""A run's data: its sources found (folders, zips safely extracted, video folders), split,
subsampled, and turned into one training pool and one validation set."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mesonet.training.augment import build_augment
from mesonet.training.batches import FaceDataset
from mesonet.training.config import TrainConfig
from mesonet.training.dataset import Sample, find_dataset, find_holdout, subsample
from mesonet.training.errors import TrainingError
from mesonet.training.reporter import TrainReporter
from mesonet.training.sources import SourceSampler, SourceSpec
from mesonet.training.videos import find_video_dataset, is_video_folder, video_holdout
from mesonet.training.zipdata import extract_zip, terminate_as_exit


@contextlib.contextmanager
def data_folder(data: Path, config: TrainConfig) -> Iterator[Path]:
    """``data`` itself, or a temporary folder holding the zip's safe extraction."""
    if data.is_file() and data.suffix.lower() == ".zip":
        # SIGTERM during the run removes the extraction too, not only during extracting
        with terminate_as_exit(), tempfile.TemporaryDirectory(prefix="mesonet-data-") as tmp:
            yield extract_zip(data, tmp, config.max_zip_bytes, config.max_zip_ratio)
    else:
        yield data


def as_sources(
    data: str | Path | SourceSpec | Sequence[str | Path | SourceSpec],
) -> list[SourceSpec]:
    """``train``'s data argument as a list of sources (a path is one source of weight 1)."""
    items = [data] if isinstance(data, str | Path | SourceSpec) else list(data)
    return [i if isinstance(i, SourceSpec) else SourceSpec(str(i)) for i in items]


@dataclass
class RunData:
    """The datasets of a run: one training pool over every source, one validation set whose
    images remember their source (``val_ids`` index into ``val_names``)."""

    train: FaceDataset
    val: FaceDataset
    val_ids: np.ndarray
    val_names: list[str]
    pools: list[list[int]]
    reals: list[list[int]]
    fakes: list[list[int]]
    weights: list[float]
    described: dict[str, Any]

    def sampler(self, config: TrainConfig, seed: int) -> SourceSampler:
        """The draws of one epoch."""
        size = config.epoch_size or sum(len(p) for p in self.pools)
        return SourceSampler(
            self.pools,
            self.weights,
            size,
            seed,
            reals=self.reals,
            fakes=self.fakes,
            synthetic_share=config.synthetic_share if config.synthetic == "sbi" else 0.0,
            offset=len(self.train),
            balance_classes=config.balance == "sampler",
        )


def _counts(samples: Sequence[Sample]) -> dict[str, int]:
    fake = sum(s.label for s in samples)
    return {"real": len(samples) - fake, "fake": fake, "total": len(samples)}


def load_run_data(
    sources: Sequence[SourceSpec],
    folders: Sequence[Path],
    config: TrainConfig,
    reporter: TrainReporter,
) -> RunData:
    """Find every source's images, say what was found, and build the datasets."""
    train_samples: list[Sample] = []
    val_samples: list[Sample] = []
    val_ids: list[int] = []
    val_names: list[str] = []
    pools: list[list[int]] = []
    reals: list[list[int]] = []
    fakes: list[list[int]] = []
    weights: list[float] = []
    described: dict[str, Any] = {}
    for spec, folder in zip(sources, folders, strict=True):
        max_val = spec.max_val or config.max_val
        if spec.holdout:
            train: list[Sample] = []
            found = video_holdout(folder) if is_video_folder(folder) else find_holdout(folder)
            val = subsample(found, max_val, config.seed + 1)
            layout = "validation only"
        else:
            fraction = config.val_fraction if spec.val_fraction is None else spec.val_fraction
            finder = find_video_dataset if is_video_folder(folder) else find_dataset
            split = finder(folder, fraction, config.seed)
            train = subsample(split.train, config.max_train, config.seed)
            val = subsample(split.val, max_val, config.seed + 1)
            layout = split.layout
        if train:
            start = len(train_samples)
            train_samples += train
            pools.append(list(range(start, start + len(train))))
            reals.append([start + i for i, s in enumerate(train) if s.label == 0])
            fakes.append([start + i for i, s in enumerate(train) if s.label == 1])
            weights.append(spec.weight)
        if val:
            val_names.append(spec.label)
            val_samples += val
            val_ids += [len(val_names) - 1] * len(val)
        described[spec.label] = {
            "path": spec.path,
            "weight": None if spec.holdout else spec.weight,
            "holdout": spec.holdout,
            "layout": layout,
            "train": _counts(train),
            "val": _counts(val),
        }
        role = "held out" if spec.holdout else f"weight {spec.weight:g}"
        c, v = _counts(train), _counts(val)
        what = f"train {c['total']} ({c['real']} real, {c['fake']} fake), " if train else ""
        reporter.message(f"data {spec.label} ({role}, {layout}): {what}validation {v['total']}")
    if not val_samples:
        raise TrainingError(
            "no validation images: give a source with a validation split (val_fraction > 0 "
            "or a val/ folder) or a held-out source"
        )
    if config.select not in ("min", "mean", *val_names):
        raise TrainingError(
            f"select must be min, mean or a validation source ({', '.join(val_names)}), "
            f"not {config.select!r}"
        )
    resample = (config.resample_min, config.resample_max) if config.resample else None
    train_ds = FaceDataset(
        train_samples,
        build_augment(config.augment, resample),
        config.cache,
        synthetic=config.synthetic == "sbi",
    )
    val_ds = FaceDataset(val_samples, None, config.cache)
    if config.cache:
        reporter.phase_start("decode", len(train_ds) + len(val_ds))
        threads = config.threads or os.cpu_count() or 1
        train_ds.preload(threads, reporter.phase_advance)
        val_ds.preload(threads, reporter.phase_advance)
        reporter.phase_end()
    return RunData(
        train_ds,
        val_ds,
        np.asarray(val_ids),
        val_names,
        pools,
        reals,
        fakes,
        weights,
        described,
    )
