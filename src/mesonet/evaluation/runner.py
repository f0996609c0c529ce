"""Evaluate a Detector on a labelled folder: ``real/`` and ``fake/`` (or the authors' ``df/``).

Images are scored one per file (frame level), videos one per file after aggregation (video
level). Files that end ``no_face`` or ``error`` have no score: they are counted, not scored.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mesonet.destinations import check_output_dir, writing
from mesonet.errors import MesonetError
from mesonet.evaluation.metrics import compute_metrics, group_of
from mesonet.evaluation.report import write_report
from mesonet.faces import Face, align_face
from mesonet.inputs import Input, Limits, discover
from mesonet.media import iter_video_frames, read_image
from mesonet.pipeline import Detector
from mesonet.results import MediaResult

CLASS_FOLDERS = {"real": 0, "fake": 1, "df": 1}


def label_of(path: str | Path) -> int | None:
    """A file's label from the class folder on its path (1 = fake), None outside them: how a
    record written by ``predict`` on a labelled folder is labelled again."""
    labels = [CLASS_FOLDERS[part] for part in Path(path).parts if part in CLASS_FOLDERS]
    return labels[-1] if labels else None


@dataclass(frozen=True)
class Labelled:
    """An input file and its true label (1 = fake)."""

    item: Input
    label: int


def collect_labelled(data: str | Path, limits: Limits | None = None) -> list[Labelled]:
    """Media under ``data/real`` and ``data/fake`` (or ``data/df``), sub-folders included.

    ``limits`` caps the whole set as ``predict`` caps its inputs (``--limit 50``: at most 50
    images and 50 videos in all); the files are taken alternately from the real and the fake
    folders, so that a limited set still holds both classes.
    """
    data = Path(data)
    if not data.is_dir():
        raise MesonetError(f"{data}: not a folder (expected real/ and fake/ inside)")
    folders = {name: data / name for name in CLASS_FOLDERS if (data / name).is_dir()}
    if not any(CLASS_FOLDERS[n] == 0 for n in folders) or not any(
        CLASS_FOLDERS[n] == 1 for n in folders
    ):
        raise MesonetError(f"{data}: needs a real/ and a fake/ (or df/) folder of images or videos")
    by_class: dict[int, list[Labelled]] = {0: [], 1: []}
    for name, folder in folders.items():  # each capped alone first: no need to list more
        label = CLASS_FOLDERS[name]
        by_class[label] += [
            Labelled(item, label) for item in discover([folder], recursive=True, limits=limits)
        ]
    alternate = [
        lab for pair in itertools.zip_longest(by_class[0], by_class[1]) for lab in pair if lab
    ]
    labelled = (limits or Limits()).take(alternate, kind=lambda lab: lab.item.kind)
    if not labelled:
        raise MesonetError(f"{data}: no images or videos under real/ and fake/")
    return labelled


def _metrics_for(
    labelled: list[Labelled], results: list[MediaResult], threshold: float
) -> dict[str, Any]:
    scored = [(lab, r) for lab, r in zip(labelled, results, strict=True) if r.status == "ok"]
    skipped = Counter(r.status for r in results if r.status != "ok")
    y = np.array([lab.label for lab, _ in scored], dtype=int)
    s = np.array([r.fake_probability for _, r in scored], dtype=float)
    groups = [group_of(Path(r.path).name) for _, r in scored]
    metrics = compute_metrics(y, s, threshold, groups=groups)
    metrics["skipped"] = {"no_face": skipped.get("no_face", 0), "error": skipped.get("error", 0)}
    metrics.update(verdict_rates(y, [r.verdict for _, r in scored]))
    judged = [i for i, (_, r) in enumerate(scored) if r.note is None]
    metrics["not_judged_rate"] = 1 - len(judged) / len(scored) if scored else None
    if len(judged) == len(scored):  # every file judged: the same files, the same AUC
        metrics["auc_judged"] = metrics["auc"]
    else:  # compute_metrics gives None where a class is missing
        metrics["auc_judged"] = (
            compute_metrics(y[judged], s[judged], threshold)["auc"] if judged else None
        )
    return metrics


def verdict_rates(labels, verdicts) -> dict[str, Any]:
    """What a user is told, per class: ``false_alarm_rate`` is the share of real files called
    ``likely forged``, ``detection_rate`` the share of forged ones; ``uncertain_rate`` the
    share of all called ``uncertain``. None where a class is absent."""
    labels = list(labels)
    forged = [v == "likely forged" for v in verdicts]
    reals = [f for f, y in zip(forged, labels, strict=True) if y == 0]
    fakes = [f for f, y in zip(forged, labels, strict=True) if y == 1]
    uncertain = [v == "uncertain" for v in verdicts]
    return {
        "false_alarm_rate": sum(reals) / len(reals) if reals else None,
        "false_alarms": sum(reals),
        "detection_rate": sum(fakes) / len(fakes) if fakes else None,
        "uncertain_rate": sum(uncertain) / len(uncertain) if uncertain else None,
    }


def evaluate(
    detector: Detector,
    data: str | Path,
    *,
    limits: Limits | None = None,
    report_dir: str | Path | None = None,
    on_result: Callable[[MediaResult, int], None] | None = None,
) -> dict[str, Any]:
    """Metrics of ``detector`` on the labelled folder ``data`` (fake = positive class).

    Returns the metrics of :func:`~mesonet.evaluation.metrics.compute_metrics` over every
    scored file, plus ``level`` (frame, video or mixed), ``model``, ``skipped`` (files with no
    face or an error) and, when the folder mixes images and videos, ``images`` and ``videos``
    with the metrics of each. ``on_result(result, total)`` is called as files finish.
    """
    labelled = collect_labelled(data, limits)
    if report_dir is not None:  # an unusable folder is refused before the work, not after
        check_output_dir(report_dir, "report folder", create=False)
    results: list[MediaResult] = []
    for result in detector.predict_items(lab.item for lab in labelled):
        results.append(result)
        if on_result is not None:
            on_result(result, len(labelled))
    threshold = detector.threshold
    metrics = _metrics_for(labelled, results, threshold)
    kinds = {lab.item.kind for lab in labelled}
    metrics["level"] = "mixed" if len(kinds) > 1 else ("video" if "video" in kinds else "frame")
    metrics["model"] = detector.model_name
    metrics["backend"] = detector.backend  # openvino-int8 scores differ a little from fp32
    if len(kinds) > 1:
        for kind, key in (("image", "images"), ("video", "videos")):
            pairs = [
                (lab, r) for lab, r in zip(labelled, results, strict=True) if lab.item.kind == kind
            ]
            metrics[key] = _metrics_for([p[0] for p in pairs], [p[1] for p in pairs], threshold)
    if report_dir is not None:
        scored = [(lab, r) for lab, r in zip(labelled, results, strict=True) if r.status == "ok"]
        with writing(report_dir, "report"):
            write_report(
                report_dir,
                metrics,
                [lab.label for lab, _ in scored],
                [r.fake_probability for _, r in scored],
                [r.path for _, r in scored],
                load_face=_face_loader({r.path: r for _, r in scored}, detector),
                title=f"mesonet evaluation: {detector.model_name} on {Path(data).name}",
                threshold=threshold,
            )
    return metrics


def _face_loader(
    results: dict[str, MediaResult], detector: Detector
) -> Callable[[str], np.ndarray]:
    """For the report grids: the most suspicious face behind a file's score, as the model
    saw it (for a video, on its decisive track)."""

    def load(path: str) -> np.ndarray:
        result = results[path]
        face = max(result.deciding_faces(), key=lambda f: f.fake_probability)
        if result.kind == "video":
            frame = next(iter(_frames(path, face.frame or 0)))
        else:
            frame = read_image(path)
        if detector.faces == "none":
            return frame
        box = Face(box=tuple(face.box), landmarks=(), confidence=face.confidence or 1.0)
        return align_face(frame, box, 128, detector.margin)

    return load


def _frames(path: str, index: int) -> Iterator[np.ndarray]:
    for frame in iter_video_frames(path, [index]):
        yield frame.image
