"""The robustness benchmark: a model's metrics on a labelled folder, again after each named
degradation (:mod:`mesonet.degradations`) is applied to every file before detection.

Each degradation writes degraded copies of the files it applies to (images as lossless PNG,
videos re-encoded) into a temporary folder with the same real/ and fake/ layout and file
stems, so file-name groups (the manipulation method) survive, and the folder is evaluated as
any other. An image degradation covers the set's images, a video one its videos; each row's
change in AUC is against the undegraded files of that same kind.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2

from mesonet.degradations import Degradation, degrade_image, degrade_video
from mesonet.errors import MesonetError
from mesonet.evaluation.runner import CLASS_FOLDERS, Labelled, collect_labelled, evaluate
from mesonet.inputs import Limits
from mesonet.media import read_image
from mesonet.pipeline import Detector

ROW_KEYS = (
    "n",
    "auc",
    "auc_change",
    "false_alarm_rate",
    "detection_rate",
    "uncertain_rate",
    "not_judged_rate",
    "auc_judged",
)


def _relative(lab: Labelled, data: Path) -> Path:
    """The file's path under its class folder (``real/a/b.jpg`` -> ``real/a/b.jpg``)."""
    return Path(lab.item.path).resolve().relative_to(data.resolve())


def write_degraded(
    labelled: Sequence[Labelled],
    data: Path,
    degradation: Degradation,
    out: Path,
    seed: int = 0,
    workers: int = 2,
    on_file: Callable[[], None] | None = None,
) -> int:
    """Degraded copies of the files of ``degradation``'s kind under ``out`` (same layout);
    returns how many were written. The random parts depend on (seed, name, relative path)."""
    chosen = [lab for lab in labelled if lab.item.kind == degradation.kind]

    def one(lab: Labelled) -> None:
        relative = _relative(lab, data)
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if degradation.kind == "image":
            image = degrade_image(read_image(lab.item.path), degradation, str(relative), seed)
            if not cv2.imwrite(str(target.with_suffix(".png")), image[:, :, ::-1]):
                raise MesonetError(f"could not write a degraded copy of {lab.item.path}")
        else:
            degrade_video(lab.item.path, degradation, target)
        if on_file is not None:
            on_file()

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(one, chosen))
    return len(chosen)


def _row(metrics: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    row = {key: metrics.get(key) for key in ROW_KEYS if key != "auc_change"}
    base_auc = base.get("auc") if base else None
    row["auc_change"] = (
        metrics["auc"] - base_auc if metrics.get("auc") is not None and base_auc else None
    )
    row["skipped"] = metrics.get("skipped")
    return row


def _of_kind(metrics: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The baseline over files of ``kind``: the whole set's, or its images/videos part."""
    if metrics.get("level") == "mixed":
        return metrics.get("images" if kind == "image" else "videos")
    own = "video" if kind == "video" else "frame"
    return metrics if metrics.get("level") == own else None


def evaluate_degraded(
    detector: Detector,
    data: str | Path,
    degradations: Sequence[Degradation],
    *,
    limits: Limits | None = None,
    seed: int = 0,
    workdir: str | Path | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """The robustness table of ``detector`` on the labelled folder ``data``.

    Returns ``{"model", "backend", "seed", "baseline": metrics, "rows": {name: row},
    "metrics": {name: metrics}}``; a row holds n, auc, auc_change (against the undegraded
    files of the same kind), false_alarm_rate (reals called likely forged), detection_rate,
    uncertain_rate and skipped. A degradation with no file of its kind gets no row.
    ``on_progress(stage, done, total)`` follows the work.
    """
    data = Path(data)
    labelled = collect_labelled(data, limits)
    for lab in labelled:  # class folders only: that is what the copies mirror
        if _relative(lab, data).parts[0] not in CLASS_FOLDERS:
            raise MesonetError(f"{lab.item.path}: not under {data}'s real/ or fake/")
    progress = on_progress or (lambda stage, done, total: None)
    count = [0]

    def tick(stage: str, total: int) -> Callable[..., None]:
        count[0] = 0

        def step(*_: Any) -> None:
            count[0] += 1
            progress(stage, count[0], total)

        return step

    baseline = evaluate(detector, data, limits=limits, on_result=tick("none", len(labelled)))
    rows: dict[str, Any] = {"none": _row(baseline, None)}
    every: dict[str, Any] = {"none": baseline}
    for degradation in degradations:
        total = sum(lab.item.kind == degradation.kind for lab in labelled)
        if not total:
            continue
        with tempfile.TemporaryDirectory(prefix="mesonet-degraded-", dir=workdir) as tmp:
            out = Path(tmp)
            write_degraded(
                labelled,
                data,
                degradation,
                out,
                seed,
                on_file=tick(f"{degradation.name}: degrading", total),
            )
            metrics = evaluate(detector, out, on_result=tick(f"{degradation.name}: scoring", total))
        every[degradation.name] = metrics
        rows[degradation.name] = _row(metrics, _of_kind(baseline, degradation.kind))
        rows[degradation.name]["level"] = degradation.level
        rows[degradation.name]["description"] = degradation.description
    return {
        "model": detector.model_name,
        "backend": detector.backend,
        "data": str(data),
        "seed": seed,
        "baseline": baseline,
        "rows": rows,
        "metrics": every,
    }
