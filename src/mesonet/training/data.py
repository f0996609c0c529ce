"""Training data: find the labelled images (folder or zip), split them, decode and batch them.

The pieces live in :mod:`mesonet.training.zipdata` (safe zip extraction),
:mod:`mesonet.training.dataset` (layouts, splits, subsets) and
:mod:`mesonet.training.batches` (decoding, the dataset, batches); this module gathers them
under the names the rest of the code imports.
"""

from mesonet.training.batches import (
    IMAGE_SIZE,
    FaceDataset,
    iter_batches,
    read_face,
    to_model_input,
)
from mesonet.training.dataset import (
    FAKE_DIRS,
    IMAGE_SUFFIXES,
    REAL_DIRS,
    TRAIN_DIRS,
    VAL_DIRS,
    DataSplit,
    Sample,
    find_dataset,
    find_holdout,
    split_by_group,
    subsample,
)
from mesonet.training.zipdata import (
    FREE_SPACE_MARGIN,
    ZIP_RATIO_FLOOR,
    cleanup,
    extract_zip,
    terminate_as_exit,
)

__all__ = [
    "FAKE_DIRS",
    "FREE_SPACE_MARGIN",
    "IMAGE_SIZE",
    "IMAGE_SUFFIXES",
    "REAL_DIRS",
    "TRAIN_DIRS",
    "VAL_DIRS",
    "ZIP_RATIO_FLOOR",
    "DataSplit",
    "FaceDataset",
    "Sample",
    "cleanup",
    "extract_zip",
    "find_dataset",
    "find_holdout",
    "iter_batches",
    "read_face",
    "split_by_group",
    "subsample",
    "terminate_as_exit",
    "to_model_input",
]
