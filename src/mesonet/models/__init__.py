"""MesoNet architectures, model cards and the registry that builds and loads them."""

from mesonet.models.card import ModelCard
from mesonet.models.ensemble import Ensemble
from mesonet.models.meso4 import Meso4, Meso4W, MesoNet, widen_meso4
from mesonet.models.mesoinception4 import MesoInception4
from mesonet.models.registry import (
    ARCHITECTURES,
    bundled_models,
    create_model,
    default_model_name,
    list_models,
    load_model,
    read_card,
    save_ensemble,
    save_model,
)

__all__ = [
    "ARCHITECTURES",
    "Ensemble",
    "Meso4",
    "Meso4W",
    "MesoInception4",
    "MesoNet",
    "ModelCard",
    "bundled_models",
    "create_model",
    "default_model_name",
    "list_models",
    "load_model",
    "read_card",
    "save_ensemble",
    "save_model",
    "widen_meso4",
]
