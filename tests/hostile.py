"""A corpus of broken and hostile inputs, made on the fly (nothing binary is checked in).

:func:`make_corpus` writes every case into a folder and returns what each should give;
the seed makers (:func:`jpeg_bytes`, :func:`mp4_bytes` ...) also feed the fuzz tests.
Zips with ``../`` entries, symlinks and zip bombs (training data) are in test_training.py.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ERROR, HANDLED, ANY, NO_RECORD = "error", "handled", "any", "no_record"


@dataclass(frozen=True)
class Case:
    """One hostile input: its path relative to the corpus, what it should give, and why.

    ``expect``: ``error`` (an error record / a 4xx), ``handled`` (odd but analysable: an ok
    or no_face record), ``any`` (either, depending on the FFmpeg build), ``no_record`` (not
    an input at all, e.g. a folder). ``words``: text
    the error message contains. ``upload``: a regular file the web service can be sent.
    """

    name: str
    expect: str
    words: tuple[str, ...] = ()
    upload: bool = True


# --------------------------------------------------------------------------- seeds


def picture(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth RGB test picture (compresses like a photo, not like noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], -1)
    return np.clip(base + rng.integers(-8, 9, (h, w, 3)), 0, 255).astype(np.uint8)


def image_bytes(fmt: str, image: np.ndarray | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture() if image is None else image).save(buffer, fmt)
    return buffer.getvalue()


def jpeg_bytes(image: np.ndarray | None = None) -> bytes:
    return image_bytes("JPEG", image)


def png_bytes(image: np.ndarray | None = None) -> bytes:
    return image_bytes("PNG", image)


def video_bytes(suffix: str, fourcc: str, frames: int = 10, size=(64, 48), fps=10.0) -> bytes:
    """A small video (grey levels 10 * i) written by OpenCV, as bytes."""
    w, h = size
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "v" + suffix)
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write {fourcc} video here")
        for i in range(frames):
            writer.write(np.full((h, w, 3), (10 * i) % 256, np.uint8))
        writer.release()
        return Path(path).read_bytes()


def mp4_bytes(frames: int = 10) -> bytes:
    """MPEG-4 part 2 in MP4 (its ``moov`` index comes last, so a cut file has none)."""
    return video_bytes(".mp4", "mp4v", frames)


def avi_bytes(frames: int = 10) -> bytes:
    """Motion-JPEG in AVI: every header field at a known offset."""
    return video_bytes(".avi", "MJPG", frames)


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR declares ``width`` x ``height`` (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims ``width`` x ``height``."""
    data = bytearray(jpeg_bytes())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def patch_avi(data: bytes, *, frames: int | None = None, zero_rate: bool = False) -> bytes:
    """An AVI whose headers claim ``frames`` frames and/or a frame rate of 0."""
    out = bytearray(data)
    avih, strh = out.find(b"avih"), out.find(b"strh")
    if frames is not None:
        struct.pack_into("<I", out, avih + 8 + 16, frames)  # avih.dwTotalFrames
        struct.pack_into("<I", out, strh + 8 + 32, frames)  # strh.dwLength
    if zero_rate:
        struct.pack_into("<I", out, avih + 8, 0)  # avih.dwMicroSecPerFrame
        struct.pack_into("<I", out, strh + 8 + 24, 0)  # strh.dwRate
    return bytes(out)


def patch_mp4_timescale(data: bytes, timescale: int = 0) -> bytes:
    """An MP4 whose track header (mdhd) gives ``timescale`` ticks a second (0: no rate)."""
    out = bytearray(data)
    mdhd = out.find(b"mdhd")
    struct.pack_into(">I", out, mdhd + 4 + 12, timescale)  # version/flags, ctime, mtime
    return bytes(out)


def avi_with_frame_size(data: bytes, width: int, height: int, headers: bool = False) -> bytes:
    """An MJPG AVI whose every JPEG frame (and with ``headers`` its AVI headers too) claims
    ``width`` x ``height``: a video bomb."""
    out = bytearray(data)
    at = out.find(b"\xff\xc0")
    while at >= 0:
        struct.pack_into(">HH", out, at + 5, height, width)
        at = out.find(b"\xff\xc0", at + 2)
    if headers:
        struct.pack_into("<II", out, out.find(b"avih") + 8 + 32, width, height)  # dwWidth
        struct.pack_into("<II", out, out.find(b"strf") + 8 + 4, width, height)  # biWidth
    return bytes(out)


# --------------------------------------------------------------------------- the corpus

NON_UTF8_GOOD = b"caf\xe9-latin1.png"  # a valid PNG whose name is not UTF-8
NON_UTF8_BAD = b"broken-\xff\xfe.jpg"  # text in a .jpg whose name is not UTF-8
MARKUP_DIR, MARKUP_FILE = "[", "]markup.png"  # together: "[/]markup.png", a rich closing tag


def make_corpus(folder: str | os.PathLike[str]) -> dict[str, Case]:
    """Write the hostile corpus into ``folder`` (created) and return its cases by name.

    Names are paths relative to ``folder`` as :func:`os.walk` yields them (str, undecodable
    bytes as surrogates). The one good file is ``good.png``.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    jpeg, png, mp4, avi = jpeg_bytes(), png_bytes(), mp4_bytes(), avi_bytes()
    files: dict[str, tuple[bytes, Case]] = {}

    def add(name: str, data: bytes, expect: str, *words: str) -> None:
        files[name] = (data, Case(name, expect, words))

    add("good.png", png, HANDLED)
    add("empty.jpg", b"", ERROR, "file is empty")
    add("empty.mp4", b"", ERROR, "file is empty")
    add("truncated.jpg", jpeg[: len(jpeg) // 3], ERROR, "truncated")
    add("truncated.png", png[: len(png) // 3], ERROR, "truncated")
    add("truncated.mp4", mp4[: len(mp4) // 2], ERROR, "not a decodable video")
    add("text.jpg", b"this is not a picture\n" * 20, ERROR, "not a recognised image")
    add("bomb.png", png_header_only(30_000, 30_000), ERROR, "900 MP", "limit")
    add("bomb.jpg", jpeg_claiming(30_000, 30_000), ERROR, "limit")
    add("zero-size.png", png_header_only(0, 0), ERROR)
    add("millions-of-frames.avi", patch_avi(avi, frames=5_000_000), HANDLED)
    add("zero-fps.avi", patch_avi(avi, zero_rate=True), HANDLED)
    add("zero-timescale.mp4", patch_mp4_timescale(mp4), ANY)  # OpenCV stops after frame 0
    add("huge-frames.avi", avi_with_frame_size(avi, 30_000, 30_000), ERROR, "video")
    big = avi_with_frame_size(avi, 12_000, 10_000, headers=True)  # FFmpeg would decode these
    add("big-frames.avi", big, ERROR, "12000x10000 pixels", "limit")
    add("noise.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8, ERROR, "video")
    for name, (data, _) in files.items():
        (root / name).write_bytes(data)
    cases = {name: case for name, (_, case) in files.items()}

    # Names that are not UTF-8, and one that is rich markup once its folder is joined.
    for raw, data, case in (
        (NON_UTF8_GOOD, png, Case(os.fsdecode(NON_UTF8_GOOD), HANDLED)),
        (NON_UTF8_BAD, b"not a picture", Case(os.fsdecode(NON_UTF8_BAD), ERROR, ("image",))),
    ):
        with open(os.path.join(os.fsencode(root), raw), "wb") as fh:
            fh.write(data)
        cases[case.name] = case
    (root / MARKUP_DIR).mkdir(exist_ok=True)
    (root / MARKUP_DIR / MARKUP_FILE).write_bytes(png)
    markup = f"{MARKUP_DIR}/{MARKUP_FILE}"
    cases[markup] = Case(markup, HANDLED)

    # Paths that cannot be read as files (a root process reads anything chmod forbids).
    (root / "folder.jpg").mkdir(exist_ok=True)  # a folder with a media name: walked, empty
    cases["folder.jpg"] = Case("folder.jpg", NO_RECORD, upload=False)
    fifo = root / "fifo.jpg"  # opening it for reading would wait for a writer forever
    if hasattr(os, "mkfifo") and not fifo.exists():
        os.mkfifo(fifo)
        cases["fifo.jpg"] = Case("fifo.jpg", ERROR, ("not a regular file",), upload=False)
    links = {
        "dangling.jpg": ("no-such-target.jpg", ("broken symbolic link",)),
        "self-loop.jpg": ("self-loop.jpg", ("symbolic links",)),  # ELOOP
    }
    for name, (target, words) in links.items():
        if not (root / name).is_symlink():
            (root / name).symlink_to(target)
        cases[name] = Case(name, ERROR, words, upload=False)
    loop = root / "loop"  # a folder symlinked to its parent: a walk that follows it never ends
    if not loop.is_symlink():
        loop.symlink_to(".", target_is_directory=True)
    cases["loop"] = Case("loop", NO_RECORD, upload=False)
    return cases


def records_by_name(records: list[dict], root: str | os.PathLike[str] | None) -> dict[str, dict]:
    """Records keyed by their path relative to ``root`` (None: the paths are relative)."""
    from mesonet.results import safe_text

    prefix = "" if root is None else safe_text(str(root)).rstrip("/") + "/"
    out = {}
    for record in records:
        path = record["path"]
        assert path.startswith(prefix), path
        out[path[len(prefix) :]] = record
    return out


def expected_name(name: str) -> str:
    """How a corpus name appears in a record (undecodable bytes as \\xNN escapes)."""
    from mesonet.results import safe_text

    return safe_text(name)
