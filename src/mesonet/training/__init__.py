"""Training: datasets (folder / zip), augmentations, the training loop and its checkpoints."""

from mesonet.training.augment import build_augment
from mesonet.training.config import TrainConfig, from_mapping, load_toml, resolve_config
from mesonet.training.data import (
    DataSplit,
    FaceDataset,
    Sample,
    extract_zip,
    find_dataset,
    read_face,
)
from mesonet.training.errors import DatasetError, TrainingError
from mesonet.training.loop import (
    TrainReporter,
    TrainResult,
    checkpoint_config,
    initial_model,
    load_checkpoint,
    train,
)

__all__ = [
    "DataSplit",
    "DatasetError",
    "FaceDataset",
    "Sample",
    "TrainConfig",
    "TrainReporter",
    "TrainResult",
    "TrainingError",
    "build_augment",
    "checkpoint_config",
    "extract_zip",
    "find_dataset",
    "from_mapping",
    "initial_model",
    "load_checkpoint",
    "load_toml",
    "read_face",
    "resolve_config",
    "train",
]
