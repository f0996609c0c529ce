"""Shared fixtures. Data from ../shared is read in place and skipped cleanly when absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (../shared data is needed for this test)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared folder beside the project."""
    return _shared_path()


@pytest.fixture(scope="session")
def keras_weights() -> Path:
    """Folder of the authors' four Keras .h5 weight files."""
    return _shared_path("reference", "mesonet-keras", "weights")


@pytest.fixture(scope="session")
def keras_images() -> Path:
    """Folder of the authors' four test images (df/ and real/)."""
    return _shared_path("reference", "mesonet-keras", "test_images")
