"""MesoNet architectures, model cards and the registry that builds and loads them.

The names below are imported on first use: the architectures and the registry need PyTorch,
the cards (:mod:`mesonet.models.card`) and shipped graphs (:mod:`mesonet.models.graph`) do
not.
"""

import importlib
from typing import Any

_WHERE = {
    "ModelCard": "mesonet.models.card",
    "Ensemble": "mesonet.models.ensemble",
    "Meso4": "mesonet.models.meso4",
    "Meso4W": "mesonet.models.meso4",
    "MesoNet": "mesonet.models.meso4",
    "widen_meso4": "mesonet.models.meso4",
    "MesoInception4": "mesonet.models.mesoinception4",
    "ARCHITECTURES": "mesonet.models.registry",
    "bundled_models": "mesonet.models.references",
    "create_model": "mesonet.models.registry",
    "default_model_name": "mesonet.models.references",
    "list_models": "mesonet.models.card_files",
    "load_model": "mesonet.models.registry",
    "read_card": "mesonet.models.card_files",
    "save_ensemble": "mesonet.models.registry",
    "save_model": "mesonet.models.registry",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mesonet.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
