"""Turning the paths a user gives into the list of media files to analyse, within limits."""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TypeVar

from mesonet.media import media_kind

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """Caps on how many files are scanned: ``limit`` applies to images and to videos
    separately; ``ilimit`` and ``vlimit`` cap one kind only. None means no cap."""

    limit: int | None = None
    ilimit: int | None = None
    vlimit: int | None = None

    def cap(self, kind: str | None) -> int | None:
        own = self.ilimit if kind == "image" else self.vlimit if kind == "video" else None
        caps = [c for c in (self.limit, own) if c is not None]
        return min(caps) if caps else None

    def take(self, items: Iterable[T], kind: Callable[[T], str | None]) -> list[T]:
        """The first ``items`` of each kind (``kind(item)``) up to its cap, in their order."""
        counts: Counter[str | None] = Counter()
        kept = []
        for item in items:
            cap = self.cap(kind(item))
            if cap is None or counts[kind(item)] < cap:
                counts[kind(item)] += 1
                kept.append(item)
        return kept


@dataclass(frozen=True)
class Input:
    """A file to analyse and its kind (None: given explicitly but not recognisable media)."""

    path: Path
    kind: str | None


def _walk(folder: Path, recursive: bool) -> Iterator[Path]:
    """Entries of ``folder`` that are not folders, in a stable order (as :func:`os.walk`
    lists them: broken links and pipes included, so they get error records); symlinked
    folders are not followed (no loops)."""
    if not recursive:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        yield from (p for p in entries if not p.is_dir())
        return
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            yield Path(root) / name


def discover(
    paths: Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    limits: Limits | None = None,
) -> Iterator[Input]:
    """Media files named by ``paths``: files as given, folders listed (``recursive`` descends).

    Files given explicitly are always yielded (a non-media one with kind None, so the caller
    can report it); files found in folders only when their bytes or extension say media.
    Each kind stops at its cap from ``limits``.
    """
    limits = limits or Limits()
    counts = {"image": 0, "video": 0}

    def admit(kind: str | None) -> bool:
        if kind not in counts:
            return True
        cap = limits.cap(kind)
        if cap is not None and counts[kind] >= cap:
            return False
        counts[kind] += 1
        return True

    def exhausted() -> bool:
        caps = [limits.cap(k) for k in counts]
        return all(c is not None and counts[k] >= c for k, c in zip(counts, caps, strict=True))

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in _walk(path, recursive):
                kind = media_kind(file)
                if kind is not None and admit(kind):
                    yield Input(file, kind)
                if exhausted():
                    return
        else:
            kind = media_kind(path)
            if admit(kind):
                yield Input(path, kind)
        if exhausted():
            return


def sample_paths() -> list[Path]:
    """The sample images shipped inside the package: the MesoNet authors' four test images
    (``df/`` two forged faces, ``real/`` two real ones; Apache-2.0, their LICENSE and NOTICE
    beside them), so that the tool can be tried with no data of one's own."""
    folder = Path(str(resources.files("mesonet") / "samples"))
    return sorted(p for p in folder.rglob("*") if p.is_file() and media_kind(p) == "image")


def media_subfolders(folder: Path, *, max_files: int = 10_000) -> list[Path]:
    """The sub-folders of ``folder`` that hold images or videos (found within the first
    ``max_files`` files below it): what a run without ``--recursive`` skips."""
    if not folder.is_dir():
        return []
    found: list[Path] = []
    below = (p for p in _walk(folder, recursive=True) if p.parent != folder)
    for path in itertools.islice(below, max_files):
        top = folder / path.relative_to(folder).parts[0]
        if top not in found and media_kind(path):
            found.append(top)
    return found


def media_only_below(folder: Path, *, max_files: int = 10_000) -> bool:
    """True when ``folder`` holds no media at its top level but some in its sub-folders
    (found within the first ``max_files`` files): what a forgotten ``--recursive`` looks like."""
    if not folder.is_dir() or any(media_kind(p) for p in _walk(folder, recursive=False)):
        return False
    below = (p for p in _walk(folder, recursive=True) if p.parent != folder)
    return any(media_kind(p) for p in itertools.islice(below, max_files))
