"""Clips of one face track as a video model's training data: windows and their augmentation.

A video folder's clips come from :mod:`mesonet.training.videos` (faces found once, the
longest track's aligned crops cached per clip). Here each clip is one :class:`Clip` (its
crops in frame order), split by clip and identity as the frame source is, and cut into
windows of ``length`` crops whose source frames follow each other ``step`` apart: a window
never crosses a clip, nor a gap in the track. :func:`augment_window` draws one augmentation
and applies it to every crop of a window (the same flip, zoom, colour, blur and compression),
as a video's frames share them; its compression is a real H.264 encode of the window as a
sequence, so the codec's artefacts run through time as in a compressed video.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from mesonet.training.dataset import Sample
from mesonet.training.errors import DatasetError
from mesonet.training.videos import cached_faces, split_clips


@dataclass(frozen=True)
class Clip:
    """One clip's face track: its crops (PNG files) in frame order and where they came from."""

    key: str  # the cache folder, "<clip stem>.<sha16>"
    label: int  # 1 = fake
    group: str  # clips sharing an identity share it
    paths: tuple[Path, ...]
    indices: tuple[int, ...]  # the source frame of each crop

    def load(self, start: int = 0, length: int | None = None) -> list[np.ndarray]:
        """The RGB uint8 crops ``start`` to ``start + length`` (all by default)."""
        end = len(self.paths) if length is None else start + length
        crops = []
        for path in self.paths[start:end]:
            image = cv2.imread(str(path))
            if image is None:  # changed since its digest was checked: the next run remakes it
                raise DatasetError(f"{path}: a cached face crop that cannot be read")
            crops.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        return crops


@dataclass(frozen=True)
class Window:
    """``length`` consecutive crops of one clip from position ``start``."""

    clip: Clip
    start: int
    length: int

    @property
    def paths(self) -> tuple[Path, ...]:
        return self.clip.paths[self.start : self.start + self.length]

    @property
    def indices(self) -> tuple[int, ...]:
        return self.clip.indices[self.start : self.start + self.length]

    def load(self) -> list[np.ndarray]:
        return self.clip.load(self.start, self.length)


def clips_of(samples: Sequence[Sample], groups: dict[str, str]) -> list[Clip]:
    """Cached crops (``cached_faces``' samples) gathered into clips, by cache folder."""
    by_clip: dict[str, list[Sample]] = {}
    for sample in samples:
        by_clip.setdefault(sample.path.parent.name, []).append(sample)
    clips = []
    for key in sorted(by_clip):
        members = sorted(by_clip[key], key=lambda s: int(s.path.stem))
        clips.append(
            Clip(
                key=key,
                label=members[0].label,
                group=groups[key],
                paths=tuple(s.path for s in members),
                indices=tuple(int(s.path.stem) for s in members),
            )
        )
    return clips


def video_clips(
    folder: Path, val_fraction: float, seed: int, **kwargs
) -> tuple[list[Clip], list[Clip]]:
    """A video folder's clips (faces cached as for frame training), split by clip and
    identity into (train, validation); ``val_fraction`` 0 keeps every clip for training."""
    samples, groups = cached_faces(folder, **kwargs)
    if val_fraction == 0:
        return clips_of(samples, groups), []
    train, val = split_clips(samples, groups, val_fraction, seed)
    return clips_of(train, groups), clips_of(val, groups)


def window_starts(indices: Sequence[int], length: int, step: int = 1) -> list[int]:
    """Positions where ``length`` crops follow each other ``step`` source frames apart."""
    starts = []
    run = 1  # length of the run of evenly spaced crops ending at position i
    for i in range(len(indices)):
        if i and indices[i] - indices[i - 1] == step:
            run += 1
        elif i:
            run = 1
        if run >= length:
            starts.append(i - length + 1)
    return starts


def sample_windows(
    clips: Sequence[Clip], length: int, per_clip: int, seed: int, step: int = 1
) -> list[Window]:
    """``per_clip`` windows of each clip (fewer when it has fewer positions, none when it is
    too short), at offsets drawn from ``seed`` and the clip's key, so a clip's windows do
    not depend on the other clips; in clip order, then by offset."""
    windows = []
    for clip in clips:
        starts = window_starts(clip.indices, length, step)
        if not starts:
            continue
        rng = np.random.default_rng([seed, zlib.crc32(clip.key.encode())])
        chosen = rng.choice(len(starts), size=min(per_clip, len(starts)), replace=False)
        windows += [Window(clip, starts[i], length) for i in sorted(chosen)]
    return windows


def augment_window(
    frames: Sequence[np.ndarray], rng: np.random.Generator, compress: float = 0.7
) -> list[np.ndarray]:
    """The same random augmentation on every RGB uint8 crop of a window: horizontal flip,
    zoom, rotation and shift, brightness, contrast and saturation, sometimes a blur; with
    probability ``compress`` an H.264 encode of the whole window (quantiser 23-45, the face
    at 35-100% of its size: FaceForensics++ c23 to c40)."""
    h, w = frames[0].shape[:2]
    flip = rng.random() < 0.5
    scale, angle = rng.uniform(0.9, 1.1), rng.uniform(-10, 10)
    shift = rng.uniform(-0.04, 0.04, size=2) * (w, h)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += shift
    gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    saturation = rng.uniform(0.8, 1.2)
    blur = rng.uniform(0.3, 1.2) if rng.random() < 0.2 else 0.0
    out = []
    for frame in frames:
        image = frame[:, ::-1] if flip else frame
        image = cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT_101)
        image = image.astype(np.float32) * gain + bias
        grey = image.mean(axis=2, keepdims=True)
        image = np.clip(grey + (image - grey) * saturation, 0, 255)
        if blur:
            image = cv2.GaussianBlur(image, (0, 0), blur)
        out.append(np.rint(image).astype(np.uint8))
    if rng.random() < compress:
        out = h264_window(out, int(rng.integers(23, 46)), float(rng.uniform(0.35, 1.0)))
    return out


def h264_window(frames: Sequence[np.ndarray], qp: int, scale: float = 1.0) -> list[np.ndarray]:
    """The crops of a window after one H.264 encode and decode as a video (libx264, 4:2:0,
    constant quantiser ``qp``), done at ``scale`` times their size and scaled back, so
    inter-frame prediction carries artefacts from frame to frame as a codec does."""
    height, width = frames[0].shape[:2]
    side_h = max(16, int(round(height * scale / 2)) * 2)
    side_w = max(16, int(round(width * scale / 2)) * 2)
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = side_w, side_h, "yuv420p"
    encoder.framerate = 30
    encoder.options = {"qp": str(qp), "preset": "veryfast"}
    packets = []
    for i, frame in enumerate(frames):
        small = cv2.resize(frame, (side_w, side_h), interpolation=cv2.INTER_AREA)
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(small), format="rgb24")
        picture = picture.reformat(format="yuv420p")
        picture.pts = i
        packets += encoder.encode(picture)
    packets += encoder.encode(None)
    decoder = av.CodecContext.create("h264", "r")
    decoded = [f for packet in [*packets, None] for f in decoder.decode(packet)]
    if len(decoded) != len(frames):  # never seen; the codec must give a frame per frame
        raise RuntimeError(f"H.264 round trip gave {len(decoded)} frames for {len(frames)}")
    return [
        cv2.resize(f.to_ndarray(format="rgb24"), (width, height), interpolation=cv2.INTER_LINEAR)
        for f in decoded
    ]
