"""Reading a model's card from its file, without loading it (no PyTorch): a safetensors
file's metadata, or an ensemble card's JSON."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError

from mesonet.errors import ModelError
from mesonet.models.card import ENSEMBLE_ARCH, MAX_CARD_BYTES, ModelCard
from mesonet.models.references import ENSEMBLE_SUFFIX, bundled_models, default_model_name

CARD_KEY = "model_card"
"""The safetensors metadata key holding the card (JSON)."""


def read_card(path: str | Path) -> ModelCard:
    """The model card stored in a weights file's metadata (or an ensemble card's JSON)."""
    if Path(path).suffix == ENSEMBLE_SUFFIX:
        return _read_ensemble_card(Path(path))
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable safetensors weights file ({exc})") from None
    if CARD_KEY not in metadata:
        raise ModelError(f"{path}: weights file has no model card in its metadata")
    try:
        return ModelCard.from_json(metadata[CARD_KEY])
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: model card is not valid JSON ({exc})") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise ModelError(f"{path}: invalid model card: {exc}") from None


def _read_ensemble_card(path: Path) -> ModelCard:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CARD_BYTES + 1)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the ensemble card ({exc.strerror})") from None
    try:
        card = ModelCard.from_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: ensemble card is not valid JSON ({exc})") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise ModelError(f"{path}: invalid model card: {exc}") from None
    if card.arch != ENSEMBLE_ARCH:
        raise ModelError(f"{path}: a .json model must be an ensemble card (arch 'ensemble')")
    return card


def list_models() -> list[ModelCard]:
    """Model cards of every bundled model, default first."""
    cards = [read_card(path) for path in bundled_models().values()]
    default = default_model_name()
    return sorted(cards, key=lambda c: (c.name != default, c.name))
