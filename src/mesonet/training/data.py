"""Training data: find the labelled images (folder or zip), split them, decode and batch them.

Accepted layouts (class folders ``real/`` and ``fake/``; the authors' ``df/`` counts as fake):

- ``DATA/train/{real,fake}`` and ``DATA/validation/{real,fake}`` (or ``val/``): splits as given;
- ``DATA/{real,fake}``: one labelled folder, split by a seeded ``val_fraction``, keeping
  frames of one video (``<video>_<frame>.jpg``) on the same side;
- a ``.zip`` holding either layout (optionally inside one top folder), extracted safely.

Images become RGB uint8 256 x 256 (resized like inference does); batches are uint8
N x 256 x 256 x 3 and turn into float32 [0, 1] N x 3 x 256 x 256 channels-last tensors in
:func:`to_model_input`, so workers ship four times fewer bytes. Label 1 means fake.
"""

from __future__ import annotations

import contextlib
import copy
import random
import re
import shutil
import signal
import stat
import threading
import zipfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mesonet.faces.align import crop_whole
from mesonet.training.errors import DatasetError
from mesonet.training.synthetic import self_blend

IMAGE_SIZE = 256
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
REAL_DIRS = ("real",)
FAKE_DIRS = ("fake", "df")
TRAIN_DIRS = ("train",)
VAL_DIRS = ("validation", "val")
_FRAME_SUFFIX = re.compile(r"^(.+)_\d+$")


@dataclass
class Sample:
    """One labelled image: ``label`` 1 = fake, 0 = real."""

    path: Path
    label: int


@dataclass
class DataSplit:
    """Training and validation samples, and how they were found (for the model card)."""

    train: list[Sample]
    val: list[Sample]
    layout: str  # "train/val folders" or "single folder split"
    root: Path
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """Counts per split and class, for logs and the model card."""

        def counts(samples: Sequence[Sample]) -> dict[str, int]:
            fake = sum(s.label for s in samples)
            return {"real": len(samples) - fake, "fake": fake, "total": len(samples)}

        return {
            "layout": self.layout,
            "train": counts(self.train),
            "val": counts(self.val),
            **self.details,
        }


# --------------------------------------------------------------------------- safe zip


ZIP_RATIO_FLOOR = 64 * 1024**2
"""Below this many bytes in all, a zip's overall compression ratio is not checked (a few
small, very compressible files are no bomb)."""
FREE_SPACE_MARGIN = 512 * 1024**2
"""Space left free on the disk after extracting a zip."""


def extract_zip(
    zip_path: str | Path,
    dest: str | Path,
    max_total_bytes: int = 20 * 1024**3,
    max_ratio: float = 200.0,
) -> Path:
    """Extract ``zip_path`` into ``dest``, refusing anything unsafe; returns ``dest``.

    Refused (with a :class:`DatasetError`, before anything is written): entries with absolute
    paths or ``..`` components, symbolic links, a name that is both a file and a folder, a
    total uncompressed size above ``max_total_bytes`` or above the free space at ``dest``,
    and entries (over 1 MiB) or whole archives (over 64 MiB) compressed more than
    ``max_ratio`` to 1 (zip bombs, however many small entries they spread over). Sizes are
    enforced again while extracting, so lying headers do not get past. On any failure,
    SIGTERM and Ctrl+C included, what was extracted is removed again.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    try:
        archive = zipfile.ZipFile(zip_path)
    except FileNotFoundError:
        raise DatasetError(f"data not found: {zip_path}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{zip_path}: not a readable zip file ({exc})") from None
    with archive:
        infos = archive.infolist()
        _check_archive(zip_path, infos, dest, max_total_bytes, max_ratio)
        made_dest = not dest.exists()
        created: list[Path] = []
        try:
            with terminate_as_exit():
                dest.mkdir(parents=True, exist_ok=True)
                _extract_entries(archive, infos, dest.resolve(), zip_path, max_total_bytes, created)
        except BaseException:
            _remove(created, dest if made_dest else None)
            raise
    return dest


def _check_archive(
    zip_path: Path,
    infos: Sequence[zipfile.ZipInfo],
    dest: Path,
    max_total_bytes: int,
    max_ratio: float,
) -> None:
    """Refuse an archive whose entries, total size or overall ratio are unsafe."""
    files: set[str] = set()
    folders: set[str] = set()
    total = packed = 0
    for info in infos:
        _check_entry(zip_path, info, max_ratio)
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if info.is_dir():
            folders.add("/".join(parts))
        else:
            files.add("/".join(parts))
        total += info.file_size
        packed += info.compress_size
    clash = sorted(files & folders)
    if clash:
        raise DatasetError(
            f"{zip_path}: entry {clash[0]!r} is both a file and a folder: the zip is malformed"
        )
    if total > max_total_bytes:
        raise DatasetError(
            f"{zip_path}: would extract to {total / 1e9:.1f} GB, over the "
            f"{max_total_bytes / 1e9:.1f} GB limit (raise max_zip_bytes if it is genuine)"
        )
    if total > ZIP_RATIO_FLOOR and total > max_ratio * max(packed, 1):
        raise DatasetError(
            f"{zip_path}: {packed / 1e6:.1f} MB would extract to {total / 1e9:.2f} GB, "
            f"compressed {total / max(packed, 1):.0f}:1 overall, over the {max_ratio:.0f}:1 "
            "limit (a zip bomb?)"
        )
    existing = next((p for p in (dest, *dest.parents) if p.exists()), Path("."))
    free = shutil.disk_usage(existing).free
    if total + FREE_SPACE_MARGIN > free:
        raise DatasetError(
            f"{zip_path}: would extract to {total / 1e9:.2f} GB, more than the "
            f"{max(free - FREE_SPACE_MARGIN, 0) / 1e9:.2f} GB free at {existing} "
            "(point TMPDIR at a larger disk, or extract it yourself)"
        )


def _extract_entries(
    archive: zipfile.ZipFile,
    infos: Sequence[zipfile.ZipInfo],
    root: Path,
    zip_path: Path,
    max_total_bytes: int,
    created: list[Path],
) -> None:
    """Write every entry under ``root``, noting each file and folder made in ``created``."""
    written = 0
    for info in infos:
        target = (root / info.filename).resolve()
        if not target.is_relative_to(root):
            raise DatasetError(f"{zip_path}: entry {info.filename!r} escapes the folder")
        folder = target if info.is_dir() else target.parent
        missing = [p for p in (folder, *folder.parents) if p.is_relative_to(root)]
        missing = [p for p in reversed(missing) if not p.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetError(f"{zip_path}: cannot extract {info.filename!r} ({exc})") from None
        created.extend(missing)
        if info.is_dir():
            continue
        created.append(target)
        written += _copy_entry(archive, info, target, zip_path, max_total_bytes - written)


def _remove(created: Sequence[Path], dest: Path | None) -> None:
    """Undo a partial extraction: the files and folders made (all of ``dest`` if we made it)."""
    if dest is not None:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for path in reversed(created):
        try:
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Within it, SIGTERM raises SystemExit (exit code 143) instead of killing the process
    outright, so ``finally`` blocks remove a partial extraction or a run's extracted data
    (Ctrl+C already raises KeyboardInterrupt). Only the main thread can set signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_entry(zip_path: Path, info: zipfile.ZipInfo, max_ratio: float) -> None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise DatasetError(
            f"{zip_path}: refusing entry {name!r} (absolute path or '..' escapes the folder)"
        )
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DatasetError(f"{zip_path}: refusing entry {name!r} (symbolic link)")
    if info.file_size > 1024**2 and info.file_size > max_ratio * max(info.compress_size, 1):
        raise DatasetError(
            f"{zip_path}: refusing entry {name!r}: compressed {info.file_size / max(info.compress_size, 1):.0f}:1, "  # noqa: E501
            f"over the {max_ratio:.0f}:1 limit (a zip bomb?)"
        )


def _copy_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, zip_path: Path, budget: int
) -> int:
    """Stream one entry to ``target``, stopping if it outgrows its header or the budget."""
    limit = min(info.file_size, budget)
    size = 0
    try:
        with archive.open(info) as src, target.open("wb") as dst:
            while chunk := src.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise DatasetError(
                        f"{zip_path}: entry {info.filename!r} is larger than its header says "
                        "or than the size limit (refusing a zip bomb)"
                    )
                dst.write(chunk)
    except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:
        raise DatasetError(f"{zip_path}: cannot extract {info.filename!r} ({exc})") from None
    return size


# --------------------------------------------------------------------------- layout


def _child(folder: Path, names: Sequence[str]) -> list[Path]:
    """Subfolders of ``folder`` whose lower-cased name is in ``names``."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.lower() in names)


def _images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def _labelled(folder: Path, what: str) -> list[Sample]:
    """Samples of a folder holding ``real/`` and ``fake/`` (or ``df/``); errors name the gap."""
    real_dirs, fake_dirs = _child(folder, REAL_DIRS), _child(folder, FAKE_DIRS)
    missing = [n for n, d in (("real/", real_dirs), ("fake/ (or df/)", fake_dirs)) if not d]
    if missing:
        raise DatasetError(f"{what} {folder} has no {' or '.join(missing)} folder")
    real = [Sample(p, 0) for d in real_dirs for p in _images(d)]
    fake = [Sample(p, 1) for d in fake_dirs for p in _images(d)]
    for name, items in (("real", real), ("fake", fake)):
        if not items:
            raise DatasetError(
                f"{what} {folder} has no {name} images "
                f"({', '.join(sorted(IMAGE_SUFFIXES))} files under its {name} folder)"
            )
    return real + fake


def _is_labelled(folder: Path) -> bool:
    return bool(_child(folder, REAL_DIRS) or _child(folder, FAKE_DIRS))


def _is_split(folder: Path) -> bool:
    return bool(_child(folder, TRAIN_DIRS))


def _video_key(path: Path) -> str:
    """Frames named ``<video>_<frame>`` share a key so a split keeps them together."""
    match = _FRAME_SUFFIX.match(path.stem)
    return f"{path.parent}/{match.group(1) if match else path.stem}"


def split_by_group(samples: Sequence[Sample], val_fraction: float, seed: int) -> tuple[list, list]:
    """Seeded split keeping each video's frames on one side, about ``val_fraction`` held out
    per class (so both splits hold both classes whenever a class has two videos or more)."""
    train: list[Sample] = []
    val: list[Sample] = []
    rng = random.Random(seed)
    for label in (0, 1):
        groups: dict[str, list[Sample]] = {}
        for s in samples:
            if s.label == label:
                groups.setdefault(_video_key(s.path), []).append(s)
        keys = sorted(groups)
        rng.shuffle(keys)
        n_val = min(max(1, round(len(keys) * val_fraction)), len(keys) - 1) if keys else 0
        for i, key in enumerate(keys):
            (val if i < n_val else train).extend(groups[key])
    return train, val


def _locate(root: Path) -> Path:
    """The folder under ``root`` that holds the layout (a zip often wraps it in one top folder)."""
    if not root.exists():
        raise DatasetError(f"data not found: {root}")
    if not root.is_dir():
        raise DatasetError(f"{root}: expected a folder or a .zip of one")
    folder = root
    while not (_is_split(folder) or _is_labelled(folder)):
        subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))]
        if len(subdirs) != 1:
            raise DatasetError(
                f"{root}: no training data found: expected train/ and validation/ (or val/) "
                "folders, or real/ and fake/ folders"
            )
        folder = subdirs[0]
    return folder


def _val_dir(folder: Path) -> Path:
    val_dirs = _child(folder, VAL_DIRS)
    if not val_dirs:
        raise DatasetError(
            f"{folder} has train/ but no validation/ (or val/) folder; add one, or pass "
            "a single folder with real/ and fake/ to split it by val_fraction"
        )
    return val_dirs[0]


def find_dataset(root: str | Path, val_fraction: float = 0.1, seed: int = 0) -> DataSplit:
    """Labelled training and validation samples of an (already extracted) data folder.

    A single real/fake folder is split by ``val_fraction``; 0 puts all of it in training.
    """
    folder = _locate(Path(root))
    if _is_split(folder):
        val_dir = _val_dir(folder)
        train = _labelled(_child(folder, TRAIN_DIRS)[0], "training folder")
        val = _labelled(val_dir, "validation folder")
        return DataSplit(train, val, "train/val folders", folder)
    samples = _labelled(folder, "data folder")
    if val_fraction == 0:
        return DataSplit(samples, [], "single folder, all for training", folder)
    train, val = split_by_group(samples, val_fraction, seed)
    if not {s.label for s in train} == {s.label for s in val} == {0, 1}:
        raise DatasetError(
            f"{folder}: too few videos per class to hold out a validation split with both "
            "classes; add images or give train/ and validation/ folders"
        )
    details = {"val_fraction": val_fraction, "split_seed": seed, "grouped_by": "video name"}
    return DataSplit(train, val, "single folder split", folder, details)


def find_holdout(root: str | Path) -> list[Sample]:
    """Samples of a validation-only source: all of a real/fake folder, or the validation split
    of a train/val layout (its training split is never read)."""
    folder = _locate(Path(root))
    if _is_split(folder):
        return _labelled(_val_dir(folder), "validation folder")
    return _labelled(folder, "data folder")


def subsample(samples: Sequence[Sample], limit: int, seed: int) -> list[Sample]:
    """A seeded random subset of ``limit`` samples keeping the class proportions (0 = all)."""
    if not limit or limit >= len(samples):
        return list(samples)
    rng = random.Random(seed)
    out: list[Sample] = []
    for label in (0, 1):
        group = [s for s in samples if s.label == label]
        share = max(1, round(limit * len(group) / len(samples)))
        out.extend(rng.sample(group, min(share, len(group))))
    return out


# --------------------------------------------------------------------------- decoding


def read_face(path: str | Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """An image file as RGB uint8 ``size`` x ``size`` x 3, resized as inference resizes crops."""
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DatasetError(f"{path}: not a readable image")
    return crop_whole(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), size)


class FaceDataset(Dataset):
    """Labelled face crops as uint8 RGB 256 x 256, augmented when ``augment`` is given.

    With ``cache``, decoded images are kept in one array, so only the first read of each image
    pays for JPEG decoding; :meth:`preload` fills it up front with a thread pool.
    With ``synthetic``, index ``len(self) + i`` is a self-blended fake made from image ``i``
    (see :mod:`mesonet.training.synthetic`), labelled fake.
    :meth:`make_batch` with a seed is deterministic whichever thread runs it.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        augment: Callable[..., Any] | None = None,
        cache: bool = True,
        synthetic: bool = False,
    ) -> None:
        if not samples:
            raise DatasetError("no images to train or validate on")
        self.samples = list(samples)
        self.labels = np.array([s.label for s in self.samples], dtype=np.float32)
        self.augment = augment
        self.synthetic = synthetic
        self._rng = np.random.default_rng(0)
        self._local = threading.local()
        self._cache: np.ndarray | None = None
        self._cached: np.ndarray | None = None
        if cache:
            self._cache = np.empty((len(self.samples), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
            self._cached = np.zeros(len(self.samples), dtype=bool)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def fully_cached(self) -> bool:
        return self._cached is not None and bool(self._cached.all())

    def preload(self, threads: int = 2, progress: Callable[[int], None] | None = None) -> None:
        """Decode every image into the cache now (no-op without a cache)."""
        if self._cache is None or self._cached is None:
            return
        todo = np.flatnonzero(~self._cached).tolist()
        with ThreadPoolExecutor(max(1, threads)) as pool:
            for i, image in zip(todo, pool.map(self._read, todo), strict=True):
                self._cache[i] = image
                self._cached[i] = True
                if progress is not None:
                    progress(1)

    def _read(self, index: int) -> np.ndarray:
        return read_face(self.samples[index].path)

    def image(self, index: int) -> np.ndarray:
        """The decoded, un-augmented image ``index``."""
        if self._cache is None or self._cached is None:
            return self._read(index)
        if not self._cached[index]:
            self._cache[index] = self._read(index)
            self._cached[index] = True
        return self._cache[index]

    def label(self, index: int) -> float:
        """1.0 for fakes (synthetic ones included), 0.0 for real images."""
        return 1.0 if index >= len(self.samples) else float(self.labels[index])

    def reseed(self, seed: int) -> None:
        """Seed the augmentation's own generators (albumentations ignores numpy's global one)."""
        self._rng = np.random.default_rng(seed % 2**32)
        if self.augment is not None and hasattr(self.augment, "set_random_seed"):
            self.augment.set_random_seed(seed % 2**32)

    def _sample(
        self, index: int, augment: Callable[..., Any] | None, rng: np.random.Generator
    ) -> np.ndarray:
        n = len(self.samples)
        if index >= n:
            if not self.synthetic:
                raise IndexError(f"index {index} out of range for {n} images")
            image = self_blend(self.image(index - n), rng)[0]
        else:
            image = self.image(index)
        return augment(image=image)["image"] if augment is not None else image

    def __getitem__(self, index: int) -> tuple[np.ndarray, float]:
        return self._sample(index, self.augment, self._rng), self.label(index)

    def _thread_augment(self) -> Callable[..., Any] | None:
        """This thread's own copy of the augmentation (albumentations keeps state per call)."""
        if self.augment is None:
            return None
        if getattr(self._local, "augment", None) is None:
            self._local.augment = copy.deepcopy(self.augment)
        return self._local.augment

    def make_batch(
        self, indices: Sequence[int], seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 N x H x W x 3 images and float labels of ``indices``.

        With ``seed``, augmentation and synthetic fakes are drawn from generators seeded by it
        (a thread-local copy of the augmentation), so batches do not depend on thread timing.
        """
        if seed is None:
            augment, rng = self.augment, self._rng
        else:
            augment, rng = self._thread_augment(), np.random.default_rng(seed)
            if augment is not None and hasattr(augment, "set_random_seed"):
                augment.set_random_seed(seed % 2**32)
        batch = np.empty((len(indices), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        for k, i in enumerate(indices):
            batch[k] = self._sample(i, augment, rng)
        labels = torch.tensor([self.label(i) for i in indices], dtype=torch.float32)
        return torch.from_numpy(batch), labels

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch at once (DataLoader calls this): uint8 N x H x W x 3 and labels."""
        return self.make_batch(indices)


def iter_batches(
    dataset: FaceDataset,
    indices: Sequence[int],
    batch_size: int,
    threads: int = 0,
    seed: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of ``indices`` in order, prepared by ``threads`` threads a few batches ahead.

    Threads, not processes: the decoded-image cache is shared for free, and nothing is forked
    from a process whose other threads (OpenMP, torch.compile) may hold locks, which is what
    hung forked DataLoader workers after ``torch.compile``. Batch ``k`` is seeded from
    (``seed``, ``k``), so the result is the same with any number of threads.
    """
    chunks = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]

    def build(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        batch_seed = None if seed is None else (seed * 1_000_003 + k * 7_919) % 2**63
        return dataset.make_batch(chunks[k], batch_seed)

    if threads <= 0:
        for k in range(len(chunks)):
            yield build(k)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="mesonet-batches") as pool:
        pending: deque = deque()
        for k in range(min(len(chunks), threads + 1)):
            pending.append(pool.submit(build, k))
        next_k = len(pending)
        try:
            while pending:
                batch = pending.popleft().result()
                if next_k < len(chunks):
                    pending.append(pool.submit(build, next_k))
                    next_k += 1
                yield batch
        finally:
            for future in pending:
                future.cancel()


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float32 N x 3 x H x W in [0, 1], channels-last (no copy of layout)."""
    return images.permute(0, 3, 1, 2).float().div_(255.0)


def cleanup(path: Path) -> None:
    """Remove a temporary extraction folder, ignoring errors."""
    shutil.rmtree(path, ignore_errors=True)
