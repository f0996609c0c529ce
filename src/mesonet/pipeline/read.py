"""Reading media into frames: images decoded in worker threads one batch ahead of scoring,
video frames sampled and decoded in a background thread ahead of face detection.

>>> for item in read_ahead(discover(["folder/"]), batch_size=64, load=guarded(load_image)):
...     ...  # an ImageBatch (paths and their decoded images), or an Input that is no image
>>> info, indices, frames = open_video("clip.mp4", frames=32)
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mesonet.budget import AnalysisClock, AnalysisLimits
from mesonet.faces import crop_whole
from mesonet.inputs import Input
from mesonet.media import (
    MediaError,
    VideoFrame,
    VideoInfo,
    iter_video_frames,
    probe_video,
    read_image,
    sample_frame_indices,
)
from mesonet.pipeline.faces import CROP_SIZE

PREFETCH_FRAMES = 8
"""Decoded video frames waiting for the detector (bounded: ~22 MB at 720p)."""

Loaded = tuple[np.ndarray, tuple[int, int]]
"""A decoded image and its (width, height) in source pixels."""


def load_image(path: Path, crop: bool = False, resize: str = "auto") -> Loaded:
    """Decode one image (in a worker thread): its pixels and its (width, height).

    With ``crop`` (``faces='none'`` and no annotation: the whole image is the crop and
    nobody needs the full-size pixels afterwards) the pixels are already the model's crop
    (``resize`` is the card's), so a batch waiting to be scored holds 196 KB per image,
    whatever the image size.
    """
    image = read_image(path)
    size = (image.shape[1], image.shape[0])
    if crop:
        image = crop_whole(image, CROP_SIZE, resize)
    return image, size


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` returning its exception instead of raising it (for pool.map)."""

    def call(*args):
        try:
            return func(*args)
        except Exception as exc:  # noqa: BLE001 - turned into an error record by the caller
            return exc

    return call


@dataclass
class ImageBatch:
    """Images read ahead: their paths and what loading each gave (or the exception)."""

    paths: list[Path]
    loaded: list[Any]


def read_ahead(
    items: Iterable[Input], batch_size: int, load: Callable[[Path], Any]
) -> Iterator[ImageBatch | Input]:
    """The inputs in order, images gathered into batches of ``batch_size`` and loaded.

    ``load`` (a :func:`guarded` loader, as it runs in the pool) runs in a thread pool one
    batch ahead of the consumer, so the decoder and the model work at the same time; at
    most two batches are in memory. Any other input comes as it is, once the images before
    it are handed over.
    """
    workers = max(1, min(os.cpu_count() or 1, 8))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mesonet-decode")
    ahead: deque[tuple[list[Path], list[Future]]] = deque()

    def submit(paths: list[Path]) -> None:
        ahead.append((paths, [pool.submit(load, p) for p in paths]))

    def finish(keep: int) -> Iterator[ImageBatch]:
        while len(ahead) > keep:
            paths, futures = ahead.popleft()
            yield ImageBatch(paths, [f.result() for f in futures])

    try:
        images: list[Path] = []
        for item in items:
            if item.kind == "image":
                images.append(item.path)
                if len(images) >= batch_size:
                    submit(images)
                    images = []
                    yield from finish(keep=1)
                continue
            if images:
                submit(images)
                images = []
            yield from finish(keep=0)
            yield item
        if images:
            submit(images)
        yield from finish(keep=0)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def unreadable(path: Path) -> MediaError:
    """The error for a path that is neither an image nor a video mesonet can read."""
    reason = "not an image or video mesonet can read"
    if not path.exists():
        reason = "file not found"
    elif path.is_dir():
        reason = "is a folder (pass it as an input to predict_many)"
    return MediaError(reason)


def open_video(
    path: Path,
    frames: int = 32,
    fps: float | None = None,
    limits: AnalysisLimits | None = None,
    clock: AnalysisClock | None = None,
) -> tuple[VideoInfo, list[int], Iterator[VideoFrame]]:
    """A video's header, the frames sampled from it (``frames`` evenly, or ``fps`` per
    second, see :func:`~mesonet.media.sample_frame_indices`) and their decoded stream.

    The stream decodes in a background thread, :data:`PREFETCH_FRAMES` ahead (see
    :func:`prefetch`); close it when done with it.
    """
    info = probe_video(path, limits=limits, clock=clock)
    indices = sample_frame_indices(info, frames, fps)
    stream = prefetch(iter_video_frames(path, indices, limits=limits, clock=clock), PREFETCH_FRAMES)
    return info, indices, stream


_DONE = object()


def prefetch(iterator: Iterator[Any], depth: int) -> Iterator[Any]:
    """Run ``iterator`` in a background thread, ``depth`` items ahead of the consumer.

    Video decoding (FFmpeg, GIL released) then overlaps face detection and scoring. An
    exception in the producer is re-raised in the consumer; closing the returned generator
    (or dropping it) stops the producer.
    """
    items: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def offer(item: Any) -> None:
        """Put ``item`` once there is room, unless the consumer stops first."""
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for item in iterator:
                offer(item)
                if stop.is_set():
                    return
            outcome: Any = _DONE
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            outcome = exc
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
        offer(outcome)

    thread = threading.Thread(target=produce, name="mesonet-video-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
