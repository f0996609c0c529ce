"""The model a run starts from, its optimizer and scheduler, and ``torch.compile``."""

from __future__ import annotations

from typing import Any

import torch

from mesonet.models import create_model, load_model, widen_meso4
from mesonet.models.efficientnet import EfficientNetLite0, load_imagenet
from mesonet.models.meso4 import MesoNet
from mesonet.training.config import IMAGENET, TrainConfig
from mesonet.training.errors import TrainingError
from mesonet.training.reporter import TrainReporter
from mesonet.training.validation import MIN_AUC_GAIN


def initial_model(config: TrainConfig) -> MesoNet:
    """A fresh model of ``config.arch``, holding ``config.init``'s weights when given.

    ``init`` may be the authors' Keras ``.h5`` (converted to fake-probability output), a
    ``.safetensors`` file or a bundled model name. Meso-4 weights start a ``meso4w`` by
    function-preserving widening (:func:`mesonet.models.widen_meso4`, 1% noise).
    """
    model = create_model(config.arch, config.input_size or None)
    if not config.init:
        return model
    if config.init == IMAGENET:
        if not isinstance(model, EfficientNetLite0):
            raise TrainingError(f"--init imagenet needs an ImageNet backbone, not {config.arch}")
        load_imagenet(model)
        return model
    if config.init.lower().endswith(".h5"):
        from mesonet.keras_import import convert_keras_weights

        # the authors' files hold Meso-4 or MesoInception-4; a meso4w widens the Meso-4
        widened = config.arch == "meso4w"
        source = convert_keras_weights(config.init, arch="meso4" if widened else config.arch)
    else:
        source = load_model(config.init)
    if source.arch == "meso4" and config.arch == "meso4w":
        source = widen_meso4(source, noise=0.01, seed=config.seed)
    if source.arch != config.arch:
        raise TrainingError(
            f"--init {config.init} holds {source.arch} weights but arch is {config.arch}"
        )
    if source.input_size != model.input_size:
        raise TrainingError(
            f"--init {config.init} takes {source.input_size} px input, the run {model.input_size}"
        )
    model.load_state_dict(source.state_dict())
    return model


def param_groups(model: MesoNet, config: TrainConfig) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: the head at ``lr``, the body at ``lr`` times
    ``body_lr_scale`` (a pretrained body learns more slowly than its new head)."""
    head, body = [], []
    for name, param in model.named_parameters():
        (head if name.startswith(model.head_prefix) else body).append(param)
    scale = config.body_lr_scale
    return [
        {"params": body, "lr": config.lr * scale, "lr_scale": scale},
        {"params": head, "lr": config.lr, "lr_scale": 1.0},
    ]


def optimizer_and_scheduler(
    model: MesoNet, config: TrainConfig
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.ReduceLROnPlateau]:
    """Adam over :func:`param_groups`, and the plateau scheduler following the selection
    score (it only steps with ``schedule = "plateau"``)."""
    optimizer = torch.optim.Adam(
        param_groups(model, config), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="max",
        factor=config.lr_factor,
        patience=config.lr_patience,
        threshold=MIN_AUC_GAIN,
        threshold_mode="abs",
        min_lr=config.min_lr,
    )
    return optimizer, scheduler


def compile_model(model: MesoNet, reporter: TrainReporter) -> bool:
    """Run ``model.logits`` through ``torch.compile``; False (eager kept) where it cannot.

    The compiled function is an instance attribute, so weights, ``state_dict`` and
    checkpoints are those of the plain model. Inductor needs a C++ compiler on CPU: a probe
    compiles a one-line function first, and a machine without one trains in eager mode.
    """
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(4))
    except Exception as exc:  # noqa: BLE001 - any failure means: no compiler backend here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reporter.message(f"torch.compile is not available here ({reason[:200]}); eager mode")
        return False
    model.logits = torch.compile(model.logits)
    reporter.message("torch.compile: the first steps of training and validation compile (~30 s)")
    return True
