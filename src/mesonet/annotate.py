"""Annotated copies of the inputs: face boxes coloured by score, and a timeline for videos.

Images get ``<folder>_<name>.annotated.jpg`` (one without a face a caption saying why);
videos get ``<folder>_<name>.annotated.mp4`` (the analysed frames, each with its boxes and a
timeline strip of the per-frame scores with the flagged segments and a cursor; H.264, which
browsers play) and ``<folder>_<name>.timeline.png`` (a chart of the scores over time titled
with the file, model and verdict: time axis, the threshold, a legend, as on the web page;
texts in :mod:`mesonet.captions`; with a video model, each track's scored 24-frame windows
as bars beside its frame scores). The track that set a video's score is drawn thicker and
labelled "decides" in both. ``<name>`` keeps the extension (``in/x.jpg`` and ``in/x.png``
differ), and two inputs of one run that would still share a name get ``-2``, ``-3``... (see
:func:`output_stem`). The chart itself is drawn by :mod:`mesonet.timeline`.

With evidence maps (``predict --explain``), each explained face's map is drawn over it in
the copy (yellow to red where hiding a region lowers the score), its peak ringed and named;
in a video the frames that carry a map are held for :data:`HOLD_S` so they can be seen.

Every file is written through :mod:`mesonet.destinations` (a temporary file renamed over the
name, so a link or a FIFO planted at a predictable name is never followed or blocked on);
``mesonet predict`` checks the names with :func:`check_annotated_outputs` before any work.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from mesonet.captions import caption_image, no_face_caption
from mesonet.destinations import (
    OutputError,
    PathLike,
    check_outputs_in,
    input_clash,
    replacing,
    write_output,
)
from mesonet.media import iter_video_frames, resize_max_side
from mesonet.results import FaceResult, MediaResult
from mesonet.timeline import timeline_figure as timeline_figure
from mesonet.timeline import write_chart

MAX_SIDE = 1280  # annotated output is shrunk to this
HOLD_S = 1.0  # a video frame carrying an evidence map is shown this long
STRIP_HEIGHT = 90
_FONT = cv2.FONT_HERSHEY_SIMPLEX
SUFFIXES = (".annotated.jpg", ".annotated.mp4", ".timeline.png")
WHAT = "annotated copy"


def score_colour(probability: float) -> tuple[int, int, int]:
    """RGB from green (real, 0) through amber to red (fake, 1)."""
    p = float(np.clip(probability, 0.0, 1.0))
    if p < 0.5:
        return (int(510 * p), 200, 60)
    return (230, int(200 * (1 - p) * 2), 60)


def output_stem(path: str | Path, taken: dict[str, str] | None = None) -> str:
    """The name annotated outputs of ``path`` start with: ``<folder>_<file name>``.

    ``taken`` maps the stems given so far in a run to their inputs: a stem already given to
    another input (``a/b_c.jpg`` and ``a_b/c.jpg``, or ``p/in/x.jpg`` and ``q/in/x.jpg``)
    gets ``-2``, ``-3``... so no output overwrites another.
    """
    path = Path(path)
    base = f"{path.parent.name}_{path.name}" if path.parent.name else path.name
    if taken is None:
        return base
    source = os.path.abspath(path)
    stem, n = base, 1
    while taken.setdefault(stem, source) != source:
        n += 1
        stem = f"{base}-{n}"
    return stem


def annotated_names(paths: Iterable[PathLike]) -> list[str]:
    """Every name the annotated copies of ``paths`` may take (``-2``, ``-3``... included)."""
    unique = {os.path.abspath(p): p for p in paths}  # stems from the names as given
    bases = Counter(output_stem(p) for p in unique.values())
    stems = [f"{b}-{n}" if n > 1 else b for b, count in bases.items() for n in range(1, count + 1)]
    return [stem + suffix for stem in stems for suffix in SUFFIXES]


def check_annotated_outputs(folder: PathLike, paths: Iterable[PathLike]) -> None:
    """Refuse (``OutputError``, exit 2), before any work, annotated copies of ``paths`` that
    would replace one of them, or whose name in ``folder`` is a link, folder, FIFO or
    device."""
    paths = list(paths)
    names = annotated_names(paths)
    check_outputs_in(folder, names, WHAT)
    for name in names:
        clash = input_clash(Path(folder) / name, paths)
        if clash is not None:
            raise OutputError(
                f"the {WHAT} {Path(folder) / name} would replace the input {clash}: "
                "annotate into another folder"
            )


def draw_faces(
    image: np.ndarray,
    faces: list[FaceResult],
    threshold: float,
    scale: float = 1.0,
    decisive: int | None = None,
) -> np.ndarray:
    """A copy of ``image`` (RGB) with each face's box and 'fake 0.93' label.

    ``decisive``: the id of the track that set a video's score; its faces get a thicker
    box and "decides" in their label.
    """
    out = image.copy()
    normal = max(2, round(max(out.shape[:2]) / 400))
    for face in faces:
        deciding = decisive is not None and face.track == decisive
        thickness = normal * 2 if deciding else normal
        x, y, w, h = (v * scale for v in face.box)
        colour = score_colour(face.fake_probability)
        p1, p2 = (int(x), int(y)), (int(x + w), int(y + h))
        cv2.rectangle(out, p1, p2, colour, thickness)
        label = "fake" if face.fake_probability >= threshold else "real"
        text = f"{label} {face.fake_probability:.2f}"
        if face.track is not None:
            text += f" #{face.track}" + (" decides" if deciding else "")
        thickness = normal
        font_scale = max(0.5, thickness / 3)
        (tw, th), base = cv2.getTextSize(text, _FONT, font_scale, thickness)
        top = max(0, p1[1] - th - base - 4)
        cv2.rectangle(out, (p1[0], top), (p1[0] + tw + 6, top + th + base + 4), colour, -1)
        cv2.putText(out, text, (p1[0] + 3, top + th + 2), _FONT, font_scale, (0, 0, 0), thickness)
    return out


def draw_evidence(image: np.ndarray, shown: Iterable[Any], scale: float = 1.0) -> np.ndarray:
    """A copy of ``image`` (RGB) with each explained face's evidence map drawn over the face
    (:class:`~mesonet.pipeline.explain.Shown`: the map warped from its crop back into the
    picture, ``scale`` the picture's size over the source's), its peak ringed and named."""
    from mesonet.explain import CROP, heat, paint

    out = image.copy()
    size = (out.shape[1], out.shape[0])
    normal = max(2, round(max(out.shape[:2]) / 400))
    for item in shown:
        to_crop = np.array(item.matrix, dtype=np.float64)
        to_crop[:, :2] /= scale  # picture pixels -> crop pixels
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        warped = cv2.warpAffine(heat(item.evidence, CROP), to_crop, size, flags=flags)
        mask = warped > 0
        if mask.any():
            out[mask] = paint(out[mask][None], warped[mask][None])[0]
        if item.evidence.strength <= 0:
            continue
        back = cv2.invertAffineTransform(to_crop)
        peak = back @ np.array([*item.evidence.peak, 1.0])
        radius = max(4, round(float(np.hypot(*back[:, 0])) * CROP / 16))
        centre = (round(peak[0]), round(peak[1]))
        cv2.circle(out, centre, radius + 1, (0, 0, 0), normal, cv2.LINE_AA)
        cv2.circle(out, centre, radius, (255, 255, 255), normal, cv2.LINE_AA)
        if item.peak_region:
            text = f"evidence: {item.peak_region}"
            font_scale = max(0.5, normal / 3)
            (tw, th), base = cv2.getTextSize(text, _FONT, font_scale, normal)
            x = int(np.clip(centre[0] - tw / 2, 0, max(0, size[0] - tw - 6)))
            y = int(min(size[1] - base - 2, centre[1] + radius + th + 8))
            cv2.rectangle(out, (x, y - th - 4), (x + tw + 6, y + base + 2), (0, 0, 0), -1)
            cv2.putText(out, text, (x + 3, y), _FONT, font_scale, (255, 255, 255), normal)
    return out


def timeline_strip(
    result: MediaResult, width: int, threshold: float, cursor_s: float | None = None
) -> np.ndarray:
    """An RGB strip: per-track score over time, the threshold, flagged segments, a cursor;
    with a video model, each scored window as a bar over its time span (coloured by its
    score, outlined in white)."""
    strip = np.full((STRIP_HEIGHT, width, 3), 30, np.uint8)
    duration = max(result.duration_s or 0.0, 1e-6)
    top, bottom = 8, STRIP_HEIGHT - 8

    def x_of(t: float) -> int:
        return int(np.clip(t / duration, 0, 1) * (width - 1))

    def y_of(p: float) -> int:
        return int(bottom - p * (bottom - top))

    for segment in result.segments:
        cv2.rectangle(
            strip, (x_of(segment.start_s), top), (x_of(segment.end_s), bottom), (110, 30, 30), -1
        )
    cv2.line(strip, (0, y_of(threshold)), (width - 1, y_of(threshold)), (120, 120, 120), 1)
    for summary in result.tracks:
        for window in summary.windows or []:
            y = y_of(window.temporal_probability)
            ends = (x_of(window.start_s), y), (x_of(window.end_s), y)
            cv2.line(strip, *ends, (255, 255, 255), 7)
            cv2.line(strip, *ends, score_colour(window.temporal_probability), 5)
    tracks: dict[int, list[FaceResult]] = defaultdict(list)
    for face in result.faces:
        tracks[face.track or 0].append(face)
    decisive = result.decisive_track
    decisive_id = decisive.id if decisive is not None else None
    # the decisive track is drawn last, on top, with a thick white line
    for track, faces in sorted(tracks.items(), key=lambda item: item[0] == decisive_id):
        deciding = track == decisive_id
        faces.sort(key=lambda f: f.time_s or 0.0)
        points = [(x_of(f.time_s or 0.0), y_of(f.fake_probability)) for f in faces]
        line = ((255, 255, 255), 2) if deciding else ((140, 140, 140), 1)
        for a, b in zip(points, points[1:], strict=False):
            cv2.line(strip, a, b, line[0], line[1], cv2.LINE_AA)
        for face, point in zip(faces, points, strict=True):
            radius = 4 if deciding else 2
            cv2.circle(strip, point, radius, score_colour(face.fake_probability), -1, cv2.LINE_AA)
    if decisive is not None:
        note = f"track {decisive.id} decides ({decisive.share:.0%} of frames)"
        (tw, th), base = cv2.getTextSize(note, _FONT, 0.4, 1)
        x0, y0 = max(0, width - tw - 9), max(0, top + 10 - th - 3)
        shade = strip[y0 : top + 10 + base + 1, x0:]  # darkened, so a score under it stays legible
        shade[:] = (shade * 0.35).astype(np.uint8)
        cv2.putText(strip, note, (width - tw - 6, top + 10), _FONT, 0.4, (230, 230, 230), 1)
    if cursor_s is not None:
        cv2.line(strip, (x_of(cursor_s), 0), (x_of(cursor_s), STRIP_HEIGHT - 1), (255, 255, 255), 1)
    cv2.putText(strip, "1", (2, top + 8), _FONT, 0.35, (160, 160, 160), 1)
    cv2.putText(strip, "0", (2, bottom), _FONT, 0.35, (160, 160, 160), 1)
    return strip


def write_timeline_png(
    result: MediaResult, threshold: float, path: Path, video_threshold: float | None = None
) -> Path:
    """Save :func:`~mesonet.timeline.timeline_figure` as a PNG; returns ``path``."""
    figure = timeline_figure(result, threshold, video_threshold)
    with replacing(path, WHAT, durable=False) as handle:
        write_chart(figure, handle)
    return path


class _H264Writer:
    """Frames (RGB) into an H.264 MP4 that browsers play, through PyAV's bundled FFmpeg.

    OpenCV's writer only offers MPEG-4 Part 2 ("mp4v") in its wheels, which Chromium and
    Firefox refuse. Odd sizes are padded to even ones, as 4:2:0 chroma needs.
    """

    def __init__(self, handle: object, fps: float, width: int, height: int) -> None:
        self.size = (width + width % 2, height + height % 2)
        self.rate = Fraction(fps).limit_denominator(1000)
        options = {"movflags": "+faststart"}
        self.container = av.open(handle, mode="w", format="mp4", options=options)
        self.stream = self.container.add_stream("libx264", rate=self.rate)
        self.stream.width, self.stream.height = self.size
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": "23", "preset": "veryfast"}
        self.count = 0

    def write(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if (w, h) != self.size:
            image = cv2.copyMakeBorder(
                image,
                0,
                self.size[1] - h,
                0,
                self.size[0] - w,
                cv2.BORDER_CONSTANT,
                value=(0, 0, 0),
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts, frame.time_base = self.count, 1 / self.rate
        self.count += 1
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        try:
            for packet in self.stream.encode():  # flush the encoder
                self.container.mux(packet)
        finally:
            self.container.close()


def _write_rgb(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OutputError(f"could not encode the {WHAT} {path}", 1)
    write_output(path, encoded.tobytes(), WHAT, durable=False)


def write_annotated_image(
    image: np.ndarray,
    result: MediaResult,
    threshold: float,
    out_dir: Path,
    names: dict[str, str] | None = None,
    evidence: Iterable[Any] = (),
) -> Path:
    """Draw the result's faces on ``image`` and save it; returns the file written.

    ``names``: the run's :func:`output_stem` registry, keeping output names unique;
    ``evidence``: the faces' evidence maps (:func:`draw_evidence`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    small = resize_max_side(image, MAX_SIDE)
    scale = small.shape[1] / image.shape[1]
    drawn = draw_faces(draw_evidence(small, evidence, scale), result.faces, threshold, scale)
    if not result.faces:  # say why, rather than leave a copy without a box
        drawn = caption_image(drawn, no_face_caption(result))
    path = out_dir / f"{output_stem(result.path, names)}.annotated.jpg"
    _write_rgb(path, drawn)
    return path


def write_annotated_video(
    source: str | Path,
    result: MediaResult,
    threshold: float,
    out_dir: Path,
    fps: float = 4.0,
    names: dict[str, str] | None = None,
    video_threshold: float | None = None,
    evidence: Iterable[Any] = (),
) -> list[Path]:
    """Re-decode the analysed frames and write them annotated, with a timeline strip.

    Decoding again (only when annotating) keeps the analysis itself from holding frames.
    ``video_threshold``: the video model's threshold, for the chart (:func:`timeline_figure`);
    ``evidence``: evidence maps of some faces (:func:`draw_evidence`), whose frames are held
    :data:`HOLD_S`.
    """
    maps: dict[int, list[Any]] = defaultdict(list)
    for item in evidence:
        maps[item.frame].append(item)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = output_stem(result.path, names)
    by_frame: dict[int, list[FaceResult]] = defaultdict(list)
    for face in result.faces:
        by_frame[face.frame or 0].append(face)
    indices = sorted(by_frame) if result.faces else []
    written: list[Path] = []
    writer: _H264Writer | None = None
    video_path = out_dir / f"{stem}.annotated.mp4"
    with contextlib.ExitStack() as stack:  # the MP4 replaces its name only when complete
        for frame in iter_video_frames(source, indices):
            small = resize_max_side(frame.image, MAX_SIDE)
            scale = small.shape[1] / frame.image.shape[1]
            decisive = result.decisive_track
            drawn = draw_faces(
                draw_evidence(small, maps.get(frame.index, ()), scale),
                by_frame[frame.index],
                threshold,
                scale,
                decisive=decisive.id if decisive is not None else None,
            )
            width = drawn.shape[1]
            strip = timeline_strip(result, width, threshold, cursor_s=frame.time_s)
            composed = np.vstack([drawn, strip])
            if writer is None:
                h, w = composed.shape[:2]
                handle = stack.enter_context(replacing(video_path, WHAT, durable=False))
                writer = _H264Writer(handle, fps, w, h)
                stack.callback(writer.container.close)  # on failure too, before the removal
            for _ in range(max(1, round(fps * HOLD_S)) if frame.index in maps else 1):
                writer.write(composed)
        if writer is not None:
            writer.close()
            written.append(video_path)
    chart = out_dir / f"{stem}.timeline.png"
    written.append(write_timeline_png(result, threshold, chart, video_threshold))
    return written
