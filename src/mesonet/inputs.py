"""Turning the paths a user gives into the list of media files to analyse, within limits."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mesonet.media import media_kind


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
