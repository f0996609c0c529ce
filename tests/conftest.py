"""Shared fixtures. Data from ../shared is read in place and skipped cleanly when absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

try:  # fuzz tests (test_fuzz.py): bounded by default, longer with --hypothesis-profile fuzz
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "ci",
        max_examples=200,
        deadline=None,  # decoders' first calls are slow; the tests bound time themselves
        suppress_health_check=[HealthCheck.too_slow],
        print_blob=True,
    )
    settings.register_profile("fuzz", parent=settings.get_profile("ci"), max_examples=5000)
    settings.load_profile("ci")
except ImportError:  # hypothesis is in the dev extra
    pass


def _shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (../shared data is needed for this test)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared folder beside the project."""
    return _shared_path()


@pytest.fixture(scope="session")
def keras_weights() -> Path:
    """Folder of the authors' four Keras .h5 weight files."""
    return _shared_path("reference", "mesonet-keras", "weights")


@pytest.fixture(scope="session")
def keras_images() -> Path:
    """Folder of the authors' four test images (df/ and real/)."""
    return _shared_path("reference", "mesonet-keras", "test_images")


# --------------------------------------------------------------------------- models and media


@pytest.fixture(scope="session")
def served_model(tmp_path_factory) -> str | Path:
    """The bundled default model, or (none bundled yet) a seeded, untrained Meso-4 file."""
    import torch

    from mesonet.models import ModelCard, create_model, default_model_name, save_model

    name = default_model_name()
    if name is not None:
        return name
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("served-model") / "m.safetensors"
    save_model(create_model("meso4"), path, ModelCard(name="meso4.test", arch="meso4"))
    return path


def _face_scene(face, offset: int = 0):
    """A grey 360 x 480 RGB frame with ``face`` pasted as a 170 px square, shifted by offset."""
    import cv2
    import numpy as np

    frame = np.full((360, 480, 3), 128, np.uint8)
    x = 150 + offset
    frame[90:260, x : x + 170] = cv2.resize(face, (170, 170))
    return frame


@pytest.fixture(scope="session")
def face_media(tmp_path_factory) -> dict[str, Path]:
    """A face image (JPEG), a 1.5 s MP4 (mp4v) and a 1.5 s WebM (VP8, plays in browsers).

    Made from one real face crop of ../shared's validation set (skipped without it).
    """
    import cv2

    crops = _shared_path("datasets", "mesonet-deepfake-val", "real")
    face = cv2.cvtColor(cv2.imread(str(sorted(crops.glob("*.jpg"))[0])), cv2.COLOR_BGR2RGB)
    folder = tmp_path_factory.mktemp("face-media")
    media = {"image": folder / "face.jpg"}
    cv2.imwrite(str(media["image"]), cv2.cvtColor(_face_scene(face), cv2.COLOR_RGB2BGR))
    for key, name, fourcc in (("video", "clip.mp4", "mp4v"), ("webm", "clip.webm", "VP80")):
        media[key] = folder / name
        writer = cv2.VideoWriter(str(media[key]), cv2.VideoWriter_fourcc(*fourcc), 10.0, (480, 360))
        for i in range(15):
            writer.write(cv2.cvtColor(_face_scene(face, offset=2 * i), cv2.COLOR_RGB2BGR))
        writer.release()
    return media


# --------------------------------------------------------------------------- small videos


def make_video(
    path: str | Path,
    frames: int | list,
    fps: float = 10.0,
    size: tuple[int, int] = (64, 48),
    fourcc: str = "mp4v",
) -> Path:
    """Write a small video with OpenCV's VideoWriter and return its path.

    ``frames`` is a list of RGB uint8 arrays or a count; with a count, frame ``i`` is a
    flat grey of level ``10 * i % 256`` (a decoded frame's mean tells its index) and
    ``size`` is its (width, height).
    """
    import cv2
    import numpy as np

    path = Path(path)
    if isinstance(frames, int):
        w, h = size
        frames = [np.full((h, w, 3), (10 * i) % 256, np.uint8) for i in range(frames)]
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    if not writer.isOpened():
        pytest.skip(f"OpenCV cannot write {fourcc} video here")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


@pytest.fixture(scope="session")
def annotated_video(served_model, tmp_path_factory) -> Path:
    """A 2 s video of a packaged sample face, annotated by the detector (runs anywhere)."""
    folder = tmp_path_factory.mktemp("annotate")
    import cv2

    from mesonet.annotate import output_stem
    from mesonet.inputs import sample_paths
    from mesonet.pipeline import Detector

    face = cv2.cvtColor(cv2.imread(str(sample_paths()[-1])), cv2.COLOR_BGR2RGB)
    frame = cv2.copyMakeBorder(face, 40, 41, 60, 61, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    video = make_video(folder / "clip.mp4", [frame] * 20, fps=10.0)
    out = folder / "annotated"
    result = Detector(served_model, frames=6, annotate_dir=out).predict(video)
    assert result.status == "ok", result.error
    return out / f"{output_stem(video)}.annotated.mp4"
