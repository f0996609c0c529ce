"""The OpenVINO graphs shipped in the package (tools/build_graphs.py, make graphs) and
``mesonet export``: every graph file is the one its ``.graph.json`` names and gives its
model's eager logits to 1e-4, the int8 graph file is the very graph the int8 backend runs,
an export refuses unsafe outputs, and the shipped files are up to date."""

from __future__ import annotations

import dataclasses
import json
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mesonet.cli import app
from mesonet.export import IMAGE_INPUT, SUFFIX, VIDEO_INPUT, export_graph, graph_digest
from mesonet.inputs import sample_paths
from mesonet.models import (
    ModelCard,
    bundled_models,
    default_model_name,
    load_model,
    read_card,
    save_model,
)
from mesonet.models.sequence import is_video_card

GRAPHS = Path(str(resources.files("mesonet.models") / "graphs"))
TOOLS = Path(__file__).resolve().parents[1] / "tools"
TOLERANCE = 1e-4
WEIGHTS = {n: p for n, p in bundled_models().items() if p.suffix == ".safetensors"}
IMAGE_MODELS = sorted(n for n, p in WEIGHTS.items() if not is_video_card(read_card(p)))
VIDEO_MODELS = sorted(n for n, p in WEIGHTS.items() if is_video_card(read_card(p)))
DESCRIPTIONS = sorted(p.name for p in GRAPHS.glob("*" + SUFFIX))


def compiled(xml: Path):
    """The graph compiled for the CPU in fp32 (as the openvino backend compiles it)."""
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    return core.compile_model(core.read_model(str(xml)), "CPU", config)


def floats(crops: np.ndarray) -> np.ndarray:
    """uint8 N x 256 x 256 x 3 crops as the model's input: float32 N x 3 x 256 x 256 in [0, 1]."""
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2)).astype(np.float32) / np.float32(255)


def eager_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.logits(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    """The packaged samples as --faces none crops them, and three random uint8 crops."""
    from mesonet.faces import crop_whole
    from mesonet.media import read_image

    real = np.stack([crop_whole(read_image(p), 256, "auto") for p in sample_paths()])
    noise = np.random.default_rng(0).integers(0, 256, size=(3, 256, 256, 3), dtype=np.uint8)
    return np.concatenate([real, noise])


def trained_meso4(path: Path, seed: int = 0) -> torch.nn.Module:
    """A Meso-4 whose batch norms hold non-trivial statistics, saved at ``path``."""
    from test_backends import trained_looking

    model = trained_looking("meso4", seed)
    save_model(model, path, ModelCard(name=f"meso4.t{seed}", arch="meso4"))
    return model.eval()


# --------------------------------------------------------------------------- the shipped graphs


def test_the_package_ships_a_graph_of_every_bundled_model():
    expected = {*WEIGHTS, default_model_name()}
    assert {d.removesuffix(SUFFIX) for d in DESCRIPTIONS} == expected
    named = set(DESCRIPTIONS)
    for description in DESCRIPTIONS:
        doc = json.loads((GRAPHS / description).read_text())
        named.update(doc[k][f] for k in ("graph", "int8") if k in doc for f in ("xml", "bin"))
    assert {p.name for p in GRAPHS.iterdir()} == named  # no file left over


@pytest.mark.parametrize("description", DESCRIPTIONS)
def test_every_shipped_graph_is_the_one_its_description_names(description):
    doc = json.loads((GRAPHS / description).read_text())
    name = description.removesuffix(SUFFIX)
    card = read_card(bundled_models()[name])
    assert (doc["format"], doc["name"], doc["output"]) == (1, name, "logit")
    assert doc["card"] == dataclasses.asdict(card)
    assert doc["input"] == (VIDEO_INPUT if doc["kind"] == "video" else IMAGE_INPUT)
    if doc["kind"] == "ensemble":
        assert "graph" not in doc and "int8" in doc  # only the default's int8 ships
        assert doc["int8"]["record"]["statistics"] == card.int8["statistics"]
    else:
        assert doc["kind"] == ("video" if is_video_card(card) else "image")
        assert doc["weights_sha256"] == card.weights_sha256
    for key in ("graph", "int8"):
        if key in doc:
            entry = doc[key]
            assert graph_digest(GRAPHS / entry["xml"], GRAPHS / entry["bin"]) == entry["sha256"]


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_image_graph_gives_its_models_logits(name, crops):
    model = load_model(name)
    x = floats(crops)
    got = compiled(GRAPHS / f"{name}.xml")({0: x})[0]
    np.testing.assert_allclose(got, eager_logits(model, x), atol=TOLERANCE, rtol=0)
    assert compiled(GRAPHS / f"{name}.xml")({0: x[:1]})[0].shape == (1,)  # any batch size


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_the_video_graph_gives_the_temporal_stages_logits(name, crops):
    from mesonet.pipeline.temporal import TemporalStage

    stage = TemporalStage(load_model(name))
    rng = np.random.default_rng(1)
    windows = [
        [crops[i % len(crops)] for i in range(stage.length)],
        list(rng.integers(0, 256, size=(stage.length, 256, 256, 3), dtype=np.uint8)),
    ]
    x = np.stack([floats(np.stack(w)) for w in windows])  # 2 x T x 3 x 256 x 256
    got = compiled(GRAPHS / f"{name}.xml")({0: x})[0]
    np.testing.assert_allclose(got, stage.logits(windows), atol=TOLERANCE, rtol=0)


def test_the_int8_graph_file_is_the_one_the_int8_backend_runs(tmp_path, monkeypatch, crops):
    """Today's int8 graph, rebuilt from the bundled statistics in an empty cache, and the
    shipped file give bit-identical logits through the scorer's uint8 input."""
    import openvino as ov

    from mesonet.backends.cache import cache_root
    from mesonet.backends.int8 import int8_graph
    from mesonet.backends.openvino_engine import OpenVinoScorer

    traced = cache_root() / "openvino"  # traced fp32 graphs: shared, to skip seconds of tracing
    traced.mkdir(parents=True, exist_ok=True)
    (tmp_path / "openvino").symlink_to(traced, target_is_directory=True)
    monkeypatch.setenv("MESONET_CACHE", str(tmp_path))  # no int8 graph: rebuilt from statistics
    name = default_model_name()
    doc = json.loads((GRAPHS / f"{name}{SUFFIX}").read_text())
    today, source = int8_graph(load_model(name))
    assert source == f"cached {doc['int8']['record']['entry']}"
    shipped = GRAPHS / doc["int8"]["xml"]

    def scorer(graph):
        return OpenVinoScorer(None, 4, 1, False, graph=graph, name="openvino-int8")

    expected = scorer(today)(crops)
    got = scorer(lambda: ov.Core().read_model(str(shipped)))(crops)
    assert np.array_equal(got, expected)


# --------------------------------------------------------------------------- mesonet export


def test_export_writes_the_graph_of_a_trained_model(tmp_path, crops):
    path = tmp_path / "mine.safetensors"
    model = trained_meso4(path)
    result = CliRunner().invoke(app, ["export", str(path)])  # beside the weights
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / f"mine{SUFFIX}").read_text())
    assert doc["card"] == dataclasses.asdict(read_card(path))
    assert doc["weights_sha256"] == read_card(path).weights_sha256
    xml, bin_ = tmp_path / "mine.xml", tmp_path / "mine.bin"
    assert doc["graph"] == {"xml": xml.name, "bin": bin_.name, "sha256": graph_digest(xml, bin_)}
    x = floats(crops)
    np.testing.assert_allclose(
        compiled(xml)({0: x})[0], eager_logits(model, x), atol=TOLERANCE, rtol=0
    )


def test_export_of_an_ensemble_card_writes_its_members_graphs(tmp_path):
    for seed in (1, 2):
        trained_meso4(tmp_path / f"m{seed}.safetensors", seed)
    members = [{"model": "m1.safetensors", "weight": 1.0}, {"model": "m2.safetensors"}]
    card = ModelCard(name="mine", arch="ensemble", members=members)
    (tmp_path / "e.json").write_text(card.to_json())  # members beside it
    written = export_graph(tmp_path / "e.json", tmp_path / "out")
    doc = json.loads(written.read_text())
    assert written.name == f"e{SUFFIX}" and doc["kind"] == "ensemble"
    assert "graph" not in doc and "int8" not in doc
    assert doc["card"]["members"] == members  # as the card file names them
    for seed in (1, 2):
        member = json.loads((tmp_path / "out" / f"m{seed}{SUFFIX}").read_text())
        assert member["kind"] == "image" and member["card"]["name"] == f"meso4.t{seed}"


def mesonet(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``mesonet ARGS`` as a user runs it: (exit code, what it printed on stderr)."""
    from mesonet.cli import main

    monkeypatch.setattr("sys.argv", ["mesonet", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0), capsys.readouterr().err
    return 0, capsys.readouterr().err


def test_export_refuses_unsafe_outputs(tmp_path, monkeypatch, capsys):
    path = tmp_path / "mine.safetensors"
    trained_meso4(path)
    code, said = mesonet(monkeypatch, capsys, "export", str(path), "-o", str(path))
    assert code == 2 and "is not a folder" in said
    target = tmp_path / "elsewhere.bin"
    (tmp_path / "mine.bin").symlink_to(target)  # a planted link: never followed
    code, said = mesonet(monkeypatch, capsys, "export", str(path))
    assert code == 2 and "symbolic link" in said
    assert not target.exists() and not (tmp_path / "mine.xml").exists()  # refused before writing
    code, said = mesonet(monkeypatch, capsys, "export", str(path), "--name", "../up")
    assert code == 2 and "not a path" in said
    code, said = mesonet(monkeypatch, capsys, "export", "meso4.df+meso4.f2f")
    assert code == 2 and "export each member" in said


# --------------------------------------------------------------------------- up to date


@pytest.mark.slow
def test_the_shipped_graphs_are_up_to_date(tmp_path):
    """make graphs, run again into an empty folder, writes the same files (same OpenVINO
    and NNCF versions): a changed model, card or graph builder shows here."""
    import nncf
    import openvino as ov

    shipped = {d: json.loads((GRAPHS / d).read_text()) for d in DESCRIPTIONS}
    default = shipped[f"{default_model_name()}{SUFFIX}"]
    if (
        default["openvino"] != ov.__version__
        or default["int8"]["record"]["nncf"] != nncf.__version__
    ):
        pytest.skip("the shipped graphs were made by another OpenVINO or NNCF version")
    sys.path.insert(0, str(TOOLS))
    try:
        from build_graphs import build
    finally:
        sys.path.remove(str(TOOLS))
    build(tmp_path, log=lambda *_: None)
    rebuilt = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("*" + SUFFIX)}
    stale = sorted(d for d in shipped if shipped[d] != rebuilt.get(d))
    assert not stale and rebuilt.keys() == shipped.keys(), f"run make graphs: {stale}"
