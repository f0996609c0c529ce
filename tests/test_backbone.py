"""The ImageNet backbone (efficientnet_lite0): its weights, export, preprocessing fields,
mixed-input ensembles and the video training source."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from mesonet import Detector
from mesonet.backends import available_backends, create_scorer
from mesonet.errors import ModelError
from mesonet.models import ModelCard, create_model, load_model, read_card, save_model
from mesonet.models.efficientnet import (
    IMAGENET_SHA256,
    EfficientNetLite0,
    imagenet_weights_path,
    load_imagenet,
)
from mesonet.models.meso4 import resize_matrix
from mesonet.training.data import Sample
from mesonet.training.videos import find_video_dataset, identity_groups, split_clips
from tests.conftest import make_video

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "mesonet" / "samples"


def _crops(n: int = 4) -> torch.Tensor:
    """Real face crops (the packaged samples) as float N x 3 x 256 x 256 in [0, 1]."""
    files = sorted(SAMPLES.glob("*/*.jpg"))[:n]
    images = [cv2.resize(cv2.imread(str(f))[:, :, ::-1], (256, 256)) for f in files]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture(scope="module")
def backbone() -> EfficientNetLite0:
    """ImageNet body, a seeded head: outputs that vary from crop to crop."""
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 160)
    load_imagenet(model)
    return model.eval()


def test_imagenet_weights_match_their_digest_and_load_into_the_body(backbone):
    import hashlib

    path = imagenet_weights_path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == IMAGENET_SHA256
    state = torch.load(path, map_location="cpu", weights_only=True)
    body = backbone.features.net.state_dict()
    assert torch.equal(body["_conv_stem.weight"], state["_conv_stem.weight"])
    assert all(torch.equal(body[k], state[k]) for k in body)  # every body tensor, exactly


def test_imagenet_weights_altered_by_one_byte_are_refused(tmp_path):
    altered = tmp_path / "lite0.pth"
    shutil.copy(imagenet_weights_path(), altered)
    data = bytearray(altered.read_bytes())
    data[-100] ^= 1
    altered.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_imagenet(create_model("efficientnet_lite0"), altered)


def test_init_imagenet_is_refused_for_a_mesonet():
    from mesonet.training.config import TrainConfig
    from mesonet.training.errors import TrainingError
    from mesonet.training.loop import initial_model

    with pytest.raises(TrainingError, match="ImageNet backbone"):
        initial_model(TrainConfig(arch="meso4", init="imagenet"))


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_backbone_exports_within_1e4_of_pytorch(backbone, backend):
    if backend not in available_backends():
        pytest.skip(f"{backend} not installed")
    x = _crops()
    with torch.no_grad():
        expected = backbone.logits(x).numpy()
    assert np.ptp(expected) > 1e-3  # the crops score differently: the check means something
    got = create_scorer(backbone, backend, output="logit")(x)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_resize_matrix_is_the_antialiased_bilinear_resize():
    x = _crops(2)
    r = resize_matrix(256, 224)
    expected = nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    torch.testing.assert_close(r @ x @ r.t(), expected, atol=1e-5, rtol=0)


def test_a_224_px_model_with_mean_and_std_gets_exactly_that_tensor(tmp_path):
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    model = create_model("efficientnet_lite0", 224, mean, std)
    path = tmp_path / "m.safetensors"
    save_model(model, path, ModelCard(name="efficientnet_lite0.test", arch="x"))
    card = read_card(path)
    assert (card.input_size, card.mean, card.std) == (224, mean, std)
    loaded = load_model(path)
    seen = []
    loaded.features.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    x = _crops(2)
    with torch.no_grad():
        loaded(x)
    resized = nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(seen[0], (resized - m) / s, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mean", [0.5, 0.5], "mean must be a list of 3"),
        ("mean", [0.5, float("nan"), 0.5], "mean must be a list of 3"),
        ("std", [0.5, 0.0, 0.5], "std must be a list of 3 positive"),
        ("std", "0.5", "std must be a list of 3"),
        ("input_size", 0, "input_size must be a positive integer"),
    ],
)
def test_card_preprocessing_fields_are_validated(field, value, message):
    card = ModelCard(name="x", arch="meso4")
    setattr(card, field, value)
    with pytest.raises(ValueError, match=message):
        card.check()


def test_an_input_size_the_architecture_cannot_take_is_refused(tmp_path):
    with pytest.raises(ModelError, match="meso4 takes input sizes 256"):
        create_model("meso4", 224)
    with pytest.raises(ModelError, match="efficientnet_lite0 takes input sizes"):
        create_model("efficientnet_lite0", 100)


def test_mesonet_preprocessing_is_the_identity():
    model = create_model("meso4")
    assert model.preprocess.identity
    x = torch.rand(2, 3, 256, 256)
    assert model.preprocess(x) is x


# --------------------------------------------------------------------------- mixed ensembles


@pytest.fixture(scope="module")
def mixed_members(tmp_path_factory, backbone) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("mixed")
    meso = folder / "meso.safetensors"
    shutil.copy(_bundled("meso4.dfdc"), meso)
    lite = folder / "lite.safetensors"
    torch.manual_seed(1)
    model = create_model("efficientnet_lite0", 224)
    model.features.load_state_dict(backbone.features.state_dict())
    save_model(model, lite, ModelCard(name="efficientnet_lite0.test", arch="x"))
    return meso, lite


def _bundled(name: str) -> Path:
    from mesonet.models import bundled_models

    return bundled_models()[name]


def _video(path: Path) -> Path:
    face = cv2.imread(str(sorted(SAMPLES.glob("real/*.jpg"))[0]))[:, :, ::-1]
    frames = []
    for i in range(12):
        frame = np.full((360, 480, 3), 128, np.uint8)
        frame[90:260, 150 + 2 * i : 320 + 2 * i] = cv2.resize(face, (170, 170))
        frames.append(frame)
    return make_video(path, frames)


def _face_probabilities(detector: Detector, path: Path) -> np.ndarray:
    p = np.array([f.fake_probability for f in detector.predict(path).faces], np.float64)
    assert p.size > 0
    return p


def _logit_mean(detectors: list[Detector], path: Path) -> np.ndarray:
    """sigmoid of the mean of each detector's logits (records keep 6 decimals of p)."""
    ps = [np.clip(_face_probabilities(d, path), 1e-6, 1 - 1e-6) for d in detectors]
    z = np.mean([np.log(p / (1 - p)) for p in ps], axis=0)
    return 1 / (1 + np.exp(-z))


def test_an_ensemble_of_a_256_and_a_224_px_model_scores_their_logit_mean(mixed_members, tmp_path):
    meso, lite = mixed_members
    video = _video(tmp_path / "clip.mp4")
    image = sorted(SAMPLES.glob("df/*.jpg"))[0]
    kwargs = {"backend": "torch", "trust_unverified": True}
    both = Detector(f"{meso}+{lite}", **kwargs)
    singles = [Detector(str(m), **kwargs) for m in (meso, lite)]
    for media in (image, video):
        expected = _logit_mean(singles, media)
        np.testing.assert_allclose(_face_probabilities(both, media), expected, atol=1e-4)
    # without face detection: the whole image is the crop, every member resizes it itself
    crops = Detector(f"{meso}+{lite}", faces="none", **kwargs)
    single_crops = [Detector(str(m), faces="none", **kwargs) for m in (meso, lite)]
    expected = _logit_mean(single_crops, image)
    np.testing.assert_allclose(_face_probabilities(crops, image), expected, atol=1e-4)


# --------------------------------------------------------------------------- video source


def _write_clips(root: Path) -> None:
    """A small FF++-like video folder: two real clips, three fakes, a manifest."""
    face = cv2.imread(str(sorted(SAMPLES.glob("real/*.jpg"))[0]))[:, :, ::-1]
    clips = {
        "real/youtube__001.mp4": "001",
        "real/youtube__002.mp4": "002",
        "real/youtube__003.mp4": "003",
        "fake/Deepfakes__001_002.mp4": "001 002",
        "fake/Deepfakes__003_004.mp4": "003 004",
        "fake/Deepfakes__005_006.mp4": "005 006",
    }
    rows = ["path,label,method,identities,frames"]
    for i, (name, ids) in enumerate(clips.items()):
        frames = []
        for k in range(6):
            frame = np.full((240, 320, 3), 40 * i % 256, np.uint8)
            frame[40:210, 70 + k : 240 + k] = cv2.resize(face, (170, 170))
            frames.append(frame)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        make_video(root / name, frames)
        label = name.split("/")[0]
        rows.append(f"x/{name},{label},m,{ids},6")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")


def test_the_video_source_yields_each_clips_frames_with_its_label(tmp_path, monkeypatch):
    root = tmp_path / "clips"
    _write_clips(root)
    monkeypatch.setenv("MESONET_CACHE", str(tmp_path / "cache"))
    split = find_video_dataset(root, 0.0, 0, frames=4)
    assert split.val == []
    by_clip: dict[str, set[int]] = {}
    for s in split.train:
        by_clip.setdefault(s.path.parent.name.rsplit(".", 1)[0], set()).add(s.label)
        assert cv2.imread(str(s.path)).shape == (256, 256, 3)
    assert set(by_clip) == {p.stem for p in root.glob("*/*.mp4")}
    for clip, labels in by_clip.items():
        assert labels == ({1} if clip.startswith("Deepfakes") else {0})
    counts = {c: sum(s.path.parent.name.startswith(c + ".") for s in split.train) for c in by_clip}
    assert set(counts.values()) == {4}  # four sampled frames, a face on each
    # a second call reads the cache: same files, no detector needed
    again = find_video_dataset(root, 0.0, 0, frames=4, detector=object())
    assert [s.path for s in again.train] == [s.path for s in split.train]


def test_the_video_split_never_splits_a_clip_or_an_identity(tmp_path, monkeypatch):
    root = tmp_path / "clips"
    _write_clips(root)
    monkeypatch.setenv("MESONET_CACHE", str(tmp_path / "cache"))
    groups = {v.stem: g for v, g in identity_groups(root, sorted(root.glob("*/*.mp4"))).items()}
    # identities 001-002 link youtube__001, youtube__002 and Deepfakes__001_002; 003-004 two
    assert len(set(groups.values())) == 3
    assert groups["youtube__001"] == groups["youtube__002"] == groups["Deepfakes__001_002"]
    for seed in range(6):
        split = find_video_dataset(root, 0.3, seed, frames=4)
        train = {s.path.parent.name.rsplit(".", 1)[0] for s in split.train}
        val = {s.path.parent.name.rsplit(".", 1)[0] for s in split.val}
        assert train and val and not train & val  # no clip on both sides
        assert not {groups[c] for c in train} & {groups[c] for c in val}  # nor an identity
        assert {s.label for s in split.val} == {0, 1}


def test_split_clips_keeps_groups_whole():
    samples = [
        Sample(Path(f"/c/{clip}/{i}.png"), label)
        for clip, label in (("a.1", 0), ("b.2", 1), ("c.3", 0), ("d.4", 1))
        for i in range(3)
    ]
    groups = {"a.1": "g1", "b.2": "g1", "c.3": "g2", "d.4": "g3"}
    for seed in range(8):
        train, val = split_clips(samples, groups, 0.25, seed)
        side = {s.path.parent.name: ("t" if s in train else "v") for s in samples}
        assert side["a.1"] == side["b.2"]
        assert len(train) + len(val) == len(samples)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_a_mesonet_card_with_mean_and_std_is_honoured_by_every_engine(backend):
    if backend not in available_backends():
        pytest.skip(f"{backend} not installed")
    model = load_model("meso4.dfdc")
    shifted = create_model("meso4", None, [0.2, 0.3, 0.1], [0.5, 0.6, 0.7])
    shifted.load_state_dict(model.state_dict())
    shifted.eval()
    x = _crops()
    with torch.no_grad():
        expected = shifted.logits(x).numpy()
        assert not np.allclose(expected, model.logits(x).numpy(), atol=1e-3)
    got = create_scorer(shifted, backend, output="logit")(x)
    np.testing.assert_allclose(got, expected, atol=1e-4)
