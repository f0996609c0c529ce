"""The authors' Keras weights: parity with Keras, their test images, and broken files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from mesonet.cli import app
from mesonet.errors import ModelError
from mesonet.keras_import import convert_keras_weights, import_keras
from mesonet.models import load_model

REFERENCE = Path(__file__).parent / "data" / "keras_reference.json"
ARCH_OF = {"Meso4": "meso4", "MesoInception": "mesoinception4"}


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


def reference_inputs() -> dict[str, np.ndarray]:
    """The inputs tools/keras_reference.py fed the Keras models (NHWC float32)."""
    rng_inputs = [
        np.random.default_rng(s).random((4, 256, 256, 3), dtype=np.float32) for s in (0, 1)
    ]
    h, w, c = np.meshgrid(np.arange(256), np.arange(256), np.arange(3), indexing="ij")
    structured = [
        (0.5 + 0.5 * np.sin(0.05 * (h + 1) * (c + 1) + 0.03 * w * (i + 1))).astype(np.float32)
        for i in range(2)
    ]
    return {"random": np.concatenate(rng_inputs), "structured": np.stack(structured)}


def as_batch(nhwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2)))


@pytest.mark.parametrize("stem", ["Meso4_DF", "Meso4_F2F", "MesoInception_DF", "MesoInception_F2F"])
def test_converted_model_matches_keras_to_1e4(stem, keras_weights, reference):
    model = convert_keras_weights(keras_weights / f"{stem}.h5")
    assert model.arch == ARCH_OF[stem.split("_")[0]]
    expected_real = reference["models"][stem]
    for name, inputs in reference_inputs().items():
        with torch.inference_mode():
            fake = model(as_batch(inputs)).numpy().astype(np.float64)
            fake_logits = model.logits(as_batch(inputs)).numpy().astype(np.float64)
        # The authors' models give P(real); ours give P(fake) = 1 - P(real).
        np.testing.assert_allclose(fake, 1.0 - np.array(expected_real[name]), atol=1e-4, rtol=0)
        # Probabilities saturate (MesoInception's logits reach ~90): compare logits as well.
        real_logits = np.array(expected_real["logits"][name])
        np.testing.assert_allclose(-fake_logits, real_logits, rtol=1e-5, atol=1e-4)


BUNDLED = {
    "Meso4_DF": "meso4.df",
    "Meso4_F2F": "meso4.f2f",
    "MesoInception_DF": "mesoinception4.df",
    "MesoInception_F2F": "mesoinception4.f2f",
}


@pytest.mark.parametrize("stem", list(BUNDLED))
def test_bundled_authors_models_reproduce_keras_from_the_package(stem, reference):
    """No .h5 anywhere: the bundled weights alone give the Keras outputs (to 1e-4), and the
    scorer every front end uses gives them through the card's calibration."""
    from mesonet.models import bundled_models
    from mesonet.models.calibration import sigmoid
    from mesonet.scoring import create_model_scorer

    if BUNDLED[stem] not in bundled_models():
        pytest.skip(f"{BUNDLED[stem]} is not bundled in this tree")
    model = load_model(BUNDLED[stem])
    card = model.card
    assert card.license.startswith("Apache-2.0") and stem in card.description
    expected = reference["models"][stem]
    scorer = create_model_scorer(model, "torch")
    for name, inputs in reference_inputs().items():
        with torch.inference_mode():
            fake = model(as_batch(inputs)).numpy().astype(np.float64)
            fake_logits = model.logits(as_batch(inputs)).numpy().astype(np.float64)
        np.testing.assert_allclose(fake, 1.0 - np.array(expected[name]), atol=1e-4, rtol=0)
        real_logits = np.array(expected["logits"][name])
        np.testing.assert_allclose(-fake_logits, real_logits, rtol=1e-5, atol=1e-4)
        calibrated = sigmoid(-real_logits / card.calibration["temperature"])
        np.testing.assert_allclose(scorer(as_batch(inputs)), calibrated, atol=1e-4)


def test_the_authors_licence_ships_beside_their_weights():
    from importlib import resources

    folder = resources.files("mesonet.models") / "weights"
    assert "Apache License" in (folder / "LICENSE").read_text(encoding="utf-8")
    assert "Darius Afchar" in (folder / "NOTICE").read_text(encoding="utf-8")


@pytest.mark.parametrize("stem", ["Meso4_DF", "MesoInception_DF"])
def test_keras_numbers_on_the_authors_test_images(stem, keras_weights, keras_images, reference):
    """Same resize as the authors' Keras loader (nearest); the forged ones score as fake."""
    model = convert_keras_weights(keras_weights / f"{stem}.h5")
    for rel, p_real in reference["models"][stem]["test_images"].items():
        img = Image.open(keras_images / rel).convert("RGB").resize((256, 256), Image.NEAREST)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None]
        with torch.inference_mode():
            fake = float(model(x))
        assert abs(fake - (1.0 - p_real)) < 1e-4, rel
        assert (fake >= 0.5) == rel.startswith("df/"), f"{stem} misclassifies {rel}: {fake:.3f}"


def test_import_writes_a_loadable_model_with_a_card(keras_weights, tmp_path):
    card = import_keras(keras_weights / "Meso4_DF.h5", tmp_path / "m.safetensors")
    assert card.name == "meso4.df" and card.license.startswith("Apache-2.0")
    model = load_model(tmp_path / "m.safetensors")
    assert model.card.weights_sha256 == card.weights_sha256


def test_cli_import_and_wrong_arch(keras_weights, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app, ["import-keras", str(keras_weights / "MesoInception_DF.h5"), str(tmp_path / "m.st")]
    )
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "m.st").arch == "mesoinception4"
    with pytest.raises(ModelError, match="holds meso4 weights, not mesoinception4"):
        convert_keras_weights(keras_weights / "Meso4_DF.h5", arch="mesoinception4")


def test_truncated_and_foreign_files_are_one_line_errors(keras_weights, tmp_path):
    truncated = tmp_path / "truncated.h5"
    data = (keras_weights / "Meso4_DF.h5").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "text.h5"
    text.write_text("hello")
    for path in (truncated, text, tmp_path / "absent.h5"):
        with pytest.raises(ModelError) as info:
            convert_keras_weights(path)
        assert "\n" not in str(info.value)


def _write_h5(path: Path, layers: dict[str, dict[str, np.ndarray]]) -> None:
    with h5py.File(path, "w") as f:
        for name, weights in layers.items():
            for wname, value in weights.items():
                f.create_dataset(f"{name}/{name}/{wname}:0", data=value)


def test_non_mesonet_and_misshapen_h5_are_refused(keras_weights, tmp_path):
    other = tmp_path / "other.h5"
    _write_h5(other, {"dense_1": {"kernel": np.zeros((4, 2)), "bias": np.zeros(2)}})
    with pytest.raises(ModelError, match="not a MesoNet weights file"):
        convert_keras_weights(other)
    # A Meso4 file whose first conv has 6 filters instead of 8.
    misshapen = tmp_path / "misshapen.h5"
    shutil.copy(keras_weights / "Meso4_DF.h5", misshapen)
    with h5py.File(misshapen, "a") as f:
        first_conv = sorted((k for k in f if k.startswith("conv2d")), key=lambda k: int(k[7:]))[0]
        group = f[f"{first_conv}/{first_conv}"]
        del group["kernel:0"]
        group.create_dataset("kernel:0", data=np.zeros((3, 3, 3, 6), np.float32))
    with pytest.raises(ModelError, match="wrong shapes"):
        convert_keras_weights(misshapen)
