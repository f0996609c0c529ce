"""The paper's table: the authors' weights, imported, on their own Deepfake validation set.

Afchar et al. (WIFS 2018) report frame accuracy 0.891 (Meso-4) and 0.917 (MesoInception-4);
ours must land within one point, through the same `mesonet evaluate` a user runs. This scores
all 7,104 faces with both models (a few minutes on 2 cores).
"""

from __future__ import annotations

import pytest

from mesonet.evaluation.runner import evaluate
from mesonet.keras_import import import_keras
from mesonet.pipeline import Detector

PAPER = {"Meso4_DF": 0.891, "MesoInception_DF": 0.917}


@pytest.mark.slow
@pytest.mark.parametrize("stem", sorted(PAPER))
def test_frame_accuracy_within_one_point_of_the_paper(stem, keras_weights, shared_dir, tmp_path):
    data = shared_dir / "datasets" / "mesonet-deepfake-val"
    if not data.is_dir():
        pytest.skip("mesonet-deepfake-val not present")
    import_keras(keras_weights / f"{stem}.h5", tmp_path / "m.safetensors")
    metrics = evaluate(Detector(tmp_path / "m.safetensors", faces="none", batch_size=128), data)
    assert metrics["n"] == 4259 + 2845
    assert metrics["skipped"] == {"no_face": 0, "error": 0}
    assert abs(metrics["accuracy"] - PAPER[stem]) <= 0.01, metrics["accuracy"]
