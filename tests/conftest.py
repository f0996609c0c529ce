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


# --------------------------------------------------------------------------- int8 tests


@pytest.fixture
def own_cache(monkeypatch, tmp_path):
    """A cache folder of the test's own (int8 graphs, compiled blobs), enabled."""
    monkeypatch.setenv("MESONET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MESONET_NO_CACHE", raising=False)


@pytest.fixture(scope="session")
def samples():
    """The four packaged sample images as 256 px crops (uint8, N x 256 x 256 x 3)."""
    import numpy as np

    from mesonet.faces import crop_whole
    from mesonet.inputs import sample_paths
    from mesonet.media import read_image

    return np.stack([crop_whole(read_image(p), 256, "auto") for p in sorted(sample_paths())])


@pytest.fixture(scope="session")
def sample_calibration(samples):
    """The samples and their mirror images: calibration crops for quantising."""
    import numpy as np

    return np.concatenate([samples, np.ascontiguousarray(samples[:, :, ::-1])])


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


# --------------------------------------------------------------------------- test tiers

SLOW_TESTS: tuple[str, ...] = (
    # 20 s or more each in a full run on 2 loaded cores (pytest --durations), together 73% of
    # the suite's time; each area keeps faster tests in the fast tier (every module of
    # src/mesonet is imported by the fast tier: checked when these were chosen)
    "tests/test_int8.py::test_auto_rebuilds_the_measured_graph_from_the_statistics_the_card_ships",
    "tests/test_int8.py::test_each_network_keeps_its_first_convolutions_and_named_members_in_fp32",
    "tests/test_int8.py::test_fp32_members_must_be_members_and_leave_one_to_quantise",
    "tests/test_int8.py::test_int8_agrees_with_fp32_on_held_out_validation_crops",
    "tests/test_int8.py::test_predict_says_the_default_runs_in_int8",
    "tests/test_int8.py::test_quantising_in_two_threads_runs_one_at_a_time_and_restores_stdout",
    "tests/test_int8.py::test_the_graph_rebuilt_from_stored_statistics_is_the_graph_measured",
    "tests/test_int8.py::test_the_record_s_fp32_members_pick_the_graph_auto_runs",
    "tests/test_ov_cache.py::test_a_damaged_cache_entry_is_converted_again",
    "tests/test_ov_cache.py::test_changed_weights_never_meet_a_cached_graph",
    "tests/test_ov_cache.py::test_the_converted_graph_is_reused_on_the_next_start",
    "tests/test_paper.py::test_frame_accuracy_within_one_point_of_the_paper",
    "tests/test_pipeline.py::test_cli_bad_model_and_usage_errors_have_no_traceback",
    "tests/test_pipeline.py::test_every_output_format[json]",
    "tests/test_plots.py::test_write_report",
    "tests/test_scan.py::test_parquet_round_trip_and_resume",
    "tests/test_scan.py::test_ray_engine_resumes_after_interruption",
    "tests/test_scan.py::test_scan_records_match_predict",
    "tests/test_serve.py::test_models_lists_the_bundled_models_and_a_request_picks_one",
    "tests/test_serve.py::test_video_with_form_options",
    "tests/test_sources.py::test_compiled_run_with_workers_finishes",
    "tests/test_sources.py::test_multi_source_run_logs_every_source",
    "tests/test_training.py::test_compiled_training_saves_plain_weights",
    "tests/test_training.py::test_resume_continues_exactly",
    "tests/test_training.py::test_signal_during_zip_extraction_leaves_nothing_behind",
    "tests/test_training.py::test_sigterm_during_training_on_a_zip_removes_the_extraction",
    "tests/test_video.py::test_a_one_frame_distractor_does_not_decide",
    "tests/test_video.py::test_every_aggregation_is_selectable_and_the_person_decides",
    # 12 s or more each in a run of the fast tier (2 loaded cores)
    "tests/test_backbone.py::test_an_ensemble_of_a_256_and_a_224_px_model_scores_their_logit_mean",
    "tests/test_compare_auc.py::test_a_better_model_is_better_in_every_resample_and_a_copy_never",
    "tests/test_evaluate.py::test_video_sweep_tool_measures_each_setting",
    "tests/test_explain.py::test_maps_of_self_blended_fakes_peak_inside_the_blend_mask",
    "tests/test_hardening4.py::test_concurrent_first_requests_wait_for_one_int8_build",
    "tests/test_int8.py::test_int8_agrees_with_fp32_on_the_samples[efficientnet_lite0.noffpp]",
    "tests/test_serve_browser.py::test_the_model_picker_changes_the_answer",
    "tests/test_video.py::test_cli_reports_tracks_and_takes_the_share",
    "tests/test_video_model.py::test_train_video_trains_a_head_on_cached_clips_and_resumes",
)
"""Tests marked ``slow`` here (a node id, or its start: a file, a test and all its cases):
``make test`` runs the rest (``pytest -m "not slow"``), ``make test-all`` everything. A test
can also carry ``@pytest.mark.slow`` itself."""


def pytest_collection_modifyitems(config, items) -> None:
    """Mark the tests named in :data:`SLOW_TESTS` slow; a name matching no test of a file
    collected whole is an error (a renamed test would otherwise drift into the fast tier)."""
    hits = dict.fromkeys(SLOW_TESTS, False)
    for item in items:
        for entry in SLOW_TESTS:
            if item.nodeid == entry or item.nodeid.startswith((entry + "[", entry + "::")):
                item.add_marker(pytest.mark.slow)
                hits[entry] = True
    if any("::" in arg for arg in config.args):
        return  # single tests asked for: the others of their files were not collected
    files = {item.nodeid.split("::")[0] for item in items}
    stale = [entry for entry, hit in hits.items() if not hit and entry.split("::")[0] in files]
    if stale:
        raise pytest.UsageError(f"tests/conftest.py SLOW_TESTS names no test: {stale}")
