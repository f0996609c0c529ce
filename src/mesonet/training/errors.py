"""Errors of the training stage: one-line messages the CLI prints as they are."""

from __future__ import annotations

from mesonet.errors import MesonetError


class TrainingError(MesonetError):
    """A training option, checkpoint or initial-weights file is unusable."""


class DatasetError(TrainingError):
    """A training data folder or zip is missing, malformed, unsafe or lacks a class."""
