"""Which int8 graph runs: the card's measured record, the cache and the statistics it ships.

**What ``auto`` does** (:func:`auto_int8`): it runs a model in int8 only when its card
records an AUC change within :data:`AUC_TOLERANCE` on every one of :data:`REQUIRED_SETS`
(and on any other set recorded) *and* it can run the graph that was measured: the one made
from the very calibration crops the card names (same digest), found in the cache or rebuilt
there once from the statistics the card ships (a few seconds, on the first run; not without
a writable cache, ``MESONET_NO_CACHE``). Otherwise ``auto`` stays fp32. The explicit
``--backend openvino-int8`` (the user's choice of a non-exact engine, as ``openvino-bf16``)
quantises on the crops given (``create_scorer(..., calibration=FOLDER)``), else runs the
graph ``auto`` would, else the newest int8 graph of this model in the cache; with none it
refuses, saying how to make one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from torch import nn

from mesonet.backends.int8 import (
    ENTRY_FILES,
    FORMAT,
    FROM_STATISTICS,
    cached_path,
    entry_name,
    model_key,
    quantize,
)
from mesonet.backends.int8_record import arithmetic
from mesonet.backends.int8_record import record_passes as record_passes

log = logging.getLogger(__name__)


def fp32_members(model: nn.Module) -> list[str]:
    """The ensemble members the card's int8 record keeps whole in fp32 (none when absent)."""
    record = getattr(getattr(model, "card", None), "int8", None) or {}
    names = record.get("fp32_members") or []
    return sorted(n for n in names if isinstance(n, str))


def recorded_path(model: nn.Module) -> Path | None:
    """The cached int8 graph of the calibration ``model``'s card names, if there is one (and,
    when the record names the NNCF version that made the graph measured, one made by it):
    the graph quantised here on those very crops, else the one rebuilt from the statistics
    file the card ships (its sha256 is part of the entry's name: a graph rebuilt from
    another card's statistics is never taken for this one's)."""
    record = getattr(getattr(model, "card", None), "int8", None) or {}
    digest = (record.get("calibration") or {}).get("sha256")
    if not isinstance(digest, str):
        return None
    shipped = (record.get("statistics") or {}).get("sha256")
    try:
        path = cached_path(model, digest, fp32_members(model))
        if path is None and isinstance(shipped, str):
            path = cached_path(model, digest, fp32_members(model), shipped)
    except Exception as exc:  # noqa: BLE001 - a model the graph digest cannot read: no int8
        log.debug("no int8 graph for this model: %s", exc)
        return None
    if path is not None and "nncf" in record:
        try:
            made = json.loads((path.parent / "calibration.json").read_text()).get("nncf")
        except (OSError, ValueError, AttributeError):
            made = None
        if _release(made) != _release(record["nncf"]):
            log.debug("int8 graph %s made by NNCF %s, not %s", path.parent, made, record["nncf"])
            return None
    return path


def _release(version: Any) -> str:
    """``major.minor`` of a version string (NNCF's recipe changes between releases, not
    within one), or ``""``."""
    return ".".join(str(version).split(".")[:2]) if isinstance(version, str) else ""


def shipped_statistics(model: nn.Module) -> Path | None:
    """The int8 statistics file the card's record names (``int8.statistics``: ``file``
    relative to the card, ``sha256`` of its bytes), when it is there and intact."""
    record = getattr(getattr(model, "card", None), "int8", None) or {}
    shipped = record.get("statistics")
    card_path = getattr(model, "card_path", None)
    if not isinstance(shipped, dict) or card_path is None:
        return None
    name, digest = shipped.get("file"), shipped.get("sha256")
    if not isinstance(name, str) or not isinstance(digest, str) or Path(name).is_absolute():
        return None
    path = Path(card_path).parent / name
    try:
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
    if actual != digest:
        log.warning("%s: int8 statistics do not match their card's digest: not used", path)
        return None
    return path


def auto_int8(model: nn.Module) -> Path | None:
    """The int8 graph ``auto`` may run for ``model``: only with a passing measured record
    on its card and the very graph that was measured (:func:`measured_path`)."""
    if not record_passes(getattr(model, "card", None)):
        return None
    return measured_path(model)


def measured_path(model: nn.Module) -> Path | None:
    """The int8 graph the card's record measured, found in the cache or rebuilt there once
    from the statistics the card ships (see the module), or None. One build per graph:
    a second thread asking meanwhile waits for the first one's and reads it."""
    from mesonet.backends.cache import key_lock, writable_folder

    record = getattr(getattr(model, "card", None), "int8", None) or {}
    digest = (record.get("calibration") or {}).get("sha256")
    if not isinstance(digest, str):
        return None
    try:
        key = entry_name(model, digest, fp32_members(model))
    except Exception as exc:  # noqa: BLE001 - a model the graph digest cannot read: no int8
        log.debug("no int8 graph for this model: %s", exc)
        return None
    with key_lock(f"openvino-int8/{key}"):
        path = recorded_path(model)
        statistics = shipped_statistics(model) if path is None else None
        if statistics is None:
            return path
        if writable_folder("openvino-int8") is None:
            log.debug("no writable cache for an int8 graph: %s runs in fp32", model.card.name)
            return None
        log.info("making the int8 graph of %s once from %s", model.card.name, statistics.name)
        try:
            quantize(model, statistics=statistics, fp32_members=fp32_members(model))
        except ImportError:
            log.debug("no NNCF: %s runs in fp32", model.card.name)
            return None
        except Exception as exc:  # noqa: BLE001 - any failure here only means fp32
            log.warning("could not make the int8 graph of %s (%s): fp32", model.card.name, exc)
            return None
        return recorded_path(model)


def explicit_path(model: nn.Module) -> Path | None:
    """The int8 graph an explicit ``openvino-int8`` runs without calibration data: the one
    the card's record measured (:func:`measured_path`), else the newest cached for this
    model."""
    from mesonet.backends.cache import cache_root, entry_intact

    path = measured_path(model)
    if path is not None:
        return path
    try:
        pattern = f"{model_key(model)}-*-{FORMAT}*/model.xml"
    except Exception as exc:  # noqa: BLE001 - a model the graph digest cannot read
        log.debug("no int8 graph for this model: %s", exc)
        return None
    found = [  # quantised here on crops: never a graph rebuilt from a card's statistics
        p
        for p in (cache_root() / "openvino-int8").glob(pattern)
        if FROM_STATISTICS not in p.parent.name
    ]
    for path in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        if entry_intact(path.parent, ENTRY_FILES):
            return path
    return None


def inference_kind(model: nn.Module, backend: str) -> str:
    """What a scan's settings record says about its arithmetic: ``exact`` (the fp32 engines
    agree to 1e-4), ``bf16``, or ``int8`` with the cache entry (model and calibration
    digests) of the int8 graph it runs (another int8 graph gives other scores)."""
    path = explicit_path(model) if "int8" in backend else None
    return arithmetic(backend, path.parent.name if path is not None else None)
