"""Image and video degradations: the robustness benchmark's fixed list, and their random draws
for training.

One set of functions serves both. The benchmark (``mesonet evaluate --perturb``) applies a
fixed, named list (:data:`IMAGE_DEGRADATIONS`, :data:`VIDEO_DEGRADATIONS`) to every file
before detection; training (:class:`mesonet.training.augment.WildQuality`) draws the same
kinds of degradation with random strengths, so that image quality never tells real from
forged.

Image degradations take and return H x W x 3 uint8 RGB arrays. The random ones (noise) take
a NumPy generator; :func:`degrade_image` seeds it from the degradation's name, the file's key
and a seed, so a benchmark run is repeatable file by file. Video degradations re-encode a
whole file with PyAV (its wheels ship FFmpeg with libx264, MPEG-4 Part 2 and VP9).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "GROUPS",
    "IMAGE_DEGRADATIONS",
    "VIDEO_DEGRADATIONS",
    "Degradation",
    "blur",
    "contrast",
    "degrade_image",
    "degrade_video",
    "downscale",
    "gamma",
    "jpeg",
    "noise",
    "resolve",
    "webp",
]


def downscale(image: np.ndarray, side: int) -> np.ndarray:
    """The image scaled so its longer side is ``side`` px (area averaging), then back to its
    own size (bilinear): the detail a face of ``side`` px holds, at the size it had."""
    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale >= 1.0:
        return image.copy()
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    reduced = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
    return cv2.resize(reduced, (width, height), interpolation=cv2.INTER_LINEAR)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma`` px (kernel 6 sigma + 1, odd)."""
    if sigma <= 0:
        return image.copy()
    size = 2 * int(np.ceil(3 * sigma)) + 1
    return cv2.GaussianBlur(image, (size, size), sigma, borderType=cv2.BORDER_REFLECT_101)


def _encode(image: np.ndarray, ext: str, params: list[int]) -> np.ndarray:
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(ext, bgr, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {ext}")
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """A JPEG encode and decode at ``quality`` (1-100, 4:2:0 chroma)."""
    return _encode(image, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(quality)])


def webp(image: np.ndarray, quality: int) -> np.ndarray:
    """A lossy WebP encode and decode at ``quality`` (1-100)."""
    return _encode(image, ".webp", [cv2.IMWRITE_WEBP_QUALITY, int(quality)])


def noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise of standard deviation ``sigma`` (in 0-255 levels), per pixel
    and channel, clipped to 0-255."""
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def gamma(image: np.ndarray, value: float) -> np.ndarray:
    """Intensities mapped by ``(x / 255) ** value``: above 1 darker, below 1 brighter."""
    table = np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** value), 0, 255)
    return cv2.LUT(image, table.astype(np.uint8))


def contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Contrast scaled by ``factor`` about the image's mean intensity."""
    mean = float(image.mean())
    return np.clip(np.rint((image.astype(np.float32) - mean) * factor + mean), 0, 255).astype(
        np.uint8
    )


@dataclass(frozen=True)
class Degradation:
    """One named degradation of the benchmark: ``kind`` ``image`` (applied to each image
    file, or to each crop) or ``video`` (the file re-encoded); ``level`` ``moderate``,
    ``strong`` or ``other`` (the issue's targets are per level)."""

    name: str
    kind: str
    level: str
    description: str
    image: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None
    video: dict | None = None


def _img(name, level, description, fn) -> Degradation:
    return Degradation(name, "image", level, description, image=fn)


IMAGE_DEGRADATIONS: dict[str, Degradation] = {
    d.name: d
    for d in (
        _img("down32", "other", "scaled to 32 px and back", lambda x, r: downscale(x, 32)),
        _img("down48", "strong", "scaled to 48 px and back", lambda x, r: downscale(x, 48)),
        _img("down64", "other", "scaled to 64 px and back", lambda x, r: downscale(x, 64)),
        _img("down96", "moderate", "scaled to 96 px and back", lambda x, r: downscale(x, 96)),
        _img("blur1", "moderate", "Gaussian blur, sigma 1 px", lambda x, r: blur(x, 1.0)),
        _img("blur2", "strong", "Gaussian blur, sigma 2 px", lambda x, r: blur(x, 2.0)),
        _img("blur3", "other", "Gaussian blur, sigma 3 px", lambda x, r: blur(x, 3.0)),
        _img("jpeg30", "strong", "JPEG quality 30", lambda x, r: jpeg(x, 30)),
        _img("jpeg50", "moderate", "JPEG quality 50", lambda x, r: jpeg(x, 50)),
        _img("jpeg70", "other", "JPEG quality 70", lambda x, r: jpeg(x, 70)),
        _img("webp30", "other", "WebP quality 30", lambda x, r: webp(x, 30)),
        _img("noise4", "moderate", "Gaussian noise, sigma 4 levels", lambda x, r: noise(x, 4, r)),
        _img("noise8", "other", "Gaussian noise, sigma 8 levels", lambda x, r: noise(x, 8, r)),
        _img("gamma0.6", "other", "gamma 0.6 (brighter)", lambda x, r: gamma(x, 0.6)),
        _img("gamma1.6", "other", "gamma 1.6 (darker)", lambda x, r: gamma(x, 1.6)),
        _img("contrast0.5", "other", "contrast halved", lambda x, r: contrast(x, 0.5)),
    )
}

VIDEO_DEGRADATIONS: dict[str, Degradation] = {
    d.name: d
    for d in (
        Degradation(
            "h264crf30",
            "video",
            "moderate",
            "H.264 re-encode, CRF 30",
            video={"codec": "libx264", "options": {"crf": "30", "preset": "veryfast"}},
        ),
        Degradation(
            "h264crf40",
            "video",
            "other",
            "H.264 re-encode, CRF 40",
            video={"codec": "libx264", "options": {"crf": "40", "preset": "veryfast"}},
        ),
        Degradation(
            "mpeg4-150k",
            "video",
            "strong",
            "MPEG-4 Part 2 re-encode at 150 kbps",
            video={"codec": "mpeg4", "bit_rate": 150_000, "suffix": ".avi"},
        ),
        Degradation(
            "360p",
            "video",
            "other",
            "scaled to 360 lines, H.264 CRF 18",
            video={"codec": "libx264", "height": 360, "options": {"crf": "18"}},
        ),
        Degradation(
            "240p",
            "video",
            "other",
            "scaled to 240 lines, H.264 CRF 18",
            video={"codec": "libx264", "height": 240, "options": {"crf": "18"}},
        ),
    )
}

ALL = {**IMAGE_DEGRADATIONS, **VIDEO_DEGRADATIONS}
GROUPS: dict[str, tuple[str, ...]] = {
    "moderate": tuple(n for n, d in ALL.items() if d.level == "moderate"),
    "strong": tuple(n for n, d in ALL.items() if d.level == "strong"),
    "images": tuple(IMAGE_DEGRADATIONS),
    "videos": tuple(VIDEO_DEGRADATIONS),
    "all": tuple(ALL),
}


def resolve(spec: str | Sequence[str]) -> list[Degradation]:
    """Degradations named by ``spec`` ("jpeg30,blur2", a group such as "moderate", or a list
    of either), in the benchmark's order, each once. Raises ValueError naming the unknown."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    chosen: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name in GROUPS:
            chosen += GROUPS[name]
        elif name in ALL:
            chosen.append(name)
        else:
            raise ValueError(
                f"unknown degradation {name!r}: choose from {', '.join(ALL)} "
                f"or a group ({', '.join(GROUPS)})"
            )
    if not chosen:
        raise ValueError("no degradation named")
    return [ALL[n] for n in ALL if n in set(chosen)]


def _rng(name: str, key: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode()), zlib.crc32(key.encode())])


def degrade_image(image: np.ndarray, degradation: Degradation, key: str, seed: int = 0):
    """``image`` after ``degradation``; random parts drawn from (seed, name, ``key``), so the
    same file degrades the same way in every run."""
    if degradation.image is None:
        raise ValueError(f"{degradation.name} is a video degradation")
    return degradation.image(image, _rng(degradation.name, key, seed))


def degrade_video(source: str | Path, degradation: Degradation, destination: str | Path) -> Path:
    """Re-encode the video ``source`` as ``degradation`` says, into ``destination`` (its
    suffix replaced by the codec's container: .mp4, or .avi for MPEG-4 Part 2). Every frame is
    kept with its timing; audio is dropped. Returns the path written."""
    import av

    spec = degradation.video
    if spec is None:
        raise ValueError(f"{degradation.name} is an image degradation")
    destination = Path(destination).with_suffix(spec.get("suffix", ".mp4"))
    with av.open(str(source)) as src, av.open(str(destination), "w") as dst:
        stream = src.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        out = dst.add_stream(spec["codec"], rate=rate)
        height, width = stream.codec_context.height, stream.codec_context.width
        if spec.get("height") and spec["height"] < height:
            width = round(width * spec["height"] / height)
            height = spec["height"]
        out.width, out.height = width // 2 * 2, height // 2 * 2
        out.pix_fmt = "yuv420p"
        if spec.get("bit_rate"):
            out.bit_rate = spec["bit_rate"]
        if spec.get("options"):
            out.options = dict(spec["options"])
        for frame in src.decode(stream):
            image = frame.to_ndarray(format="rgb24")
            if image.shape[:2] != (out.height, out.width):
                image = cv2.resize(image, (out.width, out.height), interpolation=cv2.INTER_AREA)
            new = av.VideoFrame.from_ndarray(image, format="rgb24")
            dst.mux(out.encode(new))
        dst.mux(out.encode(None))
    return destination


CODECS = {
    # name: (encoder, decoder, option for the quality knob)
    "h264": ("libx264", "h264", "qp"),
    "mpeg4": ("mpeg4", "mpeg4", "qscale"),
    "vp9": ("libvpx-vp9", "vp9", "crf"),
}
"""Video codecs a single face can be put through (:func:`codec_roundtrip`): H.264 at a
quantiser (0-51), MPEG-4 Part 2 at a fixed qscale (2-31; 31 is what ~150 kbps forces on a
small face), VP9 at a constant rate factor (0-63)."""


def codec_roundtrip(image: np.ndarray, codec: str, quality: int, scale: float = 1.0):
    """``image`` (H x W x 3 uint8 RGB) after one encode and decode by ``codec`` (a key of
    :data:`CODECS`) at ``quality``, done at ``scale`` times its size (even sides, as 4:2:0
    needs) and scaled back: the face as a low-bitrate video leaves it."""
    import av

    encoder_name, decoder_name, knob = CODECS[codec]
    height, width = image.shape[:2]
    side_h = max(16, int(round(height * scale / 2)) * 2)
    side_w = max(16, int(round(width * scale / 2)) * 2)
    small = cv2.resize(image, (side_w, side_h), interpolation=cv2.INTER_AREA)
    encoder = av.CodecContext.create(encoder_name, "w")
    encoder.width, encoder.height, encoder.pix_fmt = side_w, side_h, "yuv420p"
    encoder.time_base = Fraction(1, 25)
    if knob == "qscale":  # MPEG-4 Part 2: a fixed quantiser through the global quality
        encoder.qscale = int(quality)  # type: ignore[attr-defined]
        options = {"qmin": str(quality), "qmax": str(quality)}
    elif knob == "crf":
        options = {"crf": str(quality), "b": "0", "deadline": "realtime", "cpu-used": "8"}
    else:
        options = {"qp": str(quality), "preset": "veryfast", "tune": "zerolatency"}
    encoder.options = options
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(small), format="rgb24")
    frame = frame.reformat(format="yuv420p")
    frame.pts = 0
    packets = [*encoder.encode(frame), *encoder.encode(None)]
    decoder = av.CodecContext.create(decoder_name, "r")
    decoded = [f for packet in [*packets, None] for f in decoder.decode(packet)]
    out = decoded[0].to_ndarray(format="rgb24")
    return cv2.resize(out, (width, height), interpolation=cv2.INTER_LINEAR)
