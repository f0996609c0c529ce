"""The result records every front end emits (CLI, Python API, web service).

One :class:`MediaResult` per input file; its JSON form is the schema in
docs/architecture.md ("The record").
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["image", "video"]
Status = Literal["ok", "no_face", "error"]

CSV_COLUMNS = (
    "path",
    "kind",
    "status",
    "fake_probability",
    "label",
    "verdict",
    "model",
    "backend",  # the engine that scored it: openvino-int8 scores are not exact
    "face_detections",  # faces found: in a video, one per face per analysed frame
    "face_tracks",  # video only: the distinct faces followed across frames
    "frames_analyzed",
    "duration_s",
    "aggregation",
    "deciding_tracks",  # video only: face tracks that could decide the video's score
    "decisive_track",
    "flagged_segments",
    # video only, with a video model (see mesonet.pipeline.temporal): its name and rule, the
    # evidence that decided, and the decisive track's frame and temporal evidence
    "video_model",
    "video_rule",
    "evidence",
    "frame_probability",
    "temporal_probability",
    "temporal_windows",
    "error",
)


_SURROGATE = re.compile(r"[\ud800-\udfff]")
_LOOKS_ESCAPED = re.compile(r"\\(?=x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def safe_text(text: str) -> str:
    """``text`` as valid Unicode: undecodable bytes of a file name (which Python keeps as
    lone surrogates, see :func:`os.fsdecode`) become ``\\xNN`` escapes (other lone
    surrogates ``\\uNNNN``), so the record can be written as UTF-8 JSON, CSV or a table.

    Lossless: two different names never give the same text (a record's path is the key a
    scan resumes by). A backslash that would read as such an escape (``\\xff`` written in
    the name itself) is written ``\\x5c``; every other character, backslashes included, is
    kept as it is, so names that are valid UTF-8 and hold no ``\\xNN`` read unchanged.
    """
    if "\\" in text:
        text = _LOOKS_ESCAPED.sub(r"\\x5c", text)
    return _SURROGATE.sub(_escape, text)


@dataclass
class FaceResult:
    """One face: where it is, how sure the detector was, how fake it looks."""

    box: list[float]  # x, y, w, h in source pixels
    confidence: float | None  # detector confidence; None when faces were not detected
    fake_probability: float
    frame: int | None = None  # video only
    time_s: float | None = None  # video only
    track: int | None = None  # video only
    # with an evidence map (mesonet.pipeline.explain): map, peak_region, peak, peak_logit_drop
    explain: dict[str, Any] | None = None
    # can the face be judged (mesonet.judge): its sharpness, and why not when it is too
    # small or too blurred (such a face is reported but does not decide)
    sharpness: float | None = None
    judged: bool = True
    not_judged: str | None = None

    def to_dict(self, video: bool) -> dict[str, Any]:
        data = asdict(self)
        if not video:
            for key in ("frame", "time_s", "track"):
                data.pop(key)
        for key in ("explain", "sharpness", "not_judged"):
            if data[key] is None:
                data.pop(key)
        return data


@dataclass
class Segment:
    """A time range in which a face track is flagged as fake."""

    start_s: float
    end_s: float
    fake_probability: float  # mean over the flagged frames of the range
    track: int


@dataclass
class WindowScore:
    """One window of a face track scored by a video model: the times of its first and last
    frame and the video model's fake probability for it (on the video model's own scale, as
    the track's ``temporal_probability``)."""

    start_s: float
    end_s: float
    temporal_probability: float


@dataclass
class TrackResult:
    """One face track of a video (one person, as far as tracking can tell) and its quality.

    ``frames``: analysed frames the track has a face on; ``share``: that over all analysed
    frames; ``median_size``: median face size in source pixels (square root of the box's
    area); ``confidence``: median detector confidence (None when faces were not detected);
    ``fake_probability``: the track's aggregated score; ``eligible``: covers enough of the
    video to decide it (see :mod:`mesonet.video`); ``decisive``: set the video's score.

    With a video model (:mod:`mesonet.pipeline.temporal`), ``fake_probability`` is the
    frame and temporal evidence combined by the video rule; ``frame_probability`` is the
    frame evidence, ``temporal_probability`` the video model's (tracks with a window of its
    frames only; ``temporal_windows`` of them, each scored in ``windows``) and ``evidence``
    says which decided. Those keys appear in the JSON record only with a video model.
    """

    id: int
    frames: int
    share: float
    median_size: float
    confidence: float | None
    fake_probability: float
    eligible: bool = False
    decisive: bool = False
    frame_probability: float | None = None
    temporal_probability: float | None = None
    temporal_windows: int | None = None
    evidence: str | None = None
    windows: list[WindowScore] | None = None
    # why the track may not decide: most of its faces too small or too blurred (mesonet.judge)
    not_judged: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in (*TRACK_VIDEO_MODEL_KEYS, "not_judged"):
            if data[key] is None:
                data.pop(key)
        return data


TRACK_VIDEO_MODEL_KEYS = (
    "frame_probability",
    "temporal_probability",
    "temporal_windows",
    "evidence",
    "windows",
)
"""A track's keys that only a video model gives (absent from the JSON record otherwise)."""
VIDEO_MODEL_KEYS = ("video_model", "video_rule", "evidence")
"""A video record's keys that only a video model gives (absent from the JSON otherwise)."""


@dataclass
class MediaResult:
    """The verdict on one input file."""

    path: str
    kind: Kind | None
    status: Status
    model: str
    fake_probability: float | None = None
    label: Literal["fake", "real"] | None = None
    faces: list[FaceResult] = field(default_factory=list)
    frames_analyzed: int | None = None
    duration_s: float | None = None
    aggregation: str | None = None
    segments: list[Segment] = field(default_factory=list)
    error: str | None = None
    tracks: list[TrackResult] = field(default_factory=list)  # video only
    # in words, from the model card's verdict bands: likely real / uncertain / likely forged
    # (after the older fields, so positional construction keeps working)
    verdict: Literal["likely real", "uncertain", "likely forged"] | None = None
    # video only, with a video model: its name, the rule combining frame and temporal
    # evidence, and the evidence that decided (see mesonet.pipeline.temporal)
    video_model: str | None = None
    video_rule: str | None = None
    evidence: str | None = None
    # the engine that scored it (mesonet.backends): openvino-int8 scores are not exact ones
    backend: str | None = None
    # why the verdict is uncertain whatever the score: no face could be judged
    # (mesonet.judge), e.g. "faces too small to judge: the largest is 31 px"
    note: str | None = None

    @property
    def is_video(self) -> bool:
        return self.kind == "video"

    @property
    def decisive_track(self) -> TrackResult | None:
        """The track that set a video's score (None for images and videos without faces)."""
        return next((t for t in self.tracks if t.decisive), None)

    def deciding_faces(self) -> list[FaceResult]:
        """The faces behind the score: the decisive track's for a video, else all of them."""
        decisive = self.decisive_track
        if decisive is None:
            return list(self.faces)
        return [f for f in self.faces if (f.track or 0) == decisive.id]

    def to_dict(self) -> dict[str, Any]:
        """The JSON record: video-only keys appear for videos, ``error`` only on errors and
        on ``no_face`` records (why there is no face)."""
        data: dict[str, Any] = {
            "path": safe_text(self.path),
            "kind": self.kind,
            "status": self.status,
            "fake_probability": self.fake_probability,
            "label": self.label,
            "verdict": self.verdict,
            "model": self.model,
            "backend": self.backend,
            "faces": [f.to_dict(self.is_video) for f in self.faces],
        }
        if self.is_video:
            data["frames_analyzed"] = self.frames_analyzed
            data["duration_s"] = self.duration_s
            data["aggregation"] = self.aggregation
            data["tracks"] = [t.to_dict() for t in self.tracks]
            if self.video_model is not None:
                for key in VIDEO_MODEL_KEYS:
                    data[key] = getattr(self, key)
            data["segments"] = [asdict(s) for s in self.segments]
        if self.note is not None:
            data["note"] = self.note
        if self.status != "ok":  # what went wrong, or why there is no face
            data["error"] = None if self.error is None else safe_text(self.error)
        return data

    def to_csv_row(self) -> dict[str, Any]:
        """A flat row: counts and summaries instead of nested lists."""
        decisive = self.decisive_track
        return {
            "path": safe_text(self.path),
            "kind": self.kind or "",
            "status": self.status,
            "fake_probability": "" if self.fake_probability is None else self.fake_probability,
            "label": self.label or "",
            "verdict": self.verdict or "",
            "model": self.model,
            "backend": self.backend or "",
            "face_detections": len(self.faces),
            "face_tracks": len({f.track for f in self.faces}) if self.is_video else "",
            "frames_analyzed": "" if self.frames_analyzed is None else self.frames_analyzed,
            "duration_s": "" if self.duration_s is None else self.duration_s,
            "aggregation": self.aggregation or "",
            "deciding_tracks": sum(t.eligible for t in self.tracks) if self.is_video else "",
            "decisive_track": "" if decisive is None else decisive.id,
            "flagged_segments": ";".join(f"{s.start_s:.2f}-{s.end_s:.2f}" for s in self.segments),
            "video_model": self.video_model or "",
            "video_rule": self.video_rule or "",
            "evidence": self.evidence or "",
            "frame_probability": _cell(decisive, "frame_probability"),
            "temporal_probability": _cell(decisive, "temporal_probability"),
            "temporal_windows": _cell(decisive, "temporal_windows"),
            "error": safe_text(self.error or ""),
        }


def _cell(track: TrackResult | None, key: str) -> Any:
    """A CSV cell of ``track``'s ``key``: empty without a track or a value."""
    value = None if track is None else getattr(track, key)
    return "" if value is None else value


def to_jsonl(results: Iterable[MediaResult]) -> Iterable[str]:
    """One JSON object per line, as results arrive."""
    for result in results:
        yield json.dumps(result.to_dict(), ensure_ascii=False) + "\n"


def _is_flat(value: Any) -> bool:
    """A scalar, or a list or object holding only scalars and lists of scalars."""
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list):
        return True
    return all(
        not isinstance(v, dict | list) or (isinstance(v, list) and all(map(_is_scalar, v)))
        for v in value
    )


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def json_record(value: Any, *, level: int = 0, indent: int = 2, open_: bool = False) -> str:
    """Indented JSON that stays short: an object or list holding no nested objects (a face
    with its box, a segment) goes on one line, so a video's record has one line per face.
    ``level`` is the depth it is written at (its closing bracket is indented to it);
    ``open_``: ``value`` itself gets one line per key even when flat (a record, whether or
    not it has faces)."""
    if _is_flat(value) and not (open_ and isinstance(value, dict) and value):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    pad, inner = " " * indent * level, " " * indent * (level + 1)
    if isinstance(value, dict):
        items = [
            f"{inner}{json.dumps(k, ensure_ascii=False)}: {json_record(v, level=level + 1)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    items = [inner + json_record(v, level=level + 1) for v in value]
    return "[\n" + ",\n".join(items) + f"\n{pad}]"


def to_json(results: Iterable[MediaResult]) -> str:
    """A JSON array of records, each with one line per key and per face (see
    :func:`json_record`)."""
    records = [json_record(r.to_dict(), level=1, open_=True) for r in results]
    return ("[\n  " + ",\n  ".join(records) + "\n]\n") if records else "[]\n"


def csv_header() -> str:
    buffer = io.StringIO()
    csv.DictWriter(buffer, CSV_COLUMNS).writeheader()
    return buffer.getvalue()


def to_csv_line(result: MediaResult) -> str:
    buffer = io.StringIO()
    csv.DictWriter(buffer, CSV_COLUMNS).writerow(result.to_csv_row())
    return buffer.getvalue()
