"""Plots and the HTML report write valid files, empty inputs included."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mesonet.evaluation import (
    compute_metrics,
    plot_confusion,
    plot_face_grid,
    plot_roc,
    plot_training_curves,
    write_report,
)


def _png(path: Path) -> tuple[int, int]:
    """Size of a valid PNG file (fails if missing or not a PNG)."""
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
        return image.size


def _data(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return y, np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)


def test_plot_roc(tmp_path: Path) -> None:
    y, s = _data()
    out = plot_roc(y, s, tmp_path / "sub" / "roc.png", "Test ROC")
    assert out == tmp_path / "sub" / "roc.png"
    w, h = _png(out)
    assert w > 200 and h > 200


@pytest.mark.parametrize(("y", "s"), [([], []), ([1, 1], [0.2, 0.9]), ([0], [0.4])])
def test_plot_roc_degenerate(tmp_path: Path, y: list[int], s: list[float]) -> None:
    _png(plot_roc(y, s, tmp_path / "roc.png", "degenerate"))


def test_plot_confusion(tmp_path: Path) -> None:
    _png(plot_confusion({"tn": 50, "fp": 5, "fn": 12, "tp": 40}, tmp_path / "c.png"))
    _png(plot_confusion({"tn": 3, "fp": 0, "fn": 0, "tp": 0}, tmp_path / "one_row.png"))
    _png(plot_confusion({"tn": 0, "fp": 0, "fn": 0, "tp": 0}, tmp_path / "empty.png"))


def test_plot_face_grid(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (32 + 4 * i, 32, 3), dtype=np.uint8) for i in range(11)]
    images.append(rng.integers(0, 256, (24, 24), dtype=np.uint8))  # greyscale too
    captions = [f"p=0.{i:02d}\nface_{i}" for i in range(12)]
    correct = [i % 2 == 0 for i in range(12)]
    size_wide = _png(plot_face_grid(images, captions, tmp_path / "g.png", "Grid", correct=correct))
    size_tall = _png(plot_face_grid(images, captions, tmp_path / "g4.png", "Grid", cols=4))
    assert size_tall[1] > size_wide[1]  # more rows, taller figure


def test_plot_face_grid_empty_and_mismatch(tmp_path: Path) -> None:
    _png(plot_face_grid([], [], tmp_path / "empty.png", "Nothing"))
    with pytest.raises(ValueError, match="captions"):
        plot_face_grid([np.zeros((8, 8, 3), np.uint8)], [], tmp_path / "bad.png")


def test_plot_training_curves(tmp_path: Path) -> None:
    rows = [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "val_loss": 1.2 / e,
            "val_auc": 0.6 + 0.03 * e,
            "lr": 1e-3 * 0.5**e,
        }
        for e in range(1, 8)
    ]
    rows.append({"epoch": 8, "train_loss": 0.1, "val_loss": None})  # partial row
    _png(plot_training_curves(rows, tmp_path / "curves.png"))
    _png(plot_training_curves([], tmp_path / "none.png"))
    _png(plot_training_curves([{"epoch": 1}], tmp_path / "bare.png"))


def _face(path: str) -> np.ndarray:
    if path.endswith("broken.jpg"):
        raise OSError("cannot read")
    value = int(re.sub(r"\D", "", Path(path).stem) or 0) % 256
    return np.full((40, 40, 3), value, dtype=np.uint8)


@pytest.mark.parametrize("loader", [_face, None])
def test_write_report(tmp_path: Path, loader: object) -> None:
    y, s = _data(80)
    paths = [f"data/{'fake' if t else 'real'}/Deepfakes__{i}.jpg" for i, t in enumerate(y)]
    paths[3] = "data/fake/broken.jpg"
    groups = ["Deepfakes" if i % 3 else "" for i in range(80)]
    m = compute_metrics(y, s, threshold=0.5, groups=groups)
    out = tmp_path / "report"
    files = write_report(out, m, y, s, paths, loader, "Test <report>", 0.5)  # type: ignore[arg-type]
    names = [f.name for f in files]
    expected = [
        "metrics.json",
        "roc.png",
        "confusion.png",
        "reliability.png",
        "correct_real.png",
        "correct_fake.png",
        "wrong_real.png",
        "wrong_fake.png",
        "index.html",
    ]
    assert sorted(names) == sorted(expected)
    assert all(f.parent == out and f.is_file() for f in files)
    for f in files:
        if f.suffix == ".png":
            _png(f)
    assert json.loads((out / "metrics.json").read_text()) == m
    page = (out / "index.html").read_text()
    for name in expected[1:-1]:
        assert f'src="{name}"' in page
    assert "Test &lt;report&gt;" in page
    assert "Deepfakes" in page and "(none)" in page
    assert "http://" not in page and "https://" not in page  # self-contained
    assert "expected calibration error" in page


def test_write_report_empty_and_one_class(tmp_path: Path) -> None:
    files = write_report(tmp_path / "empty", compute_metrics([], []), [], [], [], None, "Empty")
    assert len(files) == 9 and any(f.name == "reliability.png" for f in files)
    for f in files:
        assert f.is_file() and f.stat().st_size > 0
    y, s = [0, 0, 0], [0.1, 0.7, 0.2]
    m = compute_metrics(y, s)
    write_report(tmp_path / "one", m, y, s, ["a.jpg", "b.jpg", "c.jpg"], _face, "Real only")
    assert json.loads((tmp_path / "one" / "metrics.json").read_text())["auc"] is None


def test_report_grid_selection(tmp_path: Path) -> None:
    """Grids hold the most confident examples, at most 32 each."""
    from mesonet.evaluation.report import MAX_GRID, _select

    y = np.array([0] * 50 + [1] * 3)
    s = np.concatenate([np.linspace(0.0, 0.45, 50), [0.9, 0.2, 0.6]])
    real_ok = _select(y, s, 0.5, 0, 0)
    assert real_ok.size == 50 and real_ok[0] == 0 and s[real_ok[0]] == s[:50].min()
    assert list(_select(y, s, 0.5, 1, 1)) == [50, 52]  # highest fake score first
    assert list(_select(y, s, 0.5, 1, 0)) == [51]
    assert _select(y, s, 0.5, 0, 1).size == 0
    assert MAX_GRID == 32


def test_reliability_diagram(tmp_path: Path) -> None:
    from mesonet.evaluation.plots import plot_reliability

    y, s = _data(200)
    assert _png(plot_reliability(y, s, tmp_path / "rel.png"))[0] > 300
    _png(plot_reliability([], [], tmp_path / "empty.png"))
