"""Reading images and videos: kind detection, safe decoding, frame sampling.

Everything that touches a user's file goes through here, so every way a file can be
bad (empty, truncated, lying about its type or size, unreadable) ends as a
:class:`MediaError` with a one-line reason instead of a crash deep in PIL or OpenCV.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mesonet.budget import AnalysisClock, AnalysisLimits
from mesonet.errors import MesonetError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FALLBACK_FPS",
    "IMAGE_EXTENSIONS",
    "MAX_FPS",
    "VIDEO_EXTENSIONS",
    "MediaError",
    "VideoFrame",
    "VideoInfo",
    "iter_video_frames",
    "media_kind",
    "probe_video",
    "read_image",
    "resize_max_side",
    "sample_frame_indices",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
)
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".flv", ".wmv"}
)

DEFAULT_MAX_PIXELS = 100_000_000
"""Largest image we decode (100 MP, 300 MB as RGB): bigger is almost surely a bomb."""

MAX_FPS = 1000.0
"""A frame rate above this (or 0, negative, NaN) is a broken header, not a real video."""

FALLBACK_FPS = 25.0
"""Frame rate assumed when the header's is unusable; only ``time_s`` values depend on it."""

_MAX_DURATION_S = 7 * 24 * 3600.0
"""A frame count implying more than a week of video is a lying header."""


class MediaError(MesonetError):
    """A file that cannot be used as media; ``str(err)`` is a one-line human reason."""


# --------------------------------------------------------------------------- kind


def _sniff(head: bytes) -> str | None:
    """Classify a file by its first bytes; None if the signature is unknown."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image"  # JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image"
    if head.startswith(b"BM") and len(head) >= 14:
        return "image"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image"  # TIFF
    if head.startswith(b"RIFF") and len(head) >= 12:
        form = head[8:12]
        if form == b"WEBP":
            return "image"
        if form in (b"AVI ", b"AVIX"):
            return "video"
        return None
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1"):
            return "image"  # HEIF family: still images in an MP4-style box
        return "video"  # mp4, m4v, mov (qt  ), 3gp ...
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "video"  # old QuickTime without ftyp
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video"  # Matroska / WebM (EBML)
    if head.startswith(b"FLV"):
        return "video"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "video"  # MPEG program stream / elementary stream
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "video"  # ASF / WMV
    if len(head) >= 189 and head[0] == 0x47 and head[188] == 0x47:
        return "video"  # MPEG transport stream
    return None


def media_kind(path: str | os.PathLike[str]) -> str | None:
    """Return ``'image'``, ``'video'`` or None (not media) for ``path``.

    The file's magic bytes win over its extension, so a PNG named ``.mp4`` is an image;
    when the bytes are unknown (or the file cannot be read) the extension decides, so a
    text file named ``.jpg`` is an "image" and :func:`read_image` reports why it is bad.
    """
    path = Path(path)
    head = b""
    try:
        if stat.S_ISREG(path.stat().st_mode):  # never open a FIFO or device: it may block
            with path.open("rb") as fh:
                head = fh.read(256)
    except OSError:
        pass
    kind = _sniff(head)
    if kind is not None:
        return kind
    ext = path.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None


# --------------------------------------------------------------------------- images


def _check_readable(path: Path) -> None:
    """Raise MediaError for missing, non-regular, unreadable or empty files."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise MediaError("broken symbolic link: its target does not exist") from None
        raise MediaError("file not found") from None
    except OSError as err:
        raise MediaError(f"cannot access file ({err.strerror or err})") from None
    if stat.S_ISDIR(st.st_mode):
        raise MediaError("is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise MediaError("not a regular file (a pipe, socket or device?)")
    if st.st_size == 0:
        raise MediaError("file is empty")
    if not os.access(path, os.R_OK):
        raise MediaError("permission denied: cannot read the file")


def _too_big(width: int, height: int, max_pixels: int) -> MediaError:
    return MediaError(f"image is {width}x{height} pixels, over the {max_pixels / 1e6:g} MP limit")


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    """Convert any PIL mode (L, LA, P, RGBA, CMYK, I;16, F ...) to RGB uint8 HxWx3."""
    mode = im.mode
    if mode.startswith("I") or mode == "F":
        # 16/32-bit or float grayscale: PIL's convert('RGB') clips, so scale ourselves.
        arr = np.asarray(im).astype(np.float64)
        if mode == "F" and arr.size and np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        elif arr.size and np.nanmax(arr) > 255:
            arr = arr / 257.0
        gray = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")  # avoids PIL's palette-transparency warning
    if im.mode != "RGB":
        im = im.convert("RGB")  # alpha is dropped (underlying colours kept, like cv2.imread)
    return np.asarray(im, dtype=np.uint8).copy()


_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def read_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file to an RGB uint8 array of shape (H, W, 3).

    The dimensions are checked from the header before any pixel is decoded (guarding
    decompression bombs), EXIF orientation is applied, and every mode is converted to
    RGB. Images over PIL's own bomb limit (2 x ``PIL.Image.MAX_IMAGE_PIXELS``, ~179 MP)
    are refused even if ``max_pixels`` is higher. Raises :class:`MediaError`.
    """
    path = Path(path)
    _check_readable(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Pillow's notes on broken metadata ("Corrupt EXIF data", "Tag data larger than
            # file"): the pixels still decode, and a real failure raises below.
            warnings.simplefilter("ignore", UserWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width <= 0 or height <= 0:
                    raise MediaError(f"image header declares an empty size ({width}x{height})")
                if width * height > max_pixels:
                    raise _too_big(width, height, max_pixels)
                im.load()
                # A broken EXIF block should not lose the pixels: keep them unrotated.
                with contextlib.suppress(Exception):
                    im = ImageOps.exif_transpose(im)
                return _to_rgb_array(im)
    except MediaError:
        raise
    except Image.DecompressionBombError as err:
        match = _BOMB_PIXELS.search(str(err))
        size = f"{int(match.group(1)) / 1e6:,.0f} MP" if match else "too many pixels"
        raise MediaError(
            f"image is {size}, over the {max_pixels / 1e6:g} MP limit (decompression bomb?)"
        ) from None
    except UnidentifiedImageError:
        raise MediaError("not a recognised image format (is it really an image?)") from None
    except PermissionError:
        raise MediaError("permission denied: cannot read the file") from None
    except MemoryError:
        raise MediaError("not enough memory to decode the image") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        fmt = path.suffix.lstrip(".").upper() or "file"
        raise MediaError(f"not a decodable image (truncated or corrupt {fmt}?): {detail}") from None


def resize_max_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Shrink ``image`` (area interpolation) so its longer side is at most ``max_side``."""
    if max_side is None:
        return image
    if max_side <= 0:
        raise ValueError(f"max_side must be positive, got {max_side}")
    h, w = image.shape[:2]
    longest = max(h, w)
    if longest <= max_side:
        return image
    scale = max_side / longest
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------------- videos


@dataclass
class VideoInfo:
    """What a video's header says, sanity-checked (see :func:`probe_video`)."""

    frame_count: int
    fps: float
    duration_s: float
    width: int
    height: int


@dataclass
class VideoFrame:
    """One decoded frame: its index in the stream, timestamp and RGB pixels."""

    index: int
    time_s: float
    image: np.ndarray


def _open_capture(path: Path) -> cv2.VideoCapture:
    _check_readable(path)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise MediaError("not a decodable video (unsupported codec or corrupt container?)")
    return cap


def _sane_fps(fps: float) -> float:
    return fps if math.isfinite(fps) and 0 < fps <= MAX_FPS else FALLBACK_FPS


def probe_video(
    path: str | os.PathLike[str],
    max_count_frames: int = 1_000_000,
    limits: AnalysisLimits | None = None,
    clock: AnalysisClock | None = None,
) -> VideoInfo:
    """Read a video's frame count, fps and size from its header, sanity-checked.

    An unusable fps (0, negative, NaN, over :data:`MAX_FPS`) falls back to
    :data:`FALLBACK_FPS`. A missing or absurd frame count (<= 0, over a week at that fps,
    or more frames than the file has bytes) is replaced by counting the frames that
    actually decode (at most ``max_count_frames``, ~1 ms each at 1080p). A plausible
    count that is still too high (truncated file) is handled later:
    :func:`iter_video_frames` stops at the real end.
    Raises :class:`MediaError` if the file is not a video OpenCV can open or has no
    decodable frame size, and :class:`~mesonet.budget.BudgetError` for frames over
    ``limits`` (default :class:`~mesonet.budget.AnalysisLimits`: 8.3 MP), checked from the
    header before any frame is decoded, or when counting frames overruns ``clock``.
    """
    limits = limits or AnalysisLimits()
    path = Path(path)
    cap = _open_capture(path)
    try:
        fps = _sane_fps(float(cap.get(cv2.CAP_PROP_FPS)))
        raw_count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width <= 0 or height <= 0:
            raise MediaError("video has no decodable frames (no frame size in the header)")
        limits.check_frame_size(width, height)
        size = path.stat().st_size
        implausible = (
            not math.isfinite(raw_count)
            or raw_count <= 0
            or raw_count / fps > _MAX_DURATION_S
            or raw_count > size  # under one byte per frame: no codec is that small
        )
        if implausible:
            count = 0
            while count < max_count_frames and cap.grab():
                count += 1
                if clock is not None:
                    clock.check()
            if count == 0:
                raise MediaError("video has no decodable frames")
        else:
            count = int(raw_count)
    finally:
        cap.release()
    return VideoInfo(frame_count=count, fps=fps, duration_s=count / fps, width=width, height=height)


def sample_frame_indices(info: VideoInfo, frames: int = 32, fps: float | None = None) -> list[int]:
    """Choose which frames to analyse, sorted and unique, never more than the video has.

    Without ``fps``: ``frames`` indices, one at the centre of each of ``frames`` equal
    bins covering the video (all frames if it has fewer). With ``fps``: one frame every
    ``1 / fps`` seconds starting at frame 0 (``frames`` is then ignored; every frame if
    ``fps`` is at or above the video's rate).
    """
    n = int(info.frame_count)
    if n <= 0:
        return []
    if fps is not None:
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"sampling fps must be a positive number, got {fps}")
        step = max(_sane_fps(info.fps) / fps, 1.0)
        count = math.ceil(n / step - 1e-9)
        indices = (math.floor(j * step + 1e-9) for j in range(count))
        return sorted({i for i in indices if i < n})
    if frames <= 0:
        raise ValueError(f"frames must be positive, got {frames}")
    if frames >= n:
        return list(range(n))
    return [math.floor((k + 0.5) * n / frames) for k in range(frames)]


def iter_video_frames(
    path: str | os.PathLike[str],
    indices: Iterable[int],
    max_side: int | None = None,
    limits: AnalysisLimits | None = None,
    clock: AnalysisClock | None = None,
) -> Iterator[VideoFrame]:
    """Yield the frames at ``indices`` (in stream order, duplicates dropped) as RGB.

    Walks the stream once with ``grab()`` (decode only) and converts just the wanted
    frames with ``retrieve()``: seeking costs a decode from the previous keyframe per
    frame, a sequential grab ~1 ms. Only one frame is held at a time. If the stream ends
    before the last index (a header that over-counts), iteration just stops; if not a
    single wanted frame decodes, :class:`MediaError` is raised. With ``max_side`` frames
    are shrunk so their longer side is at most that (face boxes are then in those
    pixels, not the source's). A decoded frame over ``limits`` (a header that lied about the
    size) raises :class:`~mesonet.budget.BudgetError`, and so does ``clock`` running out,
    checked after every decoded frame.
    """
    limits = limits or AnalysisLimits()
    wanted = sorted({int(i) for i in indices})
    if wanted and wanted[0] < 0:
        raise ValueError(f"frame indices must be >= 0, got {wanted[0]}")
    path = Path(path)
    cap = _open_capture(path)
    try:
        if not wanted:
            return
        fps = _sane_fps(float(cap.get(cv2.CAP_PROP_FPS)))
        position = 0  # index of the next frame grab() will decode
        yielded = 0
        for target in wanted:
            while position < target:
                if not cap.grab():
                    break
                position += 1
                if clock is not None:
                    clock.check()
            if position < target or not cap.grab():
                break  # stream ended early: the header over-counted
            position += 1
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                continue  # one corrupt frame: skip it, keep walking
            limits.check_frame_size(bgr.shape[1], bgr.shape[0])
            if clock is not None:
                clock.check()
            msec = float(cap.get(cv2.CAP_PROP_POS_MSEC))
            time_s = msec / 1000.0 if math.isfinite(msec) and msec >= 0 else target / fps
            if target > 0 and time_s == 0.0:
                time_s = target / fps  # backends that do not report timestamps
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield VideoFrame(index=target, time_s=time_s, image=resize_max_side(rgb, max_side))
            yielded += 1
        if yielded == 0:
            if position == 0:
                raise MediaError("video has no decodable frames")
            raise MediaError(
                f"video ended after {position} frames, before the first requested frame "
                f"{wanted[0]} (its header over-counts the frames?)"
            )
    finally:
        cap.release()
