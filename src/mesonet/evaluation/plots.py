"""Evaluation figures written as PNG files: ROC, confusion matrix, face grids, training curves.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, so nothing here
touches pyplot's global state or the user's backend. Empty inputs give a figure that says so
rather than an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from numpy.typing import ArrayLike
from sklearn.metrics import roc_auc_score, roc_curve

from mesonet.destinations import replacing
from mesonet.evaluation.metrics import (
    ECE_BINS,
    _as_arrays,
    _both_classes,
    _eer_from_roc,
    calibration_bins,
    expected_calibration_error,
)

__all__ = [
    "plot_confusion",
    "plot_face_grid",
    "plot_reliability",
    "plot_roc",
    "plot_training_curves",
]

_DPI = 100
_CORRECT = "#2e7d32"
_WRONG = "#c62828"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out, "chart", durable=False) as handle:  # whole, or not at all
        fig.savefig(handle, format="png", dpi=_DPI, facecolor="white")
    return out


def _message(path: str | Path, title: str, message: str) -> Path:
    """A small figure with a title and a centred message (for empty or undefined inputs)."""
    fig = _figure(6, 3)
    ax = fig.add_subplot()
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=13)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=14, color="#555555")
    return _save(fig, path)


def plot_roc(y_true: ArrayLike, scores: ArrayLike, path: str | Path, title: str = "ROC") -> Path:
    """ROC curve (fake = positive) with the chance diagonal, AUC in the legend, EER marked."""
    y, s = _as_arrays(y_true, scores)
    if not y.size:
        return _message(path, title, "no examples")
    if not _both_classes(y):
        only = "fake" if y[0] == 1 else "real"
        return _message(path, title, f"ROC undefined: only {only} examples")
    fpr, tpr, _ = roc_curve(y, s)
    auc = float(roc_auc_score(y, s))
    eer, _ = _eer_from_roc(fpr, tpr)

    fig = _figure(5.5, 5.5)
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, color="#1565c0", lw=2, label=f"ROC (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="#9e9e9e", lw=1, ls="--", label="chance")
    ax.plot([0, 1], [1, 0], color="#bdbdbd", lw=0.8, ls=":")
    ax.plot([eer], [1.0 - eer], "o", color=_WRONG, ms=8, label=f"EER = {eer:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("False positive rate (real called fake)", fontsize=11)
    ax.set_ylabel("True positive rate (fake caught)", fontsize=11)
    ax.set_title(f"{title}  (n = {y.size})" if title else f"n = {y.size}", fontsize=13)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=10)
    return _save(fig, path)


def plot_reliability(
    y_true: ArrayLike, scores: ArrayLike, path: str | Path, title: str = "Reliability"
) -> Path:
    """Reliability diagram: for each of 15 equal-width bins of the fake probability, the
    share of fakes against the mean probability (on the diagonal = calibrated), the bins'
    example counts below, and the expected calibration error in the title."""
    y, s = _as_arrays(y_true, scores)
    if not y.size:
        return _message(path, title, "no examples")
    bins = calibration_bins(y, s, ECE_BINS)
    ece = expected_calibration_error(y, s, ECE_BINS)
    fig = _figure(5.5, 6.5)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    width = 1.0 / ECE_BINS
    top.bar(
        [b["low"] for b in bins],
        [b["fake_share"] for b in bins],
        width=width,
        align="edge",
        color="#90caf9",
        edgecolor="#1565c0",
        label="share of fakes in the bin",
    )
    top.plot(
        [b["mean_probability"] for b in bins],
        [b["fake_share"] for b in bins],
        "o",
        color="#1565c0",
        ms=4,
        label="at the bin's mean probability",
    )
    top.plot([0, 1], [0, 1], color="#9e9e9e", lw=1, ls="--", label="calibrated")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.01)
    top.set_ylabel("Share of fakes", fontsize=11)
    top.set_title(f"{title}  (ECE = {ece:.3f}, n = {y.size})", fontsize=12)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=9)
    bottom.bar(
        [b["low"] for b in bins],
        [b["n"] for b in bins],
        width=width,
        align="edge",
        color="#bdbdbd",
        edgecolor="#616161",
    )
    bottom.set_xlabel("Fake probability (15 bins)", fontsize=11)
    bottom.set_ylabel("Examples", fontsize=11)
    bottom.grid(alpha=0.3)
    return _save(fig, path)


def plot_confusion(
    confusion: Mapping[str, int], path: str | Path, title: str = "Confusion matrix"
) -> Path:
    """2x2 confusion matrix (rows true, columns predicted; real, fake) with counts and row %."""
    tn, fp = int(confusion.get("tn", 0)), int(confusion.get("fp", 0))
    fn, tp = int(confusion.get("fn", 0)), int(confusion.get("tp", 0))
    counts = np.array([[tn, fp], [fn, tp]], dtype=np.int64)
    if counts.sum() == 0:
        return _message(path, title, "no examples")
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros((2, 2)), where=rows > 0)

    fig = _figure(5, 4.5)
    ax = fig.add_subplot()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            pct = f"{100 * share[i, j]:.1f}%" if rows[i, 0] else "-"
            colour = "white" if share[i, j] > 0.6 else "black"
            ax.text(
                j,
                i,
                f"{counts[i, j]:,}\n{pct}",
                ha="center",
                va="center",
                fontsize=14,
                color=colour,
            )
    labels = ["real", "fake"]
    ax.set_xticks([0, 1], labels=labels, fontsize=11)
    ax.set_yticks([0, 1], labels=labels, fontsize=11)
    ax.set_xlabel("Predicted", fontsize=12)
    ax.set_ylabel("True", fontsize=12)
    ax.set_title(title, fontsize=13)
    return _save(fig, path)


def _border(ax: Axes, colour: str) -> None:
    ax.add_patch(
        Rectangle(
            (0, 0), 1, 1, transform=ax.transAxes, fill=False, edgecolor=colour, lw=4, clip_on=False
        )
    )


def plot_face_grid(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    path: str | Path,
    title: str = "",
    cols: int = 8,
    correct: Sequence[bool] | None = None,
) -> Path:
    """Grid of face thumbnails (RGB uint8 arrays) with a caption under each.

    ``correct`` optionally colours each border green (right) or red (wrong).
    """
    if len(captions) != len(images):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    if correct is not None and len(correct) != len(images):
        raise ValueError(f"{len(images)} images but {len(correct)} correct flags")
    if not images:
        return _message(path, title, "no examples")
    cols = max(1, min(cols, len(images)))
    rows = math.ceil(len(images) / cols)
    fig = _figure(max(1.7 * cols, 4.0), 2.0 * rows + 0.5)
    if title:
        fig.suptitle(title, fontsize=13)
    grid = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(grid.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= len(images):
            ax.set_axis_off()
            continue
        image = np.asarray(images[k])
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.set_xlabel(captions[k], fontsize=8, linespacing=1.1)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if correct is not None:
            _border(ax, _CORRECT if correct[k] else _WRONG)
    return _save(fig, path)


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) for rows whose ``key`` holds a number."""
    xs: list[float] = []
    ys: list[float] = []
    for i, row in enumerate(rows):
        value = row.get(key)
        if value is None or not math.isfinite(float(value)):
            continue
        xs.append(float(row.get("epoch", i + 1)))
        ys.append(float(value))
    return xs, ys


def plot_training_curves(
    rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "Training"
) -> Path:
    """Two panels: train and validation loss; validation AUC with the learning rate (log axis).

    Each row is one epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val_auc``, ``lr``; missing
    or ``None`` values are skipped. Rows with ``sources`` (per-source validation AUCs, several
    sources) plot one line per source and the selection ``score`` instead of the pooled AUC.
    """
    if not rows:
        return _message(path, title, "no examples")
    fig = _figure(11, 4.2)
    fig.suptitle(title, fontsize=13)
    loss_ax, auc_ax = fig.subplots(1, 2)
    for key, label, colour in (
        ("train_loss", "train loss", "#1565c0"),
        ("val_loss", "validation loss", "#ef6c00"),
    ):
        xs, ys = _series(rows, key)
        if xs:
            loss_ax.plot(xs, ys, "o-", ms=3, color=colour, label=label)
    loss_ax.set_xlabel("epoch", fontsize=11)
    loss_ax.set_ylabel("loss", fontsize=11)
    loss_ax.set_title("Loss", fontsize=12)
    loss_ax.grid(alpha=0.3)
    if loss_ax.lines:
        loss_ax.legend(fontsize=10)

    names = list(dict.fromkeys(n for r in rows for n in (r.get("sources") or {})))
    key, key_label = "val_auc", "validation AUC"
    if len(names) > 1:
        key, key_label = "score", "selection score"
        palette = matplotlib.colormaps["tab10"]
        for k, name in enumerate(names):
            per = [
                {
                    "epoch": r.get("epoch", i + 1),
                    "auc": (r.get("sources") or {}).get(name, {}).get("auc"),
                }
                for i, r in enumerate(rows)
            ]
            sx, sy = _series(per, "auc")
            if sx:
                auc_ax.plot(sx, sy, "-", lw=1.2, alpha=0.8, color=palette(k % 10), label=name)
    xs, ys = _series(rows, key)
    if xs:
        auc_ax.plot(xs, ys, "o-", ms=3, color="#2e7d32", lw=2.2, label=key_label)
        best = int(np.argmax(ys))
        auc_ax.plot(
            [xs[best]],
            [ys[best]],
            "*",
            ms=12,
            color="#2e7d32",
            label=f"best {ys[best]:.3f} (epoch {xs[best]:g})",
        )
    auc_ax.set_xlabel("epoch", fontsize=11)
    auc_ax.set_ylabel("AUC", fontsize=11)
    auc_ax.set_title("Validation AUC and learning rate", fontsize=12)
    auc_ax.grid(alpha=0.3)
    handles, labels = auc_ax.get_legend_handles_labels()

    xs, ys = _series(rows, "lr")
    if xs:
        lr_ax = auc_ax.twinx()
        lr_ax.plot(xs, ys, "--", color="#757575", label="learning rate")
        if min(ys) > 0:
            lr_ax.set_yscale("log")
        lr_ax.set_ylabel("learning rate", fontsize=11)
        more_h, more_l = lr_ax.get_legend_handles_labels()
        handles, labels = handles + more_h, labels + more_l
    if handles:
        auc_ax.legend(handles, labels, fontsize=10, loc="lower right")
    return _save(fig, path)
