"""Real-world faces as a training source: a folder of real faces alone, and the crops tool."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mesonet.inputs import sample_paths
from mesonet.training.dataset import find_dataset
from mesonet.training.errors import DatasetError


def _faces(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            folder / f"photo{i}_{i}.png"
        )


def test_a_folder_of_real_faces_alone_trains_when_nothing_is_held_out(tmp_path):
    _faces(tmp_path / "real", 3)
    split = find_dataset(tmp_path, val_fraction=0)
    assert [s.label for s in split.train] == [0, 0, 0] and split.val == []
    with pytest.raises(DatasetError, match="no fake/"):
        find_dataset(tmp_path, val_fraction=0.1)  # a split needs both classes


def test_extract_faces_writes_one_crop_per_face_grouped_by_file(tmp_path):
    src = tmp_path / "media" / "real"
    src.mkdir(parents=True)
    for path in sample_paths():
        if path.parent.name == "real":
            shutil.copy(path, src / path.name)
    out = tmp_path / "faces"
    tool = Path(__file__).parents[1] / "tools" / "extract_faces.py"
    run = subprocess.run(
        [sys.executable, str(tool), str(tmp_path / "media"), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    crops = sorted(p.name for p in (out / "real").iterdir())
    assert len(crops) == 2 and all(c.endswith("_0.png") for c in crops), crops
    assert Image.open(out / "real" / crops[0]).size == (256, 256)
    assert "real: 2 faces from 2 new files" in run.stdout
    again = subprocess.run(
        [sys.executable, str(tool), str(tmp_path / "media"), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "real: 0 faces from 0 new files" in again.stdout  # a rerun adds only what is new
