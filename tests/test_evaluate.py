"""mesonet evaluate on small folders of images and of videos: every metric key, the report."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mesonet.cli import app
from mesonet.evaluation import METRIC_KEYS
from mesonet.evaluation.runner import evaluate
from mesonet.inputs import Limits
from mesonet.models import ModelCard, create_model, save_model
from mesonet.pipeline import Detector

DFDC_TEST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "dfdc-faces" / "test"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    save_model(create_model("meso4"), path, ModelCard(name="meso4.test", arch="meso4"))
    return path


def crops(label: str, n: int) -> list[np.ndarray]:
    if not DFDC_TEST.exists():
        pytest.skip("../shared dfdc-faces not present")
    paths = sorted((DFDC_TEST / label).glob("*.jpg"))[:n]
    return [cv2.imread(str(p)) for p in paths]  # BGR, as cv2 writes them back


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for label in ("real", "fake"):
        (root / label).mkdir()
        for i, crop in enumerate(crops(label, 6)):
            prefix = "Method__" if label == "fake" and i % 2 else ""
            cv2.imwrite(str(root / label / f"{prefix}{label}{i}.jpg"), crop)
    return root


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for label in ("real", "fake"):
        (root / label).mkdir()
        for i, crop in enumerate(crops(label, 2)):
            canvas = np.full((360, 480, 3), 120, np.uint8)
            canvas[60:284, 128:352] = crop
            path = root / label / f"{label}{i}.mp4"
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8, (480, 360))
            for _ in range(8):
                writer.write(canvas)
            writer.release()
    return root


def check_keys(metrics: dict, n: int) -> None:
    assert set(METRIC_KEYS) <= metrics.keys()
    assert metrics["n"] == n
    assert 0 <= metrics["auc"] <= 1 and 0 <= metrics["ap"] <= 1 and 0 <= metrics["eer"] <= 1
    assert sum(metrics["confusion"].values()) == n
    json.dumps(metrics, allow_nan=False)  # plain JSON, no NaN


def test_images_are_evaluated_at_frame_level_with_groups(model_path, image_folder):
    metrics = evaluate(Detector(model_path, faces="none"), image_folder)
    check_keys(metrics, 12)
    assert metrics["level"] == "frame" and metrics["skipped"] == {"no_face": 0, "error": 0}
    assert set(metrics["by_group"]) == {"", "Method"}
    assert metrics["by_group"]["Method"]["n"] == 3


def test_the_metrics_and_the_table_say_which_engine_scored(model_path, image_folder):
    exact = evaluate(Detector(model_path, faces="none", backend="openvino"), image_folder)
    assert exact["backend"] == "openvino"
    args = ["evaluate", str(image_folder), "--faces", "none", "--model", str(model_path)]
    result = CliRunner().invoke(app, [*args, "--backend", "torch"])
    assert result.exit_code == 0, result.output
    assert f"{exact['model']} (torch): frame level" in result.stdout


def test_videos_are_evaluated_at_video_level(model_path, video_folder):
    metrics = evaluate(Detector(model_path, frames=4), video_folder)
    assert metrics["level"] == "video"
    check_keys(metrics, 4 - sum(metrics["skipped"].values()))


def test_cli_json_and_report(model_path, image_folder, tmp_path):
    report = tmp_path / "report"
    args = ["evaluate", str(image_folder), "--faces", "none", "--model", str(model_path)]
    result = CliRunner().invoke(app, [*args, "--format", "json", "--report", str(report)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    check_keys(metrics, 12)
    written = {p.name for p in report.iterdir()}
    assert {"roc.png", "confusion.png", "metrics.json", "index.html"} <= written
    assert {"correct_real.png", "correct_fake.png", "wrong_real.png", "wrong_fake.png"} <= written


def test_a_folder_without_classes_is_a_clear_error(model_path, tmp_path):
    (tmp_path / "real").mkdir()
    cmd = ["evaluate", str(tmp_path), "--model", str(model_path)]
    result = CliRunner().invoke(app, cmd)
    assert result.exit_code != 0
    assert "fake/" in str(result.exception)


@pytest.fixture(scope="module")
def sample_folder(tmp_path_factory) -> Path:
    """real/ and df/ from the packaged samples: 6 reals (group A) and 6 fakes (groups A, B)."""
    from mesonet.inputs import sample_paths

    root = tmp_path_factory.mktemp("labelled-samples")
    samples = sample_paths()
    for label in ("real", "df"):
        (root / label).mkdir()
        sources = [p for p in samples if p.parent.name == label]
        for i in range(6):
            group = "A" if label == "real" or i < 3 else "B"
            shutil.copy(sources[i % 2], root / label / f"{group}__{label}{i}.jpg")
    return root


def test_limit_counts_like_predict_and_keeps_both_classes(model_path, sample_folder):
    metrics = evaluate(Detector(model_path, faces="none"), sample_folder, limits=Limits(limit=4))
    assert metrics["n"] == 4  # --limit 4: four images in all, not four per class folder
    assert metrics["confusion"]["tn"] + metrics["confusion"]["fp"] == 2  # two real, two fake


def test_one_class_group_shows_no_auc_or_ap(model_path, sample_folder):
    cmd = ["evaluate", str(sample_folder), "--faces", "none", "-m", str(model_path)]
    result = CliRunner().invoke(app, cmd, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    rows = {
        cells[0]: cells[1:]
        for cells in map(str.split, result.stdout.splitlines())
        if len(cells) == 9  # group, n, auc, ap, eer, acc, prec, recall, f1
    }
    assert rows["B"][:3] == ["3", "-", "-"]  # group B holds fakes only: no AUC, no AP
    assert rows["A"][1] != "-" and rows["all"][1] != "-"


def test_metrics_table_keeps_group_names_whole_at_80_columns():
    from rich.console import Console

    from mesonet.cli.evaluate import _metrics_table
    from mesonet.evaluation.metrics import compute_metrics

    rng = np.random.default_rng(0)
    names = ["Deepfakes", "Face2Face", "NeuralTextures", "FaceShifter"]
    metrics = compute_metrics(
        rng.integers(0, 2, 80), rng.random(80), groups=[names[i % 4] for i in range(80)]
    )
    metrics.update(level="video", model="m", skipped={"no_face": 0, "error": 0})
    console = Console(width=80, record=True)
    console.print(_metrics_table(metrics))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert all(name in text for name in names)
    small = compute_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.6, 0.9]))
    small.update(level="frame", model="m", skipped={"no_face": 0, "error": 0})
    for figures in (metrics, small):  # a narrow table too: its figures are not wrapped in it
        console = Console(width=80, record=True)
        console.print(_metrics_table(figures))
        text = console.export_text()
        assert re.search(r"calibration: ECE \d\.\d{4}, Brier \d\.\d{4}", text)  # one line


def test_video_sweep_tool_measures_each_setting(model_path, video_folder):
    """tools/video_sweep.py: one JSON row per model and setting, by evaluate's own code."""
    import subprocess
    import sys

    tool = Path(__file__).resolve().parents[1] / "tools" / "video_sweep.py"
    args = [str(video_folder), "--model", str(model_path), "--frames", "4", "--threads", "1"]
    args += ["--margin", "1.0", "--margin", "1.3", "--aggregate", "mean", "--aggregate", "vote"]
    done = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    settings = [(r["margin"], r["aggregate"]) for r in rows]
    assert settings == [(1.0, "mean"), (1.0, "vote"), (1.3, "mean"), (1.3, "vote")]
    assert all(r["frames"] == 4 and r["model"] == str(model_path) for r in rows)
    expected = evaluate(Detector(model_path, frames=4, margin=1.0), video_folder)["auc"]
    assert rows[0]["auc"] == pytest.approx(expected, abs=1e-4)
