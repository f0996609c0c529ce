"""Video folders as a training source: each clip's faces found once and cached as crops.

A source whose ``real/`` and ``fake/`` folders hold videos (``ffpp-c23-train``) becomes
labelled face crops the way prediction sees them: up to ``frames`` frames sampled evenly
from each clip, MTCNN on every frame, faces linked into tracks by the video rules
(:mod:`mesonet.video`), and the longest track's face cut by :func:`align_face` at 256 px.
The crops are written once as PNG under a cache folder keyed by the clip's sha256 and these
settings, so later runs (and resumes) read them back without decoding or detecting.

Frames of one clip are not independent: the split keeps every clip whole, and where the
folder has a ``manifest.csv`` with an ``identities`` column (FaceForensics++: a fake
``A_B`` shows B's face on A's clip), clips that share an identity stay on one side too.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2

from mesonet.media import VIDEO_EXTENSIONS, iter_video_frames, probe_video, sample_frame_indices
from mesonet.training.dataset import (
    FAKE_DIRS,
    REAL_DIRS,
    DataSplit,
    Sample,
    _child,
)
from mesonet.training.errors import DatasetError

FRAMES = 32
"""Frames sampled per clip (ffpp-c23-train's clips hold 32)."""
CACHE_VERSION = 1
"""Bumped when the crops would come out differently (detector, alignment, size)."""


def cache_root() -> Path:
    """Where cached crops go: ``$MESONET_CACHE/video-faces``, else the user cache folder."""
    base = os.environ.get("MESONET_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mesonet"
    )
    return Path(base) / "video-faces"


def _videos(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
    )


def is_video_folder(folder: Path) -> bool:
    """True when ``folder``'s ``real/`` or ``fake/`` holds videos (and so no images)."""
    dirs = [*_child(folder, REAL_DIRS), *_child(folder, FAKE_DIRS)]
    return bool(dirs) and any(_videos(d) for d in dirs)


def clips(folder: Path) -> list[tuple[Path, int]]:
    """(video, label) of a real/fake video folder; label 1 = fake."""
    found = [(p, 0) for d in _child(folder, REAL_DIRS) for p in _videos(d)]
    found += [(p, 1) for d in _child(folder, FAKE_DIRS) for p in _videos(d)]
    for name, label in (("real", 0), ("fake", 1)):
        if not any(lab == label for _, lab in found):
            raise DatasetError(f"video folder {folder} has no {name} videos")
    return found


def identity_groups(folder: Path, videos: Sequence[Path]) -> dict[Path, str]:
    """A group key per clip: clips sharing an identity (``manifest.csv``'s ``identities``,
    space-separated) share a key; without a manifest each clip is its own group."""
    parent = {v: v.stem for v in videos}
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        return parent
    by_name = {v.name: v for v in videos}
    root: dict[str, str] = {}  # union-find over identities and clip stems

    def find(x: str) -> str:
        root.setdefault(x, x)
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    with manifest.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            video = by_name.get(Path(row.get("path", "")).name)
            if video is None:
                continue
            for ident in (row.get("identities") or "").split():
                root[find("id:" + ident)] = find(video.stem)
    return {v: find(v.stem) for v in videos}


def split_clips(
    samples: Sequence[Sample], groups: dict[str, str], val_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Seeded split by group (``groups`` maps a sample's clip to its group): about
    ``val_fraction`` of the clips held out, every group whole on one side, both classes in
    validation when a class has clips in two groups or more."""
    by_group: dict[str, list[Sample]] = {}
    for s in samples:
        by_group.setdefault(groups[_clip_of(s)], []).append(s)
    keys = sorted(by_group)
    rng = random.Random(seed)
    rng.shuffle(keys)
    n_clips = len({_clip_of(s) for s in samples})
    want = max(1, round(n_clips * val_fraction))
    val_keys: list[str] = []
    held = 0
    for label in (1, 0):  # first a group holding each class, then by size
        if not any(s.label == label for k in val_keys for s in by_group[k]):
            for k in keys:
                if k not in val_keys and any(s.label == label for s in by_group[k]):
                    val_keys.append(k)
                    held += len({_clip_of(s) for s in by_group[k]})
                    break
    for k in keys:
        if held >= want:
            break
        if k not in val_keys:
            val_keys.append(k)
            held += len({_clip_of(s) for s in by_group[k]})
    if len(val_keys) == len(keys):
        raise DatasetError("too few groups of clips to hold out a validation split")
    train = [s for k in keys if k not in val_keys for s in by_group[k]]
    val = [s for k in keys if k in val_keys for s in by_group[k]]
    return train, val


def _clip_of(sample: Sample) -> str:
    """The clip a cached crop came from: its cache folder, ``<clip stem>.<sha>``."""
    return sample.path.parent.name


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def clip_faces(video: Path, out: Path, frames: int, detector) -> list[Path]:
    """Detect, track and align the faces of ``video``'s sampled frames into ``out``; the
    longest track's crop per frame, as ``<frame index>.png``. Returns the files."""
    from mesonet.faces import align_face
    from mesonet.video import link_tracks, plausible_faces

    info = probe_video(video)
    decoded = list(iter_video_frames(video, sample_frame_indices(info, frames)))
    faces = [
        plausible_faces(f, d.image.shape)
        for f, d in zip(detector.detect([d.image for d in decoded]), decoded, strict=True)
    ]
    ids = link_tracks(faces, [d.time_s for d in decoded])
    lengths: dict[int, int] = {}
    for frame_ids in ids:
        for t in frame_ids:
            lengths[t] = lengths.get(t, 0) + 1
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if lengths:
        main = max(sorted(lengths), key=lambda t: lengths[t])
        for frame, frame_faces, frame_ids in zip(decoded, faces, ids, strict=True):
            for face, t in zip(frame_faces, frame_ids, strict=True):
                if t == main:
                    crop = align_face(frame.image, face, 256)
                    name = f"{frame.index:05d}.png"
                    cv2.imwrite(str(tmp / name), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
                    written.append(out / name)
    (tmp / "done.json").write_text(json.dumps({"frames": len(decoded), "faces": len(written)}))
    tmp.replace(out)
    return written


def cached_faces(
    folder: Path,
    frames: int = FRAMES,
    cache: Path | None = None,
    progress: Callable[[int], None] | None = None,
    detector=None,
) -> tuple[list[Sample], dict[str, str]]:
    """Every clip's face crops (from the cache, or made now) and a group key per clip."""
    videos = clips(folder)
    groups = identity_groups(folder, [v for v, _ in videos])
    cache = cache or cache_root()
    samples: list[Sample] = []
    clip_groups: dict[str, str] = {}
    for video, label in videos:
        out = cache / f"v{CACHE_VERSION}-f{frames}" / f"{video.stem}.{_digest(video)[:16]}"
        if not (out / "done.json").is_file():
            if detector is None:
                from mesonet.faces import create_detector

                detector = create_detector("mtcnn")
            clip_faces(video, out, frames, detector)
        samples += [Sample(p, label) for p in sorted(out.glob("*.png"))]
        clip_groups[out.name] = groups[video]
        if progress is not None:
            progress(1)
    if not any(s.label == 0 for s in samples) or not any(s.label == 1 for s in samples):
        raise DatasetError(f"{folder}: no faces found in the real or the fake videos")
    return samples, clip_groups


def find_video_dataset(folder: Path, val_fraction: float, seed: int, **kwargs) -> DataSplit:
    """A video folder as a :class:`DataSplit` of cached face crops, split by clip group."""
    samples, groups = cached_faces(folder, **kwargs)
    n_clips = len(groups)
    details = {"clips": n_clips, "frames_per_clip": kwargs.get("frames", FRAMES)}
    if val_fraction == 0:
        return DataSplit(samples, [], "video folder, all for training", folder, details)
    train, val = split_clips(samples, groups, val_fraction, seed)
    details.update(val_fraction=val_fraction, split_seed=seed, grouped_by="clip and identity")
    return DataSplit(train, val, "video folder split by clip", folder, details)


def video_holdout(folder: Path, **kwargs) -> list[Sample]:
    """All of a video folder's cached crops, for a held-out source."""
    return cached_faces(folder, **kwargs)[0]
