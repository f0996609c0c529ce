"""Property-based fuzzing of everything that reads untrusted bytes.

Real seeds (a small JPEG, PNG, GIF, BMP, TIFF, WebP, MP4 and AVI made here) are mutated
with bit flips, interesting integers, truncations, deletions, insertions and splices
between seeds; random bytes behind known magic numbers are tried too. The only failures
allowed are :class:`MediaError` (library), :class:`BudgetError` for videos whose header
declares frames over the analysis limits (a one-line refusal by design), and clean JSON 4xx
answers (web service).

Bounded for CI by the ``ci`` Hypothesis profile (conftest.py: 200 examples a test, about
15 s in all); ``pytest tests/test_fuzz.py --hypothesis-profile fuzz`` runs 25 times longer,
and ``--hypothesis-show-statistics`` shows how the examples ended (decoded, which error).
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
from hostile import avi_bytes, image_bytes, mp4_bytes, picture
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mesonet.budget import BudgetError
from mesonet.media import (
    MediaError,
    iter_video_frames,
    media_kind,
    probe_video,
    read_image,
    sample_frame_indices,
)
from mesonet.results import safe_text
from mesonet.serve.upload import display_name

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx`:DeprecationWarning")
TestClient = pytest.importorskip("fastapi.testclient").TestClient

SECONDS_PER_CALL = 5.0  # any one decode, probe or request of these small inputs
# Fixtures here are module-scoped, reused on purpose: each example overwrites its file.
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def seeds() -> dict[str, bytes]:
    """Small valid files of every container we read, keyed by their extension."""
    image = picture(24, 32, seed=1)
    out = {f".{fmt.lower()}": image_bytes(fmt, image) for fmt in ("PNG", "GIF", "BMP", "TIFF")}
    out[".jpg"] = image_bytes("JPEG", image)
    with contextlib.suppress(KeyError, OSError):  # Pillow without WebP
        out[".webp"] = image_bytes("WEBP", image)
    out[".mp4"] = mp4_bytes(frames=4)
    out[".avi"] = avi_bytes(frames=4)
    return out


IMAGE_SUFFIXES = (".png", ".gif", ".bmp", ".tiff", ".jpg", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi")
MAGICS = (
    b"\xff\xd8\xff\xe0",
    b"\x89PNG\r\n\x1a\n",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"RIFF\x00\x10\x00\x00WEBPVP8 ",
    b"RIFF\x00\x10\x00\x00AVI LIST",
    b"\x00\x00\x00\x18ftypmp42",
    b"\x00\x00\x00\x08moov",
    b"\x1a\x45\xdf\xa3",
    b"FLV\x01",
)
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 30_000, 0x7FFFFFFF, 0xFFFFFFFF)


def _position(draw, size: int) -> int:
    """An offset in ``0..size``, half the time within the first 600 bytes (the headers)."""
    near = st.integers(0, min(size, 600))
    return draw(st.one_of(near, st.integers(0, size)))


@st.composite
def hostile_bytes(draw, suffixes: tuple[str, ...]) -> tuple[str, bytes]:
    """(suffix, bytes): a seed of one of ``suffixes`` mutated, or junk behind a magic number."""
    pool = seeds()
    suffix = draw(st.sampled_from([s for s in suffixes if s in pool]))
    if draw(st.integers(0, 9)) == 0:
        return suffix, draw(st.sampled_from(MAGICS)) + draw(st.binary(max_size=2048))
    data = bytearray(pool[suffix])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(
            st.sampled_from(
                ["flip", "byte", "int", "truncate", "delete", "insert", "duplicate", "splice"]
            )
        )
        at = _position(draw, len(data))
        if op == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "int":
            width, order = draw(
                st.sampled_from([(2, "big"), (4, "big"), (2, "little"), (4, "little")])
            )
            value = draw(st.sampled_from(INTERESTING)) % (1 << (8 * width))
            data[at : at + width] = value.to_bytes(width, order)
        elif op == "truncate":
            del data[at:]
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 512))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 512))]
        elif op == "splice":
            other = pool[draw(st.sampled_from(sorted(pool)))]
            start = _position(draw, len(other))
            data[at:] = other[start : start + draw(st.integers(1, 4096))]
    return suffix, bytes(data)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _write(folder: Path, suffix: str, data: bytes) -> Path:
    path = folder / f"case{suffix}"
    path.write_bytes(data)
    return path


def _one_line(exc: Exception) -> str:
    message = str(exc)
    assert message and "\n" not in message, repr(message)
    return message


# --------------------------------------------------------------------------- library


@FUZZ
@given(case=hostile_bytes(IMAGE_SUFFIXES))
def test_read_image_returns_rgb_or_raises_media_error(scratch, case):
    path = _write(scratch, *case)
    start = time.monotonic()
    try:
        image = read_image(path)
    except MediaError as exc:
        event("MediaError: " + _one_line(exc).split(":")[0][:40])
    else:
        event("decoded")
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        assert image.shape[0] > 0 and image.shape[1] > 0
    assert time.monotonic() - start < SECONDS_PER_CALL


@FUZZ
@given(case=hostile_bytes(IMAGE_SUFFIXES + VIDEO_SUFFIXES), name=st.sampled_from(["x", "x.txt"]))
def test_media_kind_never_raises(scratch, case, name):
    suffix, data = case
    path = scratch / (name if name.endswith(".txt") else name + suffix)
    path.write_bytes(data)
    assert media_kind(path) in ("image", "video", None)


@FUZZ
@given(case=hostile_bytes(VIDEO_SUFFIXES), frames=st.integers(1, 6))
def test_video_reading_raises_only_media_error(scratch, case, frames):
    path = _write(scratch, *case)
    start = time.monotonic()
    try:
        info = probe_video(path)
        assert info.frame_count > 0 and math.isfinite(info.duration_s)
        assert 0 < info.fps <= 1000 and info.width > 0 and info.height > 0
        indices = sample_frame_indices(info, frames)
        got = list(iter_video_frames(path, indices, max_side=64))
        event(f"decoded {min(len(got), 3)}+ frames" if len(got) >= 3 else f"decoded {len(got)}")
        assert [f.index for f in got] == sorted({f.index for f in got})
        assert all(f.image.ndim == 3 and f.image.shape[2] == 3 for f in got)
    except MediaError as exc:
        event("MediaError: " + _one_line(exc).split("(")[0][:40])
    except BudgetError as exc:  # a header declaring frames over the frame-size limit
        event("BudgetError: " + _one_line(exc).split("(")[0][:40])
    assert time.monotonic() - start < SECONDS_PER_CALL


@FUZZ
@given(text=st.text())
def test_safe_text_is_always_encodable(text):
    out = safe_text(text)
    out.encode("utf-8")  # never raises
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return
    if re.search(r"\\(?=x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})", text):
        # a backslash that would read as an escape is written \x5c, so that no two names
        # share a record (issue 25 item 3; tests/test_scan_state.py proves it lossless)
        assert out.replace("\\x5c", "\\") == text
        return
    assert out == text


@FUZZ
@given(raw=st.text())
def test_display_name_is_a_bare_printable_name(raw):
    name = display_name(raw)
    assert name and len(name) <= 200 and "/" not in name and "\\" not in name
    assert name.isprintable()


# --------------------------------------------------------------------------- web service


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    import torch

    from mesonet.models import ModelCard, create_model, load_model, save_model
    from mesonet.pipeline import Detector
    from mesonet.serve import create_app

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fuzz-model") / "m.safetensors"
    save_model(create_model("meso4"), path, ModelCard(name="meso4.fuzz", arch="meso4"))
    model = load_model(path)
    uploads = tmp_path_factory.mktemp("fuzz-uploads")

    def factory() -> Detector:
        return Detector(model, faces="none", frames=4, backend="torch")

    with TestClient(create_app(detector_factory=factory, tmp_dir=uploads)) as test_client:
        test_client.uploads = uploads
        yield test_client


def _check_answer(client, response, allowed: set[int]) -> None:
    assert response.status_code in allowed, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if response.status_code == 200:
        assert body["status"] in ("ok", "no_face")
        p = body["fake_probability"]
        assert p is None or 0.0 <= p <= 1.0
    else:
        assert set(body) == {"detail"} and isinstance(body["detail"], str)
        assert body["detail"] and "\n" not in body["detail"]
    assert list(client.uploads.iterdir()) == [], "an upload was left behind"


@FUZZ
@given(case=hostile_bytes(IMAGE_SUFFIXES + VIDEO_SUFFIXES))
def test_detect_answers_mutated_uploads_with_json_never_500(client, case):
    suffix, data = case
    start = time.monotonic()
    response = client.post("/api/v1/detect", files={"file": (f"upload{suffix}", data)})
    assert time.monotonic() - start < SECONDS_PER_CALL
    event(f"HTTP {response.status_code}")
    _check_answer(client, response, {200, 415, 422})


def _multipart_body(boundary: bytes, fields: dict[str, str], filename: str, data: bytes) -> bytes:
    parts = [
        b"--"
        + boundary
        + b'\r\nContent-Disposition: form-data; name="'
        + k.encode()
        + b'"\r\n\r\n'
        + v.encode()
        + b"\r\n"
        for k, v in fields.items()
    ]
    parts.append(
        b"--"
        + boundary
        + b'\r\nContent-Disposition: form-data; name="file"; filename="'
        + filename.encode()
        + b'"\r\nContent-Type: image/png\r\n\r\n'
        + data
        + b"\r\n"
    )
    return b"".join(parts) + b"--" + boundary + b"--\r\n"


FIELD_VALUES = st.one_of(
    st.sampled_from(["", "1", "4", "0", "-1", "301", "1e3", "nan", "inf", "0.5", "mean", "vote"]),
    st.text(max_size=40),
)


@FUZZ
@given(
    fields=st.dictionaries(
        st.sampled_from(["frames", "threshold", "aggregate", "other"]), FIELD_VALUES, max_size=4
    ),
    mutations=st.lists(
        st.tuples(st.integers(0, 10_000), st.binary(max_size=8), st.integers(0, 8)), max_size=4
    ),
    cut=st.one_of(st.none(), st.integers(0, 10_000)),
    content_type=st.sampled_from(
        [
            "multipart/form-data; boundary=fuzz-boundary",
            "multipart/form-data; boundary=other",
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/mixed; boundary=fuzz-boundary",
            "application/json",
        ]
    ),
)
def test_detect_answers_malformed_requests_with_json_never_500(
    client, fields, mutations, cut, content_type
):
    """Form fields with odd values and multipart bodies cut and overwritten anywhere."""
    body = bytearray(_multipart_body(b"fuzz-boundary", fields, "f.png", seeds()[".png"]))
    for at, new, length in mutations:
        at %= len(body) + 1
        body[at : at + length] = new
    if cut is not None:
        del body[cut % (len(body) + 1) :]
    response = client.post(
        "/api/v1/detect", content=bytes(body), headers={"content-type": content_type}
    )
    event(f"HTTP {response.status_code}")
    _check_answer(client, response, {200, 400, 413, 415, 422})
