"""Training images decoded and batched.

Images become RGB uint8 256 x 256 (resized like inference does); batches are uint8
N x 256 x 256 x 3 and turn into float32 [0, 1] N x 3 x 256 x 256 channels-last tensors in
:func:`to_model_input`, so workers ship four times fewer bytes. Label 1 means fake.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mesonet.faces.align import crop_whole
from mesonet.training.dataset import Sample
from mesonet.training.errors import DatasetError
from mesonet.training.synthetic import self_blend

IMAGE_SIZE = 256


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
