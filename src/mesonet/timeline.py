"""The timeline chart of a video's record: each face track's fake probability over time,
the threshold and the flagged segments, with a legend (as the web page's chart); with a
video model, each track's scored 24-frame windows as bars beside its frame scores. Written
as ``<name>.timeline.png`` by :mod:`mesonet.annotate`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import IO, Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patheffects import Normal, Stroke

from mesonet.captions import no_face_caption, timeline_title
from mesonet.results import FaceResult, MediaResult, TrackResult, WindowScore


def write_chart(figure: Figure, handle: IO[bytes]) -> None:
    """``figure`` as PNG bytes into ``handle``."""
    figure.savefig(handle, format="png")


def timeline_figure(
    result: MediaResult, threshold: float, video_threshold: float | None = None
) -> Figure:
    """A chart of each face track's fake probability over the video's time, with the
    threshold and the flagged segments, labelled and with a legend (as the page's chart).

    With a video model, the temporal evidence beside the frame scores: each scored window of
    a track as a bar over the time its 24 frames span, at the video model's probability for
    it (:attr:`~mesonet.results.TrackResult.windows`), and the video model's threshold
    (``video_threshold``) when it differs from the frame model's."""
    fig = Figure(figsize=(8, 2.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(timeline_title(result), x=0.01, ha="left", fontsize=9)
    ax = fig.add_subplot()
    duration = max(result.duration_s or 0.0, 1e-6)
    # segments of tracks that cannot decide the video are shaded fainter, hatched
    silent = {t.id for t in result.tracks if not t.eligible}
    labelled: set[bool] = set()
    for segment in result.segments:
        minor = segment.track in silent
        name = "flagged, cannot decide" if minor else "flagged"
        ax.axvspan(
            segment.start_s,
            segment.end_s,
            color="#c62828",
            alpha=0.06 if minor else 0.15,
            hatch="//" if minor else None,
            lw=0,
            label=None if minor in labelled else name,
        )
        labelled.add(minor)
    tracks: dict[int, list[FaceResult]] = defaultdict(list)
    for face in result.faces:
        tracks[face.track or 0].append(face)
    summaries = {t.id: t for t in result.tracks}
    temporal = any(t.windows for t in result.tracks)
    for track, faces in sorted(tracks.items()):
        faces.sort(key=lambda f: f.time_s or 0.0)
        times = [f.time_s or 0.0 for f in faces]
        summary = summaries.get(track)
        deciding = summary is not None and summary.decisive
        role = ""
        if summary is not None:
            role = " (decides)" if deciding else "" if summary.eligible else " (cannot decide)"
        (line,) = ax.plot(
            times,
            [f.fake_probability for f in faces],
            marker="o",
            ms=4.5 if deciding else 3,
            lw=2.8 if deciding else 1.2,
            ls="--" if summary is not None and not summary.eligible else "-",
            zorder=3 if deciding else 2,
            label=f"face #{track}{' frames' if temporal else ''}{role}",
        )
        if summary is not None and summary.windows:
            _plot_windows(ax, summary, line.get_color())
    ax.axhline(threshold, color="#555555", ls="--", lw=1, label=f"threshold {threshold:.2f}")
    if temporal and video_threshold is not None and abs(video_threshold - threshold) >= 0.005:
        ax.axhline(
            video_threshold,
            color="black",
            ls=":",
            lw=1.2,
            label=f"temporal threshold {video_threshold:.2f}",
        )
    ax.set_xlim(0, duration)
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("p(fake)")
    ax.grid(alpha=0.3)
    if not result.faces:
        reason = no_face_caption(result)
        ax.text(0.5, 0.5, reason, ha="center", va="center", transform=ax.transAxes)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return fig


def _plot_windows(ax: Any, track: TrackResult, colour: str) -> None:
    """A track's scored windows as bars over their time spans, in the track's colour with a
    black outline (the frame scores are a thin line with dots)."""
    times, probabilities = _window_steps(track.windows or [])
    n = len(track.windows or [])
    width = 5.0 if track.decisive else 3.5
    ax.plot(
        times,
        probabilities,
        color=colour,
        lw=width,
        solid_capstyle="butt",
        path_effects=[Stroke(linewidth=width + 2.5, foreground="black"), Normal()],
        zorder=1.8,  # beneath the frame scores (2 and 3), above the flagged segments (1)
        label=f"face #{track.id} temporal ({n} window{'s' if n > 1 else ''})",
    )


def _window_steps(windows: Iterable[WindowScore]) -> tuple[list[float], list[float]]:
    """One polyline of the windows' bars (each flat over its start and end time, broken
    between windows)."""
    times: list[float] = []
    probabilities: list[float] = []
    for window in windows:
        times += [window.start_s, window.end_s, float("nan")]
        probabilities += [window.temporal_probability] * 2 + [float("nan")]
    return times, probabilities
