"""Limits on one analysis: decoded frame size, wall time and memory.

A hostile video can be small on disk and huge to decode (an H.264 header declaring
9984 x 9984 frames: 190 KB, ~100 s and ~4 GB to analyse). Every analysis therefore runs
against :class:`AnalysisLimits`: frames over ``max_frame_pixels`` are refused from the
header, before any is decoded; a video whose frames would need more than ``memory_mb`` to
hold while analysed is refused too; and an :class:`AnalysisClock` stops the analysis,
between two frames, once it has run ``seconds`` or grown the process by ``memory_mb``.
Each ends as the file's error record, never a crash.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from mesonet.errors import MesonetError

DEFAULT_MAX_FRAME_PIXELS = 8_300_000
"""Largest video frame decoded by default: 8.3 MP, so 4K UHD (3840 x 2160) fits."""
DEFAULT_SECONDS = 300.0
"""Default wall time of one analysis (a 2-hour 1080p film at 32 frames takes ~100 s here)."""
DEFAULT_MEMORY_MB = 2048.0
"""Default memory one analysis may hold (4K frames need ~0.4 GB)."""
FRAMES_HELD = 14
"""Decoded frames an analysis may hold at once: the prefetch queue (8), the frame being
analysed and the decoder's own frames (FFmpeg keeps a few per thread)."""


class BudgetError(MesonetError):
    """An analysis stopped by its limits; the message says which and how to raise it."""


@dataclass(frozen=True)
class AnalysisLimits:
    """Limits on the analysis of one file (picklable, so scan workers receive them)."""

    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS
    seconds: float = DEFAULT_SECONDS
    memory_mb: float = DEFAULT_MEMORY_MB

    def __post_init__(self) -> None:
        if not self.max_frame_pixels >= 1:
            raise MesonetError(f"max_frame_pixels must be positive, not {self.max_frame_pixels}")
        if not self.seconds > 0:
            raise MesonetError(f"the analysis time limit must be positive, not {self.seconds}")
        if not self.memory_mb > 0:
            raise MesonetError(f"the analysis memory limit must be positive, not {self.memory_mb}")

    @classmethod
    def from_options(
        cls, max_frame_mp: float | None, seconds: float | None, memory_mb: float | None
    ) -> AnalysisLimits:
        """From the CLI's units (megapixels); None keeps the default."""
        limits = cls()
        return cls(
            round(max_frame_mp * 1e6) if max_frame_mp is not None else limits.max_frame_pixels,
            seconds if seconds is not None else limits.seconds,
            memory_mb if memory_mb is not None else limits.memory_mb,
        )

    def check_frame_size(self, width: int, height: int) -> None:
        """Refuse frames over ``max_frame_pixels``, or too large to hold within the budget."""
        if width * height > self.max_frame_pixels:
            raise BudgetError(
                f"video frames are {width}x{height} pixels "
                f"({megapixels(width * height)} MP), over the "
                f"{megapixels(self.max_frame_pixels)} MP limit (--max-frame-mp)"
            )
        needed_mb = width * height * 3 * FRAMES_HELD / 2**20
        if needed_mb > self.memory_mb:
            raise BudgetError(
                f"video frames of {width}x{height} pixels need about {needed_mb:,.0f} MB to "
                f"analyse, over the {self.memory_mb:g} MB limit (--max-memory-mb)"
            )

    def start(self) -> AnalysisClock:
        """A clock for one analysis, started now."""
        return AnalysisClock(self)


def resident_mb() -> float | None:
    """This process's resident memory in MB (None where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


class AnalysisClock:
    """Time and memory spent by one analysis; :meth:`check` raises once over the limits.

    Memory is the growth of the process's resident set since the start: with several
    analyses at once (the web service) a neighbour's growth counts too, which errs on the
    safe side, and every analysis is bounded by the frame-size limit in the first place.
    """

    def __init__(self, limits: AnalysisLimits) -> None:
        self.limits = limits
        self.started = time.monotonic()
        self.baseline_mb = resident_mb()

    def check(self) -> None:
        """Raise :class:`BudgetError` when the analysis ran too long or grew too large."""
        elapsed = time.monotonic() - self.started
        if elapsed > self.limits.seconds:
            raise BudgetError(
                f"analysis stopped after {elapsed:.0f} s, over the {self.limits.seconds:g} s "
                "limit per file (--max-seconds)"
            )
        if self.baseline_mb is not None:
            now = resident_mb()
            if now is not None and now - self.baseline_mb > self.limits.memory_mb:
                raise BudgetError(
                    f"analysis stopped: it grew memory by {now - self.baseline_mb:,.0f} MB, "
                    f"over the {self.limits.memory_mb:g} MB limit per file (--max-memory-mb)"
                )


def megapixels(pixels: int) -> str:
    """``pixels`` in megapixels for messages: one decimal from 1 MP up, else two significant
    digits (a 0.05 MP limit is not "0.1")."""
    value = pixels / 1e6
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"
