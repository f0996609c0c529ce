"""Judging only what can be judged: small or blurred faces are reported with the reason and
do not decide; a file with no judged face is uncertain and says why."""

from __future__ import annotations

import numpy as np
import pytest

from mesonet import degradations as D
from mesonet.errors import MesonetError
from mesonet.faces import Face
from mesonet.inputs import sample_paths
from mesonet.judge import MIN_SHARPNESS, check_judging, sharpness, unjudged_reason
from mesonet.media import read_image
from mesonet.models.calibration import default_bands
from mesonet.pipeline.faces import FrameFaces
from mesonet.pipeline.records import Records, image_score
from mesonet.results import FaceResult


def records(**kwargs) -> Records:
    return Records("m", 0.5, 0.5, default_bands(0.5), **kwargs)


def face(x: float, side: float, conf: float = 0.99) -> Face:
    return Face(box=(x, 10.0, side, side), landmarks=(), confidence=conf)


def test_a_24_px_face_is_reported_with_its_reason_and_does_not_decide():
    frame = FrameFaces(0, 0.0, [face(0, 24), face(100, 120)], scores=[0.99, 0.10])
    frame.sharpness = [0.2, 0.2]
    result = records().image("group.jpg", frame)
    small = next(f for f in result.faces if f.box[2] == 24)
    assert not small.judged and small.not_judged == "too small: 24 px, under 40"
    assert result.fake_probability == pytest.approx(0.10)  # the judged face decides
    assert result.verdict == "likely real" and result.note is None
    assert small.to_dict(False)["not_judged"] == "too small: 24 px, under 40"


def test_a_group_photo_of_many_small_real_faces_is_uncertain_not_forged():
    sides = [22, 26, 30, 31, 28, 25, 27, 29, 24]
    frame = FrameFaces(0, 0.0, [face(40 * i, s) for i, s in enumerate(sides)])
    frame.scores = [0.993, 0.7, 0.8, 0.6, 0.9, 0.95, 0.55, 0.65, 0.75]
    frame.sharpness = [0.2] * len(sides)
    result = records().image("crowd.jpg", frame)
    assert result.status == "ok"
    assert result.verdict == "uncertain"
    assert result.note == "faces too small to judge: the largest is 31 px"
    assert result.to_dict()["note"] == result.note


def test_a_blurred_face_is_not_judged():
    frame = FrameFaces(0, 0.0, [face(0, 200)], scores=[0.97])
    frame.sharpness = [MIN_SHARPNESS / 2]
    result = records().image("portrait.jpg", frame)
    assert result.verdict == "uncertain"
    assert result.faces[0].not_judged.startswith("too blurred: sharpness 0.050")
    assert result.note.startswith("faces too blurred to judge")


def test_zero_limits_judge_every_face():
    frame = FrameFaces(0, 0.0, [face(0, 24)], scores=[0.99])
    frame.sharpness = [0.01]
    result = records(min_face_px=0, min_sharpness=0).image("x.jpg", frame)
    assert result.verdict == "likely forged" and result.faces[0].judged


def test_sharpness_falls_with_blur_and_shrinking_but_not_with_contrast():
    crop = read_image(sample_paths()[0])
    crop = np.ascontiguousarray(crop[: min(crop.shape[:2]), : min(crop.shape[:2])])
    sharp = sharpness(crop)
    blurred = sharpness(D.blur(crop, 3.0))
    shrunk = sharpness(D.downscale(crop, 32))
    assert blurred < MIN_SHARPNESS < sharp
    assert shrunk < MIN_SHARPNESS
    assert sharpness(D.contrast(crop, 0.5)) == pytest.approx(sharp, rel=0.1)


def test_image_rules():
    faces = [
        FaceResult(box=[0, 0, 200, 200], confidence=1.0, fake_probability=0.2),
        FaceResult(box=[0, 0, 50, 50], confidence=1.0, fake_probability=0.9),
    ]
    assert image_score(faces, "max") == 0.9
    assert image_score(faces, "largest") == 0.2
    weighted = image_score(faces, "weighted")
    assert 0.2 < weighted < 0.5  # the large face weighs four times as much
    with pytest.raises(MesonetError):
        check_judging(40, 0.1, "mean")
    with pytest.raises(MesonetError):
        check_judging(-1, 0.1, "max")
    assert unjudged_reason(100, None) is None


def test_predict_judge_px_makes_a_face_too_small_to_judge(capsys, monkeypatch):
    import json

    from tests.test_cli_output import main_exit

    path = str(sample_paths()[0])
    code, out, err = main_exit(
        ["predict", path, "--judge-px", "5000", "-f", "json"], capsys, monkeypatch
    )
    assert code in (0, None), err
    record = json.loads(out)[0]
    assert record["verdict"] == "uncertain"
    assert record["note"].startswith("faces too small to judge: the largest is ")
    assert record["faces"][0]["judged"] is False
