"""A self-contained evaluation report: metrics JSON, plots, face grids and one HTML page."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from mesonet.destinations import write_output
from mesonet.evaluation.metrics import _as_arrays
from mesonet.evaluation.plots import plot_confusion, plot_face_grid, plot_reliability, plot_roc

__all__ = ["GRIDS", "write_report"]

#: Face grids in the report: file stem -> (heading, true label, predicted label).
GRIDS: dict[str, tuple[str, int, int]] = {
    "correct_real": ("Real, predicted real (most confident)", 0, 0),
    "correct_fake": ("Fake, predicted fake (most confident)", 1, 1),
    "wrong_real": ("Real, predicted fake (false positives, most confident)", 0, 1),
    "wrong_fake": ("Fake, predicted real (missed fakes, most confident)", 1, 0),
}
MAX_GRID = 32
_PLACEHOLDER = np.full((64, 64, 3), 200, dtype=np.uint8)

_METRIC_ROWS = (
    ("n", "examples"),
    ("auc", "ROC AUC"),
    ("ap", "average precision"),
    ("eer", "equal error rate"),
    ("accuracy", "accuracy"),
    ("precision", "precision (fake)"),
    ("recall", "recall (fake)"),
    ("f1", "F1 (fake)"),
    ("ece", "expected calibration error"),
    ("brier", "Brier score"),
    ("threshold", "threshold"),
)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.plots img { max-width: 48%; height: auto; margin-right: 1%; vertical-align: top; }
.grid img { max-width: 100%; height: auto; }
.note { color: #666; font-size: 0.9em; }
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def _select(y: np.ndarray, s: np.ndarray, threshold: float, true: int, pred: int) -> np.ndarray:
    """Indices of one outcome, most confident first (by distance of score from the label side)."""
    predicted = (s >= threshold).astype(np.int64)
    idx = np.flatnonzero((y == true) & (predicted == pred))
    order = np.argsort(-s[idx] if pred == 1 else s[idx], kind="stable")
    return idx[order]


def _load(load_face: Callable[[str], np.ndarray] | None, path: str) -> np.ndarray:
    """A face image for the grid, or a grey placeholder when there is no loader or it fails."""
    if load_face is None:
        return _PLACEHOLDER
    try:
        image = np.asarray(load_face(path))
    except Exception:  # a broken file must not stop the report
        return _PLACEHOLDER
    if image.ndim not in (2, 3) or image.size == 0:
        return _PLACEHOLDER
    return image


def _caption(score: float, path: str) -> str:
    stem = PurePath(path).stem
    if len(stem) > 22:
        stem = stem[:6] + "…" + stem[-15:]
    return f"p={score:.2f}\n{stem}"


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{label}</td><td>{_fmt(metrics.get(key))}</td></tr>" for key, label in _METRIC_ROWS
    )
    conf = metrics.get("confusion") or {}
    conf_row = ", ".join(f"{k} {_fmt(conf.get(k))}" for k in ("tn", "fp", "fn", "tp"))
    rows += f"<tr><td>confusion</td><td>{conf_row}</td></tr>"
    return f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>"


def _group_table(by_group: Mapping[str, Mapping[str, Any]]) -> str:
    if not by_group:
        return '<p class="note">No groups.</p>'
    keys = [k for k, _ in _METRIC_ROWS if k != "threshold"]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in ["group", *keys])
    body = "".join(
        "<tr><td>"
        + html.escape(name or "(none)")
        + "</td>"
        + "".join(f"<td>{_fmt(m.get(k))}</td>" for k in keys)
        + "</tr>"
        for name, m in by_group.items()
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(
    out_dir: str | Path,
    metrics: Mapping[str, Any],
    y_true: ArrayLike,
    scores: ArrayLike,
    paths: Sequence[str],
    load_face: Callable[[str], np.ndarray] | None = None,
    title: str = "mesonet evaluation",
    threshold: float | None = None,
) -> list[Path]:
    """Write metrics.json, roc.png, confusion.png, reliability.png, four face grids and
    index.html to ``out_dir``.

    The grids show at most 32 of the most confident examples of each outcome (correct and wrong,
    real and fake); ``load_face(path)`` returns an RGB uint8 image, and grey tiles stand in when
    it is None or fails. ``threshold`` defaults to ``metrics["threshold"]`` (else 0.5).
    Returns the files written, index.html last.
    """
    y, s = _as_arrays(y_true, scores)
    if len(paths) != y.size:
        raise ValueError(f"{len(paths)} paths but {y.size} labels")
    if threshold is None:
        threshold = float(metrics.get("threshold") or 0.5)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    metrics_path = out / "metrics.json"
    write_output(metrics_path, json.dumps(metrics, indent=2, allow_nan=False) + "\n", "report")
    written.append(metrics_path)
    written.append(plot_roc(y, s, out / "roc.png", title=title))
    confusion = metrics.get("confusion") or {}
    written.append(plot_confusion(confusion, out / "confusion.png"))
    written.append(plot_reliability(y, s, out / "reliability.png"))

    counts: dict[str, int] = {}
    for stem, (heading, true, pred) in GRIDS.items():
        idx = _select(y, s, threshold, true, pred)
        counts[stem] = int(idx.size)
        shown = idx[:MAX_GRID]
        images = [_load(load_face, str(paths[i])) for i in shown]
        captions = [_caption(float(s[i]), str(paths[i])) for i in shown]
        correct = [true == pred] * len(shown)
        written.append(
            plot_face_grid(images, captions, out / f"{stem}.png", heading, correct=correct)
        )

    index = out / "index.html"
    write_output(index, _html(title, metrics, threshold, counts), "report")
    written.append(index)
    return written


def _html(title: str, metrics: Mapping[str, Any], threshold: float, counts: dict[str, int]) -> str:
    grids = "".join(
        f'<h2>{html.escape(heading)}</h2><p class="note">{counts[stem]:,} examples, '
        f"showing up to {MAX_GRID}.</p>"
        f'<div class="grid"><img src="{stem}.png" alt="{html.escape(heading)}"></div>'
        for stem, (heading, _, _) in GRIDS.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">Fake is the positive class; an example is labelled fake when its fake
probability is at least {threshold:.4g}.</p>
<h2>Metrics</h2>
{_metrics_table(metrics)}
<h2>By group</h2>
{_group_table(metrics.get("by_group") or {})}
<h2>Plots</h2>
<div class="plots"><img src="roc.png" alt="ROC curve"><img src="confusion.png"
 alt="Confusion matrix"></div>
<h2>Calibration</h2>
<p class="note">Of the examples scored about p, a share p should be fake: bars on the
diagonal mean the probabilities can be read as such (expected calibration error, ECE, 0).</p>
<div class="plots"><img src="reliability.png" alt="Reliability diagram"></div>
{grids}
</body>
</html>
"""
