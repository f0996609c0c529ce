"""Training: layouts, safe zips, config, augmentation, a tiny run, resume, the CLI command.

Data are generated: 'real' images are smooth colour gradients, 'fake' ones carry a
checkerboard patch (a visible artefact), 64 x 64 and upscaled to 256 by the pipeline.
"""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mesonet.cli import app
from mesonet.models import ModelCard, load_model, save_model
from mesonet.training import (
    DatasetError,
    TrainConfig,
    TrainingError,
    TrainReporter,
    build_augment,
    extract_zip,
    find_dataset,
    initial_model,
    load_checkpoint,
    resolve_config,
    train,
)
from mesonet.training.augment import VideoCompression, h264_roundtrip
from mesonet.training.data import FaceDataset, to_model_input

# One thread and no workers keep the tests light on a shared 2-core machine.
TINY = {"batch_size": 8, "augment": "none", "workers": 0, "threads": 1, "patience": 0}


def _image(rng: np.random.Generator, fake: bool) -> np.ndarray:
    base = np.empty((64, 64, 3), np.float32)
    base[:] = rng.uniform(60, 200, 3)
    base += np.linspace(-30, 30, 64)[None, :, None]
    base += rng.normal(0, 3, base.shape)
    if fake:
        y, x = rng.integers(8, 40, 2)
        checker = (np.indices((16, 16)).sum(0) % 2) * 255.0
        base[y : y + 16, x : x + 16] = checker[..., None]
    return np.clip(base, 0, 255).astype(np.uint8)


def _write_class(folder: Path, n: int, fake: bool, seed: int, name: str = "img{i}") -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{name.format(i=i)}.png"), _image(rng, fake))


def make_split(
    root: Path,
    n_train: int = 16,
    n_val: int = 4,
    val_name: str = "val",
    fake_name: str = "fake",
) -> Path:
    """root/train/{real,fake} and root/<val_name>/{real,fake} of generated images."""
    for split, n, seed in (("train", n_train, 0), (val_name, n_val, 1)):
        _write_class(root / split / "real", n, False, seed)
        _write_class(root / split / fake_name, n, True, seed + 10)
    return root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_split(tmp_path_factory.mktemp("tiny"))


# --------------------------------------------------------------------------- layouts


def test_layout_train_validation(tmp_path: Path) -> None:
    split = find_dataset(make_split(tmp_path, 3, 2, val_name="validation"))
    assert split.layout == "train/val folders"
    assert split.describe()["train"] == {"real": 3, "fake": 3, "total": 6}
    assert split.describe()["val"] == {"real": 2, "fake": 2, "total": 4}
    assert all((s.label == 1) == (s.path.parent.name == "fake") for s in split.train)


def test_layout_val_and_authors_df_folder(tmp_path: Path) -> None:
    split = find_dataset(make_split(tmp_path, 3, 2, val_name="val", fake_name="df"))
    assert sum(s.label for s in split.train) == 3
    assert {s.path.parent.name for s in split.val if s.label == 1} == {"df"}


def test_layout_single_folder_split_keeps_videos_together(tmp_path: Path) -> None:
    for video in range(10):
        _write_class(tmp_path / "real", 3, False, video, name=f"real{video}_{{i}}")
        _write_class(tmp_path / "fake", 3, True, video, name=f"fake{video}_{{i}}")
    split = find_dataset(tmp_path, val_fraction=0.2, seed=3)
    assert split.layout == "single folder split"
    assert len(split.val) == 12 and len(split.train) == 48
    assert {s.label for s in split.val} == {0, 1}
    videos = lambda samples: {s.path.stem.rsplit("_", 1)[0] for s in samples}  # noqa: E731
    assert not videos(split.train) & videos(split.val)
    again = find_dataset(tmp_path, val_fraction=0.2, seed=3)
    assert [s.path for s in again.val] == [s.path for s in split.val]


def test_layout_errors_say_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        find_dataset(tmp_path / "nowhere")
    _write_class(tmp_path / "only" / "real", 2, False, 0)
    with pytest.raises(DatasetError, match="no fake"):
        find_dataset(tmp_path / "only")
    (tmp_path / "empty" / "real").mkdir(parents=True)
    _write_class(tmp_path / "empty" / "fake", 2, True, 0)
    with pytest.raises(DatasetError, match="no real images"):
        find_dataset(tmp_path / "empty")
    _write_class(tmp_path / "noval" / "train" / "real", 2, False, 0)
    with pytest.raises(DatasetError, match="no validation"):
        find_dataset(tmp_path / "noval")


# --------------------------------------------------------------------------- zips


def _zip(path: Path, entries: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return path


def _png() -> bytes:
    ok, data = cv2.imencode(".png", _image(np.random.default_rng(0), False))
    assert ok
    return data.tobytes()


@pytest.mark.parametrize("name", ["../evil.png", "data/../../evil.png", "/abs/evil.png"])
def test_zip_escaping_entries_are_refused(tmp_path: Path, name: str) -> None:
    archive = _zip(tmp_path / "bad.zip", {"data/real/a.png": _png(), name: _png()})
    with pytest.raises(DatasetError, match="escapes"):
        extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "evil.png").exists()


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "link.zip", {"data/real/a.png": _png()}, symlink="data/fake/x.png")
    with pytest.raises(DatasetError, match="symbolic link"):
        extract_zip(archive, tmp_path / "out")


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "bomb.zip", {"data/real/a.png": b"\0" * (32 * 1024**2)})
    with pytest.raises(DatasetError, match="zip bomb"):
        extract_zip(archive, tmp_path / "out")
    small = _zip(tmp_path / "big.zip", {"a.png": _png(), "b.png": _png()})
    with pytest.raises(DatasetError, match="limit"):
        extract_zip(small, tmp_path / "out2", max_total_bytes=100)


def test_zip_bomb_of_many_small_entries_is_refused(tmp_path: Path) -> None:
    """100 entries of 1 MiB of zeros (none over the per-entry check): the total ratio."""
    zeros = b"\0" * 1024**2
    archive = _zip(tmp_path / "many.zip", {f"data/real/{i}.png": zeros for i in range(100)})
    assert archive.stat().st_size < 1024**2
    with pytest.raises(DatasetError, match="overall"):
        extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zip_larger_than_the_free_space_is_refused(tmp_path: Path, monkeypatch) -> None:
    import shutil

    from mesonet.training import zipdata

    archive = _zip(tmp_path / "ds.zip", {"data/real/a.png": _png(), "data/fake/b.png": _png()})
    monkeypatch.setattr(
        zipdata.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(1, 1, 1000)
    )
    with pytest.raises(DatasetError, match="free at"):
        extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("folder_first", [False, True])
def test_zip_with_a_file_and_a_folder_of_one_name_is_refused(
    tmp_path: Path, folder_first: bool
) -> None:
    entries = {"train/real/x": _png(), "train/real/x/y.jpg": _png()}
    if folder_first:
        entries = dict(reversed(entries.items()))
    archive = _zip(tmp_path / "clash.zip", entries)
    with pytest.raises(DatasetError, match="'train/real/x' is both a file and a folder"):
        extract_zip(archive, tmp_path / "out")
    result = CliRunner().invoke(app, ["train", str(archive), "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and isinstance(result.exception, DatasetError)


_SLOW_EXTRACT = """
import sys, tempfile, time
from pathlib import Path
from mesonet.training import zipdata

copy = zipdata._copy_entry

def slow(*args):
    Path(sys.argv[2]).touch()  # extraction has started
    time.sleep(0.05)
    return copy(*args)

zipdata._copy_entry = slow
with tempfile.TemporaryDirectory(prefix="mesonet-data-") as tmp:  # as training does
    zipdata.extract_zip(sys.argv[1], tmp)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_zip_extraction_leaves_nothing_behind(tmp_path: Path, signum) -> None:
    archive = _zip(tmp_path / "ds.zip", {f"data/real/{i}.png": _png() for i in range(400)})
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    started = tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_EXTRACT, str(archive), str(started)],
        env={**os.environ, "TMPDIR": str(scratch)},
        stderr=subprocess.PIPE,
        # a suite run in the background inherits an ignored SIGINT; the child gets Python's own
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert list(scratch.iterdir()), "the extraction folder should exist by now"
    proc.send_signal(signum)
    proc.wait(30)
    assert proc.returncode != 0
    assert list(scratch.iterdir()) == [], "the extraction folder was left behind"


_TRAIN_FROM_ZIP = """
import sys
from pathlib import Path
from mesonet.training import TrainConfig, TrainReporter, train

class Started(TrainReporter):
    def phase_start(self, name, total, epoch=0):
        if name == "train":
            Path(sys.argv[3]).touch()  # the data is extracted and training has begun

config = TrainConfig(epochs=1000, batch_size=8, augment="none", workers=0, threads=1,
                     patience=0)
train(sys.argv[1], sys.argv[2], config, reporter=Started())
"""


def test_sigterm_during_training_on_a_zip_removes_the_extraction(tmp_path: Path) -> None:
    """Not only while extracting: a run stopped by SIGTERM mid-training leaves no data."""
    source = make_split(tmp_path / "ds", 4, 2)
    archive = tmp_path / "ds.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(source.rglob("*.png")):
            zf.write(file, file.relative_to(source).as_posix())
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    started = tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-c", _TRAIN_FROM_ZIP, str(archive), str(tmp_path / "run"), str(started)],
        env={**os.environ, "TMPDIR": str(scratch)},
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert started.exists(), proc.stderr.read().decode()[-2000:] if proc.poll() else "too slow"
    extracted = lambda: list(scratch.glob("mesonet-data-*"))  # noqa: E731 (torch caches too)
    assert extracted(), "the extraction folder should exist during training"
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    assert proc.returncode != 0
    assert extracted() == [], "the extraction folder was left behind"


def test_zip_of_a_dataset_is_found_inside_its_top_folder(tmp_path: Path) -> None:
    source = make_split(tmp_path / "ds", 2, 2)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in sorted(source.rglob("*.png")):
            archive.write(file, "ds/" + file.relative_to(source).as_posix())
    (tmp_path / "ds.zip").write_bytes(buffer.getvalue())
    split = find_dataset(extract_zip(tmp_path / "ds.zip", tmp_path / "x"))
    assert len(split.train) == 4 and len(split.val) == 4


# --------------------------------------------------------------------------- config, data


def test_config_file_then_flags(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\nepochs = 7\nlr = 1\naugment = "light"\n')
    config = resolve_config(toml, {"epochs": 3, "seed": None})
    assert (config.epochs, config.lr, config.augment, config.seed) == (3, 1.0, "light", 0)
    toml.write_text("epochz = 7\n")
    with pytest.raises(TrainingError, match="unknown training option"):
        resolve_config(toml)
    with pytest.raises(TrainingError, match="loss must be one of"):
        TrainConfig(loss="hinge")
    with pytest.raises(TrainingError, match="must be an integer"):
        resolve_config(None, {"epochs": "many"})


def test_dataset_batches_are_model_input(tiny_data: Path) -> None:
    split = find_dataset(tiny_data)
    dataset = FaceDataset(split.train[:3], build_augment("standard"), cache=True)
    dataset.preload(1)
    images, labels = dataset.__getitems__([0, 1, 2])
    assert images.shape == (3, 256, 256, 3) and images.dtype == torch.uint8
    x = to_model_input(images)
    assert x.shape == (3, 3, 256, 256) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    dataset.reseed(5)
    first = dataset[0][0].copy()
    dataset.reseed(5)
    assert np.array_equal(first, dataset[0][0])
    assert build_augment("none") is None


def test_h264_roundtrip_leaves_codec_artefacts_that_grow_with_the_quantiser() -> None:
    rng = np.random.default_rng(0)
    image = cv2.resize(_image(rng, fake=True), (256, 256), interpolation=cv2.INTER_CUBIC)
    errors = []
    for qp in (10, 30, 50):
        out = h264_roundtrip(image, qp)
        assert out.shape == image.shape and out.dtype == np.uint8
        errors.append(float(np.abs(out.astype(int) - image).mean()))
    assert 0 < errors[0] < errors[1] < errors[2], errors
    # at a third of the size (as a small face in a frame) detail is lost on top of the codec's
    assert float(np.abs(h264_roundtrip(image, 30, 0.35).astype(int) - image).mean()) > errors[1]
    odd = h264_roundtrip(image[:101, :77], 30, 0.5)  # odd sides: encoded at even ones
    assert odd.shape == (101, 77, 3)


def test_video_augment_reencodes_and_is_seeded() -> None:
    image = cv2.resize(_image(np.random.default_rng(1), fake=False), (256, 256))
    step = VideoCompression(qp_range=(40, 40), p=1.0)
    step.set_random_seed(3)
    first = step(image=image)["image"]
    step.set_random_seed(3)
    assert np.array_equal(first, step(image=image)["image"])
    assert not np.array_equal(first, image)
    video = build_augment("video")
    assert any(
        isinstance(t, VideoCompression)
        for s in video.transforms
        for t in getattr(s, "transforms", [])
    )


# --------------------------------------------------------------------------- training


def test_tiny_run_loss_falls_and_writes_everything(tiny_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(epochs=5, **TINY)
    result = train(tiny_data, tmp_path / "run", config, command="test")
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.8 * losses[0], losses
    for name in ("last.pt", "best.safetensors", "log.jsonl", "curves.png", "summary.json"):
        assert (tmp_path / "run" / name).is_file(), name
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert {"train_loss", "val_loss", "val_auc", "val_acc", "lr", "seconds", "images_per_s"} <= set(
        rows[0]
    )
    model = load_model(tmp_path / "run" / "best.safetensors")
    card = model.card
    assert card.arch == "meso4" and 0.0 <= card.threshold <= 1.0
    assert card.training["seed"] == 0 and card.training["command"] == "test"
    assert card.training["config"]["epochs"] == 5
    assert card.metrics["split"] == "val" and card.metrics["auc"] is not None
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 5 and ckpt["step"] == 20
    with pytest.raises(TrainingError, match="--resume"):
        train(tiny_data, tmp_path / "run", config)


def test_resume_continues_exactly(tiny_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(epochs=2, max_train=16, **{**TINY, "augment": "standard"})
    train(tiny_data, tmp_path / "straight", config)
    train(tiny_data, tmp_path / "resumed", config.replace(epochs=1))
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 1
    train(tiny_data, tmp_path / "resumed", config, resume=True)
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"] == 4
    steps = [s["step"] for s in b["optimizer"]["state"].values()]
    assert steps and all(float(s) == 4 for s in steps)
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=1e-6, msg=key)
    assert [r["epoch"] for r in b["history"]] == [1, 2]


class RecordingReporter(TrainReporter):
    """Keeps the loop's one-line messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)


def test_compiled_training_saves_plain_weights(tiny_data: Path, tmp_path: Path) -> None:
    """--compile trains the same model: plain state_dict keys, saved weights load and agree."""
    init = tmp_path / "init.safetensors"
    save_model(initial_model(TrainConfig()), init, ModelCard(name="meso4.init", arch="meso4"))
    config = TrainConfig(epochs=3, compile=True, init=str(init), **TINY)
    reporter = RecordingReporter()
    result = train(tiny_data, tmp_path / "run", config, reporter=reporter)
    if any("torch.compile is not available here" in m for m in reporter.messages):
        pytest.skip("no C++ compiler for torch.compile here (the fallback has its own test)")
    assert any(m.startswith("torch.compile:") for m in reporter.messages), reporter.messages
    assert [row["epoch"] for row in result.history] == [0, 1, 2, 3]  # 0: the initial weights
    losses = [row["train_loss"] for row in result.history[1:]]
    assert losses[-1] < losses[0], losses
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["config"]["compile"] is True
    assert set(ckpt["model"]) == set(initial_model(TrainConfig()).state_dict())
    plain = load_model(tmp_path / "run" / "best.safetensors")
    assert plain.card.training["config"]["compile"] is True


def test_fine_tuned_weights_inherit_the_licence(tiny_data: Path, tmp_path: Path) -> None:
    init = tmp_path / "init.safetensors"
    card = ModelCard(name="meso4.init", arch="meso4", license="Apache-2.0 (test)")
    save_model(initial_model(TrainConfig()), init, card)
    result = train(tiny_data, tmp_path / "run", TrainConfig(epochs=1, init=str(init), **TINY))
    tuned = load_model(result.best_path).card
    assert tuned.license == "Apache-2.0 (test)"
    assert str(init) in tuned.description


def test_compile_falls_back_to_eager_without_a_compiler(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore")

    monkeypatch.setattr(torch, "compile", broken)
    reporter = RecordingReporter()
    config = TrainConfig(epochs=1, compile=True, **TINY)
    result = train(tiny_data, tmp_path / "run", config, reporter=reporter)
    assert result.best_path is not None
    assert any("not available here (InvalidCxxCompiler" in m for m in reporter.messages), (
        reporter.messages
    )


def test_init_from_the_authors_weights(keras_weights: Path) -> None:
    from mesonet.keras_import import convert_keras_weights

    h5 = keras_weights / "Meso4_DF.h5"
    model = initial_model(TrainConfig(init=str(h5)))
    reference = convert_keras_weights(h5)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    with pytest.raises(Exception, match="meso4"):
        initial_model(TrainConfig(arch="mesoinception4", init=str(h5)))
    # a meso4w starts from Meso-4 weights widened: the same outputs, up to 1% weight noise
    wide = initial_model(TrainConfig(arch="meso4w", init=str(h5))).eval()
    x = torch.rand(4, 3, 256, 256)
    with torch.inference_mode():
        gap = (wide.logits(x) - reference.logits(x)).abs().max()
    assert wide.arch == "meso4w" and float(gap) < 0.5


def test_cli_train_runs_and_refuses_bad_data(tiny_data: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["train", str(tiny_data), "--out", str(tmp_path / "cli"), "--epochs", "1"]
    args += ["--batch-size", "8", "--augment", "flip", "--workers", "0", "--threads", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "best epoch 1:" in result.output
    assert (tmp_path / "cli" / "best.safetensors").is_file()
    missing = runner.invoke(app, ["train", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert isinstance(missing.exception, TrainingError)
