"""Video folders as a training source: each clip's faces found once and cached as crops.

A source whose ``real/`` and ``fake/`` folders hold videos (``ffpp-c23-train``) becomes
labelled face crops the way prediction sees them: up to ``frames`` frames sampled evenly
from each clip, MTCNN on every frame, faces linked into tracks by the video rules
(:mod:`mesonet.video`), and the longest track's face cut by :func:`align_face` at 256 px.
The crops are written once as PNG under a cache folder keyed by the clip's sha256 and these
settings, so later runs (and resumes) read them back without decoding or detecting. Each
entry's ``done.json`` lists its crops' sha256, checked whenever the entry is read: a missing,
changed or unfinished entry is made again (with a warning), and two runs that need the same
clip at once make it once (a lock file per entry).

Frames of one clip are not independent: the split keeps every clip whole, and where the
folder has a ``manifest.csv`` with an ``identities`` column (FaceForensics++: a fake
``A_B`` shows B's face on A's clip), clips that share an identity stay on one side too.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import os
import random
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from mesonet.errors import MesonetError
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
CACHE_VERSION = 2
"""Bumped when the crops would come out differently (detector, alignment, size) or the
entry's layout changes (2: ``done.json`` lists each crop's sha256)."""
DONE = "done.json"
_CROP_NAME = re.compile(r"[0-9]{5,}\.png")


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


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def entry_crops(out: Path) -> list[Path] | None:
    """The crops of the cache entry ``out``, each checked against the sha256 its
    ``done.json`` records; None when the entry is missing, unfinished or damaged (a file
    missing, changed or unlisted as a crop)."""
    try:
        done = json.loads((out / DONE).read_text(encoding="utf-8"))
        files = done["files"]
        if done.get("format") != CACHE_VERSION or not isinstance(files, dict):
            return None
        crops = []
        for name, digest in sorted(files.items()):
            if not _CROP_NAME.fullmatch(name) or file_sha256(out / name) != digest:
                return None
            crops.append(out / name)
        return crops
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def store_crops(out: Path, crops: Sequence[tuple[int, np.ndarray]], frames: int) -> list[Path]:
    """Write the RGB crops of ``(frame index, crop)`` as the cache entry ``out``: PNG files
    and a ``done.json`` listing each one's sha256, made in a new temporary folder beside it
    and renamed into place (a damaged entry there is moved aside and removed first)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        files = {}
        for index, crop in crops:
            ok, png = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            if not ok:
                raise DatasetError(f"could not encode a face crop of {out.name}")
            name = f"{index:05d}.png"
            (tmp / name).write_bytes(png.tobytes())
            files[name] = hashlib.sha256(png.tobytes()).hexdigest()
        done = {"format": CACHE_VERSION, "frames": frames, "faces": len(files), "files": files}
        (tmp / DONE).write_text(json.dumps(done), encoding="utf-8")
        if out.exists() or out.is_symlink():
            old = out.with_name(f".{out.name}.{secrets.token_hex(4)}.old")
            with contextlib.suppress(FileNotFoundError):
                os.replace(out, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after the rename; else the leftovers
    return [out / name for name in sorted(files)]


@contextlib.contextmanager
def _entry_lock(out: Path) -> Iterator[None]:
    """Hold ``<entry>.lock`` (an advisory lock across processes): two runs that need the
    same clip on an empty cache make it once, the second waiting for the first."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def clip_faces(video: Path, out: Path, frames: int, detector) -> list[Path]:
    """Detect, track and align the faces of ``video``'s sampled frames into the cache entry
    ``out``; the longest track's crop per frame, as ``<frame index>.png``. Returns the files."""
    from mesonet.faces import align_face
    from mesonet.video import link_tracks, plausible_faces

    try:
        info = probe_video(video)
        decoded = list(iter_video_frames(video, sample_frame_indices(info, frames)))
    except MesonetError as exc:
        raise DatasetError(f"{video}: {exc}") from None
    faces = [
        plausible_faces(f, d.image.shape)
        for f, d in zip(detector.detect([d.image for d in decoded]), decoded, strict=True)
    ]
    ids = link_tracks(faces, [d.time_s for d in decoded])
    lengths: dict[int, int] = {}
    for frame_ids in ids:
        for t in frame_ids:
            lengths[t] = lengths.get(t, 0) + 1
    crops = []
    if lengths:
        main = max(sorted(lengths), key=lambda t: lengths[t])
        for frame, frame_faces, frame_ids in zip(decoded, faces, ids, strict=True):
            for face, t in zip(frame_faces, frame_ids, strict=True):
                if t == main:
                    crops.append((frame.index, align_face(frame.image, face, 256)))
    return store_crops(out, crops, len(decoded))


def entry_path(video: Path, frames: int, cache: Path | None = None) -> Path:
    """The cache entry of ``video``'s crops: addressed by the cache version, the frames
    sampled and the sha256 of the video's bytes (``<stem>.<16 hex>``)."""
    cache = cache or cache_root()
    return cache / f"v{CACHE_VERSION}-f{frames}" / f"{video.stem}.{file_sha256(video)[:16]}"


def cached_faces(
    folder: Path,
    frames: int = FRAMES,
    cache: Path | None = None,
    progress: Callable[[int], None] | None = None,
    detector=None,
    warn: Callable[[str], None] = _stderr,
) -> tuple[list[Sample], dict[str, str]]:
    """Every clip's face crops (from the cache, checked against their digests, or made now:
    a damaged entry is made again, with a warning) and a group key per clip."""
    videos = clips(folder)
    groups = identity_groups(folder, [v for v, _ in videos])
    samples: list[Sample] = []
    clip_groups: dict[str, str] = {}
    for video, label in videos:
        out = entry_path(video, frames, cache)
        crops = entry_crops(out)
        if crops is None:
            with _entry_lock(out):
                crops = entry_crops(out)  # another run may have made it meanwhile
                if crops is None:
                    if out.exists():
                        warn(f"warning: the cached faces of {video} ({out}) are damaged: remade")
                    if detector is None:
                        from mesonet.faces import create_detector

                        detector = create_detector("mtcnn")
                    crops = clip_faces(video, out, frames, detector)
        samples += [Sample(p, label) for p in crops]
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
