"""The robustness benchmark's degradations: deterministic, doing what their names say, and
`mesonet evaluate --perturb` reporting them."""

from __future__ import annotations

import json
import shutil

import av
import numpy as np
import pytest

from mesonet import degradations as D
from mesonet.inputs import sample_paths
from tests.test_cli_output import main_exit


def texture(side: int = 256, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def high_frequency_power(image: np.ndarray, cycles: float) -> float:
    """The image's spectral power (mean removed) above ``cycles`` per image side."""
    grey = image.astype(np.float64).mean(axis=2)
    power = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
    f = np.fft.fftfreq(grey.shape[0]) * grey.shape[0]
    radius = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    return float(power[radius > cycles].sum())


def high_frequency_share(image: np.ndarray, cycles: float) -> float:
    """Share of the image's spectral power (mean removed) above ``cycles`` per image side."""
    return high_frequency_power(image, cycles) / high_frequency_power(image, 0.0)


@pytest.mark.parametrize("name", list(D.IMAGE_DEGRADATIONS))
def test_each_image_degradation_is_deterministic_for_its_seed(name):
    degradation = D.IMAGE_DEGRADATIONS[name]
    image = texture()
    first = D.degrade_image(image, degradation, "real/a.png", seed=0)
    again = D.degrade_image(image, degradation, "real/a.png", seed=0)
    assert first.shape == image.shape and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, image), f"{name} left the image as it was"


def test_noise_depends_on_seed_and_file_and_has_its_sigma():
    image = np.full((128, 128, 3), 128, np.uint8)
    n8 = D.IMAGE_DEGRADATIONS["noise8"]
    a = D.degrade_image(image, n8, "real/a.png", seed=0)
    assert not np.array_equal(a, D.degrade_image(image, n8, "real/a.png", seed=1))
    assert not np.array_equal(a, D.degrade_image(image, n8, "real/b.png", seed=0))
    assert abs(float(a.astype(float).std()) - 8.0) < 0.3


@pytest.mark.parametrize("side", [32, 48, 64, 96])
def test_a_downscale_keeps_no_detail_above_its_size(side):
    image = texture()
    out = D.degrade_image(image, D.IMAGE_DEGRADATIONS[f"down{side}"], "k")
    nyquist = side / 2  # the finest pattern a side-px image holds: side/2 cycles
    assert high_frequency_share(image, nyquist) > 0.8
    # of the detail finer than that, under 1% is left (bilinear upscaling leaks a little)
    assert high_frequency_power(out, nyquist) < 0.01 * high_frequency_power(image, nyquist)
    # while detail coarser than it stays
    low = high_frequency_power(image, 0) - high_frequency_power(image, nyquist / 2)
    kept = high_frequency_power(out, 0) - high_frequency_power(out, nyquist / 2)
    assert kept > 0.5 * low


def test_blur_strength_grows_with_sigma_and_jpeg_with_lower_quality():
    image = texture()
    shares = [
        high_frequency_share(D.degrade_image(image, D.IMAGE_DEGRADATIONS[f"blur{s}"], "k"), 16)
        for s in (1, 2, 3)
    ]
    assert shares[0] > shares[1] > shares[2]
    errors = [
        np.abs(
            D.degrade_image(image, D.IMAGE_DEGRADATIONS[f"jpeg{q}"], "k").astype(int) - image
        ).mean()
        for q in (30, 50, 70)
    ]
    assert errors[0] > errors[1] > errors[2] > 0


def test_gamma_and_contrast():
    ramp = np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (4, 1, 3))
    bright = D.degrade_image(ramp, D.IMAGE_DEGRADATIONS["gamma0.6"], "k")
    dark = D.degrade_image(ramp, D.IMAGE_DEGRADATIONS["gamma1.6"], "k")
    assert (bright[0, 8:248, 0] > ramp[0, 8:248, 0]).all()
    assert (dark[0, 8:248, 0] < ramp[0, 8:248, 0]).all()
    flat = D.degrade_image(ramp, D.IMAGE_DEGRADATIONS["contrast0.5"], "k")
    assert abs(flat.astype(float).std() / ramp.astype(float).std() - 0.5) < 0.01


def test_names_and_groups_resolve_in_order_and_unknown_names_are_refused():
    assert [d.name for d in D.resolve("jpeg30,down48")] == ["down48", "jpeg30"]
    moderate = [d.name for d in D.resolve("moderate")]
    assert moderate == ["down96", "blur1", "jpeg50", "noise4", "h264crf30"]
    assert [d.name for d in D.resolve("strong")] == ["down48", "blur2", "jpeg30", "mpeg4-150k"]
    assert len(D.resolve("all")) == len(D.IMAGE_DEGRADATIONS) + len(D.VIDEO_DEGRADATIONS)
    with pytest.raises(ValueError, match="unknown degradation 'jpeg3'"):
        D.resolve("jpeg3")


def small_video(path, frames=20, width=320, height=240):
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(frames):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))


def decoded(path):
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(stream)]
        return stream.codec_context.name, frames


@pytest.mark.parametrize("name", list(D.VIDEO_DEGRADATIONS))
def test_each_video_degradation_re_encodes_every_frame(tmp_path, name):
    source = tmp_path / "in.mp4"
    small_video(source, height=480, width=640)
    written = D.degrade_video(source, D.VIDEO_DEGRADATIONS[name], tmp_path / "out.mp4")
    codec, frames = decoded(written)
    assert len(frames) == 20
    expected_height = {"360p": 360, "240p": 240}.get(name, 480)
    assert frames[0].shape[0] == expected_height
    assert codec == ("mpeg4" if name == "mpeg4-150k" else "h264")
    assert written.suffix == (".avi" if name == "mpeg4-150k" else ".mp4")


def test_evaluate_perturb_reports_each_degradation(tmp_path, capsys, monkeypatch):
    data = tmp_path / "set"
    for path in sample_paths():
        (data / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, data / path.parent.name / path.name)
    code, out, err = main_exit(
        ["evaluate", str(data), "--faces", "none", "--perturb", "jpeg50,down48", "-f", "json"],
        capsys,
        monkeypatch,
    )
    assert code in (0, None), err
    table = json.loads(out)
    assert list(table["rows"]) == ["none", "down48", "jpeg50"]
    for row in table["rows"].values():
        assert row["n"] == 4
        assert 0.0 <= row["false_alarm_rate"] <= 1.0 and 0.0 <= row["detection_rate"] <= 1.0
    assert table["rows"]["none"]["auc_change"] is None
    assert table["rows"]["down48"]["auc_change"] == pytest.approx(
        table["rows"]["down48"]["auc"] - table["rows"]["none"]["auc"]
    )


def test_evaluate_perturb_refuses_an_unknown_name(tmp_path, capsys, monkeypatch):
    code, out, err = main_exit(
        ["evaluate", "src/mesonet/samples", "--perturb", "jpeg3"], capsys, monkeypatch
    )
    assert code == 2
    assert "unknown degradation 'jpeg3'" in err


@pytest.mark.parametrize("codec", list(D.CODECS))
def test_one_frame_codec_roundtrip_degrades_more_at_lower_quality(codec):
    image = np.ascontiguousarray(np.repeat(np.repeat(texture(64), 4, 0), 4, 1))  # 256 px
    fine, coarse = {"h264": (20, 45), "mpeg4": (2, 31), "vp9": (10, 63)}[codec]
    good = D.codec_roundtrip(image, codec, fine, 0.5)
    bad = D.codec_roundtrip(image, codec, coarse, 0.5)
    assert good.shape == bad.shape == image.shape and bad.dtype == np.uint8
    error = [np.abs(x.astype(int) - image).mean() for x in (good, bad)]
    assert 0 < error[0] < error[1]


def test_wild_training_augment_is_repeatable_and_applies_every_kind():
    from mesonet.training.augment import WildQuality, build_augment

    image = texture()
    runs = []
    for _ in range(2):
        augment = build_augment("wild")
        augment.set_random_seed(3)
        runs.append([augment(image=image)["image"] for _ in range(5)])
    assert all(np.array_equal(a, b) for a, b in zip(*runs, strict=True))
    wild = WildQuality(p=1.0)
    kinds = set()
    for _ in range(200):
        kinds.update(kind for kind, _ in wild.get_params()["steps"])
    assert {"down", "blur", "noise", "jpeg", "webp", "h264", "mpeg4", "vp9"} <= kinds
    out = wild.apply(image, steps=[("down", 40), ("mpeg4", 31), ("scale", 0.5)], noise_seed=0)
    assert out.shape == image.shape
    assert high_frequency_power(out, 20) < 0.01 * high_frequency_power(image, 20)
