"""Temporal evidence: a video model's score for each long enough face track, and the rule
that combines it with the frame evidence.

With a video model (``Detector(video_model=...)``, ``--video-model``), a video's analysed
frames are the usual sample (``frames`` evenly, or ``fps``) plus ``video_windows`` runs of
the model's ``sequence.frames`` consecutive frames (``frame_step`` apart, as it was trained),
centred at evenly spaced points of the video; the face detector runs on every one of them
(as on the training clips). Each face track is then cut into windows of that many of its
crops: from runs of consecutive frames first, else (no run long enough) from its analysed
frames in order, which the model was not trained on. A track with a window gets
``temporal_probability`` (the sigmoid of its windows' mean logit, at most
:data:`MAX_WINDOWS` windows; each window's own probability and time span in ``windows``,
which the timeline chart draws); a shorter track keeps its frame score alone.

The rules (``video_rule``), per track; the decisive track is then chosen as always
(:func:`mesonet.video.choose_decisive`):

- ``frames``: the frame evidence only (the track's aggregated frame score);
- ``temporal``: the temporal probability where there is one;
- ``mean``: the mean of the two in log-odds, each first measured from its own threshold
  (``logit(p) - logit(threshold)``), so each counts by how far it is past its own cut.

Temporal scores are moved to the frame threshold's scale (``logit(p_t) - logit(t_video) +
logit(t_frames)``) so labels and verdicts keep using the frame model's threshold and bands.
The record says which evidence decided (``evidence``: ``frames``, ``temporal`` or
``frames+temporal``).
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from mesonet.aggregate import decision_threshold
from mesonet.budget import AnalysisClock
from mesonet.errors import MesonetError
from mesonet.media import VideoInfo, iter_video_frames, probe_video, sample_frame_indices
from mesonet.models.sequence import is_video_card
from mesonet.pipeline.faces import Found
from mesonet.pipeline.read import PREFETCH_FRAMES, prefetch
from mesonet.pipeline.score import score_stream, to_batch, unit_batch
from mesonet.results import MediaResult, WindowScore
from mesonet.video import choose_decisive

if TYPE_CHECKING:
    from mesonet.pipeline.analysis import Analysis

VIDEO_RULES = ("frames", "temporal", "mean")
VIDEO_WINDOWS = 2
"""Default runs of consecutive frames analysed per video for the video model."""
MAX_WINDOWS = 8
"""Most windows scored per track (evenly chosen among its windows)."""
T = TypeVar("T")
EVIDENCE = {"frames": "frames", "temporal": "temporal", "mean": "frames+temporal"}
_EPS = 1e-6


def logit(p: float) -> float:
    p = min(max(float(p), _EPS), 1 - _EPS)
    return math.log(p / (1 - p))


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def check_video_options(rule: str, windows: int) -> None:
    if rule not in VIDEO_RULES:
        raise MesonetError(f"video_rule must be one of {', '.join(VIDEO_RULES)}, not {rule!r}")
    if not 0 <= windows <= 16:
        raise MesonetError(f"video_windows must be from 0 to 16, not {windows}")


def load_video_model(name: Any, trust_unverified: bool = False) -> Any:
    """A video model: a loaded one, or by bundled name or path (its graph where it has
    one), loaded once per process (the web service's requests share it; inference does not
    change it). Refused when it is an image model."""
    shared = isinstance(name, str | Path)
    model = _load_shared(str(name), trust_unverified) if shared else name
    if not is_video_card(getattr(model, "card", None)):
        raise MesonetError(
            f"{getattr(getattr(model, 'card', None), 'name', name)} is an image model: "
            "--video-model takes a video model (a card with a sequence)"
        )
    return model.eval()


@functools.lru_cache(maxsize=4)
def _load_shared(name: str, trust_unverified: bool) -> Any:
    from mesonet.models.graph import load_for_prediction

    return load_for_prediction(name, trust_unverified=trust_unverified)


def bundled_video_models() -> list[str]:
    """Names of the bundled video models (a request's ``video_model`` picks one)."""
    from mesonet.models import bundled_models, read_card

    names = []
    for name, path in bundled_models().items():
        try:
            if path.suffix == ".safetensors" and is_video_card(read_card(path)):
                names.append(name)
        except MesonetError:  # an unreadable card is no video model
            continue
    return names


def window_indices(info: VideoInfo, windows: int, length: int, step: int = 1) -> list[int]:
    """``windows`` runs of ``length`` frames ``step`` apart, centred at evenly spaced points
    of the video (fewer frames when the video is shorter than one run)."""
    n = int(info.frame_count)
    span = (length - 1) * step + 1
    out: set[int] = set()
    for k in range(windows):
        start = min(max(0, round((k + 0.5) * n / windows - span / 2)), max(0, n - span))
        out.update(i for i in range(start, start + span, step) if i < n)
    return sorted(out)


@functools.lru_cache(maxsize=4)
def _compiled(model: Any) -> Any:
    """A video model's graph compiled for the CPU (once per model and process)."""
    import openvino as ov

    from mesonet.backends import _threads

    config = {"INFERENCE_NUM_THREADS": _threads(None), "INFERENCE_PRECISION_HINT": "f32"}
    return ov.Core().compile_model(model.logit_graph(), "CPU", config)


@dataclass
class TemporalStage:
    """A loaded video model and the rule combining its evidence with the frames'."""

    model: Any  # a video model's module, or its graph (mesonet.models.graph.GraphModel)
    rule: str = "mean"
    windows: int = VIDEO_WINDOWS

    @property
    def length(self) -> int:
        return int(self.model.card.sequence["frames"])

    @property
    def step(self) -> int:
        return int(self.model.card.sequence.get("frame_step", 1))

    @property
    def name(self) -> str:
        from mesonet.pipeline.records import model_label

        return model_label(self.model)

    def logits(self, windows: Sequence[Sequence[np.ndarray]]) -> list[float]:
        """The model's logit for each of ``windows`` of crops (its graph on OpenVINO, or its
        module on PyTorch)."""
        from mesonet.models.graph import GraphModel

        if isinstance(self.model, GraphModel):
            run = _compiled(self.model)
            return [float(np.asarray(run(unit_batch(w)[None])[0]).reshape(-1)[0]) for w in windows]
        import torch

        with torch.no_grad():
            return [
                float(self.model.logits(to_batch(w).contiguous().unsqueeze(0))[0]) for w in windows
            ]

    def probability(self, windows: Sequence[Sequence[np.ndarray]]) -> float:
        """The sigmoid of the mean logit of the model over ``windows`` of crops."""
        return sigmoid(float(np.mean(self.logits(windows))))

    def video(self, analysis: Analysis, path: Path, clock: AnalysisClock) -> MediaResult:
        """The record of one video with temporal evidence (see the module docstring)."""
        info = probe_video(path, limits=analysis.limits, clock=clock)
        indices = sorted(
            set(sample_frame_indices(info, analysis.frames, analysis.fps))
            | set(window_indices(info, self.windows, self.length, self.step))
        )
        decoded = iter_video_frames(path, indices, limits=analysis.limits, clock=clock)
        frames = prefetch(decoded, PREFETCH_FRAMES)
        crops: list[list[np.ndarray]] = []
        try:
            last = indices[-1] if indices else -1
            found = analysis.video_finder.video(frames, last, info.fps, 0.0, clock)
            analysed = score_stream(_keeping(found, crops), analysis.scorer, analysis.batch_size)
        finally:
            frames.close()
        result = analysis.records.video(path, info, indices, analysed)
        flat = [crop for frame_crops in crops for crop in frame_crops]
        self.apply(result, flat, analysis.records)
        return analysis._annotate(result, path, analysed)

    def apply(self, result: MediaResult, crops: Sequence[np.ndarray], records: Any) -> None:
        """Add temporal evidence to a video record whose faces have ``crops`` (in order),
        then combine it with the frame evidence by the rule (:func:`combine`)."""
        result.video_model, result.video_rule = self.name, self.rule
        if result.status != "ok" or not result.tracks:
            return
        by_track: dict[int, list[tuple[int, tuple[float, np.ndarray]]]] = defaultdict(list)
        for face, crop in zip(result.faces, crops, strict=True):
            by_track[face.track or 0].append((face.frame or 0, (face.time_s or 0.0, crop)))
        for track in result.tracks:
            track.frame_probability = track.fake_probability
            windows = track_windows(by_track[track.id], self.length, self.step)
            if windows:
                logits = self.logits([[crop for _, crop in w] for w in windows])
                track.temporal_probability = round(sigmoid(float(np.mean(logits))), 6)
                track.temporal_windows = len(windows)
                track.windows = [
                    WindowScore(w[0][0], w[-1][0], round(sigmoid(z), 6))
                    for w, z in zip(windows, logits, strict=True)
                ]
        combine(result, self.rule, float(self.model.card.threshold), records)


def combine(result: MediaResult, rule: str, video_threshold: float, records: Any) -> None:
    """Each track's score from its ``frame_probability`` and ``temporal_probability`` by
    ``rule`` (see the module docstring), then the decisive track, the video's score, label,
    verdict and ``evidence`` anew. ``records`` holds the frame threshold and video rules."""
    if result.status != "ok" or not result.tracks:
        return
    result.video_rule = rule
    cut = decision_threshold(records.aggregate, records.threshold)
    shift = logit(cut) - logit(video_threshold)
    for track in result.tracks:
        frames = track.frame_probability
        track.fake_probability, track.evidence = frames, "frames"
        if track.temporal_probability is None or rule == "frames":
            continue
        z_t = logit(track.temporal_probability) + shift
        z = z_t if rule == "temporal" else (logit(frames) + z_t) / 2
        track.fake_probability = round(sigmoid(z), 6)
        track.evidence = EVIDENCE[rule]
    decisive = choose_decisive(result.tracks, records.track_share, records.track_size)
    result.fake_probability = decisive.fake_probability
    result.label = records.label(decisive.fake_probability, records.aggregate)
    result.verdict = records.verdict(decisive.fake_probability, records.aggregate)
    result.evidence = decisive.evidence


class VideoEvidence:
    """The video-model settings of a :class:`~mesonet.pipeline.Detector`.

    ``video_model``: a video model (bundled name, path or loaded; a name or path is loaded
    once per process): each face track with a window of its frames also gets a
    ``temporal_probability``, combined with the frame score by ``video_rule`` (``frames``,
    ``temporal`` or ``mean``); each video also analyses ``video_windows`` runs of the
    model's consecutive frames. Images are unaffected. Setting either attribute sets
    ``temporal``, the stage the analysis runs (None: frame evidence only).
    """

    temporal: TemporalStage | None
    _video_rule: str
    _video_windows: int
    _trust_unverified: bool

    def set_video(
        self, model: Any, video_model: Any, rule: str, windows: int, trust: bool = False
    ) -> None:
        """Check the settings (``model`` is the frame model: never a video model) and load
        the video model."""
        check_video_options(rule, windows)
        if is_video_card(getattr(model, "card", None)):
            raise MesonetError(
                f"{model.card.name} is a video model: give it as --video-model (the API's "
                "video_model field), with a frame model as --model"
            )
        self.temporal = None
        self._video_rule, self._video_windows, self._trust_unverified = rule, windows, trust
        self.video_model = video_model

    @property
    def video_model(self) -> str | None:
        """The video model's name (None: frame evidence only). Setting a name or path loads
        it (once per process: see :func:`~mesonet.pipeline.temporal.load_video_model`)."""
        return None if self.temporal is None else self.temporal.name

    @video_model.setter
    def video_model(self, value: Any) -> None:
        self.temporal = None
        if value is not None:
            model = load_video_model(value, self._trust_unverified)
            self.temporal = TemporalStage(model, self._video_rule, self._video_windows)

    @property
    def video_rule(self) -> str:
        """How frame and temporal evidence combine: ``frames``, ``temporal`` or ``mean``."""
        return self._video_rule

    @video_rule.setter
    def video_rule(self, rule: str) -> None:
        check_video_options(rule, self._video_windows)
        self._video_rule = rule
        if self.temporal is not None:  # a new stage: copies of this detector share the old
            self.temporal = replace(self.temporal, rule=rule)


def _keeping(found: Iterable[Found], kept: list[list[np.ndarray]]) -> Iterator[Found]:
    """``found`` as it is, each frame's crops also kept in ``kept``."""
    for frame, frame_crops in found:
        kept.append(list(frame_crops))
        yield frame, frame_crops


def track_windows(faces: Sequence[tuple[int, T]], length: int, step: int = 1) -> list[list[T]]:
    """Windows of ``length`` crops of one track ((frame index, crop) pairs; the crop may
    be any item, a (time, crop) pair for instance): non-overlapping runs of frames ``step``
    apart, or, when no run is that long, its crops in frame order; at most
    :data:`MAX_WINDOWS`, evenly chosen. Empty when the track is shorter."""
    ordered = sorted(faces, key=lambda fc: fc[0])
    if len(ordered) < length:
        return []
    windows: list[list[T]] = []
    run: list[tuple[int, T]] = []
    for frame, crop in ordered:
        if run and frame - run[-1][0] != step:
            run = []
        run.append((frame, crop))
        if len(run) == length:
            windows.append([c for _, c in run])
            run = []
    if not windows:
        windows = [
            [c for _, c in ordered[i : i + length]]
            for i in range(0, len(ordered) - length + 1, length)
        ]
    if len(windows) > MAX_WINDOWS:
        keep = np.linspace(0, len(windows) - 1, MAX_WINDOWS).round().astype(int)
        windows = [windows[i] for i in keep]
    return windows
