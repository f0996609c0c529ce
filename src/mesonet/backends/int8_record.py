"""What a card's int8 record must show for ``auto`` to run the model in int8 (no PyTorch:
the shipped graphs are chosen by it too)."""

from __future__ import annotations

from typing import Any

AUC_TOLERANCE = 0.005
"""Largest AUC change (either way) on a set for ``auto`` to pick int8."""
REQUIRED_SETS = ("dfdc_faces_test", "mesonet_deepfake_val", "ffpp_faces_dev")
"""The dev-visible image sets a card's ``int8.auc_change`` must cover for ``auto`` (the
fourth, the ffpp-c40 videos, is checked when recorded)."""


def record_passes(card: Any) -> bool:
    """Whether ``card`` records an int8 AUC change within :data:`AUC_TOLERANCE` on every
    required set and on every other set it records."""
    record = getattr(card, "int8", None) or {}
    changes = record.get("auc_change") or {}
    if not all(name in changes for name in REQUIRED_SETS):
        return False
    try:
        return all(abs(float(d)) <= AUC_TOLERANCE for d in changes.values())
    except (TypeError, ValueError):
        return False


def arithmetic(backend: str, int8_graph: str | None = None) -> str:
    """What a scan's settings record says about the arithmetic of ``backend``: ``exact``
    (the fp32 engines agree to 1e-4), ``bf16``, or ``int8`` with the name of the int8 graph
    it runs (``int8_graph``, its cache entry: another int8 graph gives other scores)."""
    if "bf16" in backend:
        return "bf16"
    if "int8" not in backend:
        return "exact"
    return f"int8 {int8_graph}" if int8_graph else "int8"
