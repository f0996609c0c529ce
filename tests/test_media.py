"""mesonet.media: kinds, safe image decoding, video probing, sampling and frame reading."""

from __future__ import annotations

import io
import math
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_video
from PIL import Image

from mesonet import media
from mesonet.media import (
    MediaError,
    VideoInfo,
    iter_video_frames,
    media_kind,
    probe_video,
    read_image,
    sample_frame_indices,
)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height but whose pixel data is a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _noise(h: int = 40, w: int = 60, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(array: np.ndarray, path: Path, **kwargs) -> Path:
    Image.fromarray(array).save(path, **kwargs)
    return path


# --------------------------------------------------------------------------- kinds


def test_media_kind_by_extension_and_magic(tmp_path: Path) -> None:
    png = _save(_noise(), tmp_path / "a.png")
    assert media_kind(png) == "image"
    lying = tmp_path / "really_png.mp4"
    lying.write_bytes(png.read_bytes())
    assert media_kind(lying) == "image"  # bytes beat the extension
    video = make_video(tmp_path / "v.mp4", 3)
    renamed = tmp_path / "clip.bin"
    renamed.write_bytes(video.read_bytes())
    assert media_kind(renamed) == "video"
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert media_kind(text) is None
    assert media_kind(tmp_path / "missing.MKV") == "video"  # unreadable: extension decides


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0" + b"\0" * 20, "image"),
        (b"GIF89a" + b"\0" * 20, "image"),
        (b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 8, "image"),
        (b"RIFF\0\0\0\0AVI LIST" + b"\0" * 8, "video"),
        (b"\x1a\x45\xdf\xa3" + b"\0" * 20, "video"),
        (b"\0\0\0\x18ftypqt  " + b"\0" * 8, "video"),
        (b"\0\0\0\x18ftypavif" + b"\0" * 8, "image"),
    ],
)
def test_media_kind_sniffs_signatures(tmp_path: Path, head: bytes, kind: str) -> None:
    path = tmp_path / "unknown.dat"
    path.write_bytes(head)
    assert media_kind(path) == kind


# --------------------------------------------------------------------------- images


def test_read_image_png_roundtrip(tmp_path: Path) -> None:
    pixels = _noise()
    out = read_image(_save(pixels, tmp_path / "a.png"))
    assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
    np.testing.assert_array_equal(out, pixels)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "CMYK", "I;16"])
def test_read_image_converts_modes_to_rgb(tmp_path: Path, mode: str) -> None:
    im = Image.fromarray(_noise()).convert("RGBA" if mode == "LA" else "RGB")
    if mode == "I;16":
        im = Image.fromarray((np.arange(40 * 60).reshape(40, 60) * 20).astype(np.uint16))
    else:
        im = im.convert(mode)
    suffix = ".tif" if mode == "CMYK" else ".png"
    im.save(tmp_path / f"a{suffix}")
    out = read_image(tmp_path / f"a{suffix}")
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    if mode == "I;16":  # 16-bit is scaled down, not clipped to white
        assert out.max() == (40 * 60 - 1) * 20 // 257  # 47980 / 257, not clipped to 255


def test_read_image_applies_exif_orientation(tmp_path: Path) -> None:
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _save(pixels, tmp_path / "rot.jpg", exif=exif, quality=95)
    out = read_image(path)
    assert out.shape == (40, 20, 3)
    assert out[:20].mean() > 200 and out[20:].mean() < 50  # white half is now on top


def test_read_image_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(MediaError, match="file is empty"):
        read_image(path)


def test_read_image_text_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "text.jpg"
    path.write_text("this is not an image\n" * 20)
    assert media_kind(path) == "image"
    with pytest.raises(MediaError, match="not a recognised image"):
        read_image(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_read_image_truncated(tmp_path: Path, fmt: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_noise(200, 200)).save(buffer, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(MediaError, match="truncated or corrupt"):
        read_image(path)


def test_read_image_corrupt_jpeg_body(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    with pytest.raises(MediaError):
        read_image(path)


def test_read_image_refuses_bombs_before_decoding(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(30000, 30000))  # 900 MP, over PIL's own limit too
    with pytest.raises(MediaError, match=r"900 MP, over the 100 MP limit"):
        read_image(bomb)
    big = tmp_path / "big.png"
    big.write_bytes(_png_header_only(12000, 10000))  # 120 MP: our check, not PIL's
    with pytest.raises(MediaError, match=r"12000x10000 pixels, over the 100 MP limit"):
        read_image(big)


def test_read_image_max_pixels_parameter(tmp_path: Path) -> None:
    path = _save(_noise(), tmp_path / "a.png")
    with pytest.raises(MediaError, match="60x40 pixels"):
        read_image(path, max_pixels=1000)
    assert read_image(path, max_pixels=2400).shape == (40, 60, 3)


def test_read_image_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(MediaError, match="directory"):
        read_image(tmp_path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
def test_read_image_permission_denied(tmp_path: Path) -> None:
    path = _save(_noise(), tmp_path / "locked.png")
    path.chmod(0)
    try:
        with pytest.raises(MediaError, match="permission"):
            read_image(path)
    finally:
        path.chmod(0o644)


# --------------------------------------------------------------------------- sampling


def _info(n: int, fps: float = 30.0) -> VideoInfo:
    return VideoInfo(frame_count=n, fps=fps, duration_s=n / fps, width=64, height=48)


def test_sample_evenly_centred_in_bins() -> None:
    assert sample_frame_indices(_info(100), frames=4) == [12, 37, 62, 87]
    assert sample_frame_indices(_info(10), frames=32) == list(range(10))
    picks = sample_frame_indices(_info(1000), frames=32)
    assert len(picks) == 32 == len(set(picks)) and picks == sorted(picks)
    assert 0 < picks[0] < 1000 / 32 and 1000 - 1000 / 32 < picks[-1] < 1000
    assert sample_frame_indices(_info(0)) == []


def test_sample_at_fps() -> None:
    assert sample_frame_indices(_info(90, fps=30.0), fps=10.0) == list(range(0, 90, 3))
    assert sample_frame_indices(_info(90, fps=30.0), fps=60.0) == list(range(90))
    assert sample_frame_indices(_info(10, fps=25.0), fps=2.0) == [0]
    assert sample_frame_indices(_info(100, fps=29.97), fps=1.0) == [0, 29, 59, 89]


@pytest.mark.parametrize(("frames", "fps"), [(0, None), (32, 0.0), (32, -1.0), (32, math.nan)])
def test_sample_rejects_bad_arguments(frames: int, fps: float | None) -> None:
    with pytest.raises(ValueError):
        sample_frame_indices(_info(100), frames=frames, fps=fps)


# --------------------------------------------------------------------------- videos


def test_probe_and_read_generated_video(tmp_path: Path) -> None:
    path = make_video(tmp_path / "v.mp4", 20, fps=10.0)
    info = probe_video(path)
    assert (info.frame_count, info.fps, info.width, info.height) == (20, 10.0, 64, 48)
    assert info.duration_s == pytest.approx(2.0)
    frames = list(iter_video_frames(path, [19, 0, 5, 5]))
    assert [f.index for f in frames] == [0, 5, 19]
    assert [f.time_s for f in frames] == pytest.approx([0.0, 0.5, 1.9])
    for frame in frames:
        assert frame.image.shape == (48, 64, 3) and frame.image.dtype == np.uint8
        assert abs(frame.image.mean() - 10 * frame.index) < 6  # it is the right frame


def test_iter_video_frames_max_side(tmp_path: Path) -> None:
    path = make_video(tmp_path / "v.mp4", 3, size=(160, 80))
    (frame,) = iter_video_frames(path, [1], max_side=40)
    assert frame.image.shape == (20, 40, 3)


def test_iter_video_frames_only_retrieves_wanted(tmp_path: Path, monkeypatch) -> None:
    path = make_video(tmp_path / "v.mp4", 20)
    calls = {"grab": 0, "retrieve": 0, "set": 0}

    real_capture = cv2.VideoCapture

    class Counting:  # a wrapper: subclassing the cv2 type segfaults
        def __init__(self, *args):
            self._cap = real_capture(*args)

        def __getattr__(self, name):
            return getattr(self._cap, name)

        def grab(self):
            calls["grab"] += 1
            return self._cap.grab()

        def retrieve(self, *args):
            calls["retrieve"] += 1
            return self._cap.retrieve(*args)

        def set(self, *args):
            calls["set"] += 1
            return self._cap.set(*args)

    monkeypatch.setattr(media.cv2, "VideoCapture", Counting)
    assert [f.index for f in iter_video_frames(path, [3, 7])] == [3, 7]
    assert calls == {"grab": 8, "retrieve": 2, "set": 0}  # no seeking, stops after frame 7


def test_iter_video_frames_stops_at_end_of_stream(tmp_path: Path) -> None:
    path = make_video(tmp_path / "v.mp4", 10)
    assert [f.index for f in iter_video_frames(path, [2, 9, 10, 500])] == [2, 9]
    with pytest.raises(MediaError, match="ended after 10 frames"):
        list(iter_video_frames(path, [50]))
    assert list(iter_video_frames(path, [])) == []


def _lying_avi(tmp_path: Path, real: int, claimed: int) -> Path:
    """An MJPG AVI with ``real`` frames whose headers claim ``claimed``."""
    path = make_video(tmp_path / "v.avi", real, fourcc="MJPG")
    data = bytearray(path.read_bytes())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    assert avih > 0 and strh > 0
    assert int.from_bytes(data[avih + 24 : avih + 28], "little") == real  # dwTotalFrames
    assert int.from_bytes(data[strh + 40 : strh + 44], "little") == real  # dwLength
    data[avih + 24 : avih + 28] = claimed.to_bytes(4, "little")
    data[strh + 40 : strh + 44] = claimed.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    if int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT)) != claimed:
        pytest.skip("this OpenCV build does not take the frame count from the AVI header")
    return path


def test_header_over_counting_stops_gracefully(tmp_path: Path) -> None:
    path = _lying_avi(tmp_path, real=20, claimed=40)
    info = probe_video(path)
    assert info.frame_count == 40  # plausible: trusted until the stream ends
    frames = list(iter_video_frames(path, sample_frame_indices(info, frames=8)))
    assert [f.index for f in frames] == [2, 7, 12, 17]


def test_absurd_header_count_is_replaced_by_decoded_count(tmp_path: Path) -> None:
    path = _lying_avi(tmp_path, real=20, claimed=5_000_000)
    info = probe_video(path)
    assert info.frame_count == 20
    assert len(list(iter_video_frames(path, sample_frame_indices(info, frames=32)))) == 20


def test_broken_videos_raise_media_error(tmp_path: Path) -> None:
    good = make_video(tmp_path / "v.mp4", 10)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # mp4v: moov is at the end
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "text.mp4"
    text.write_text("not a video\n" * 50)
    for path in (cut, text):
        with pytest.raises(MediaError, match="not a decodable video"):
            probe_video(path)
        with pytest.raises(MediaError, match="not a decodable video"):
            list(iter_video_frames(path, [0]))
    with pytest.raises(MediaError, match="file is empty"):
        probe_video(empty)


def test_fps_fallback_for_broken_header() -> None:
    assert media._sane_fps(0.0) == media.FALLBACK_FPS
    assert media._sane_fps(math.nan) == media.FALLBACK_FPS
    assert media._sane_fps(90000.0) == media.FALLBACK_FPS
    assert media._sane_fps(29.97) == 29.97
