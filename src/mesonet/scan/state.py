"""What a scan's records depend on, kept beside its output so a resume never mixes settings.

A record's verdict depends on more than the model's name: its weights (a retrained file
keeps its name), its card (a recalibrated one too: calibration, threshold, verdict bands,
preprocessing), an ensemble's members and their weights, and the scan's own settings (faces
found or not, threshold, frames or fps, aggregation, crop margin, track rules, the
detector's thresholds, bf16 or exact inference). :func:`scan_settings` lists them;
:func:`write_settings` records them in ``OUT.settings.json`` (written whole, through
:mod:`mesonet.destinations`) before the first record; a later scan into ``OUT`` compares
its own with :func:`differences` and is refused, naming what differs, unless it restarts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mesonet.destinations import write_output
from mesonet.errors import MesonetError

log = logging.getLogger(__name__)

FORMAT = 1
SUFFIX = ".settings.json"
# card fields that only describe a model; every other field can change a record
DESCRIPTIVE = {"description", "normalization", "label_convention", "training", "metrics"}
DESCRIPTIVE |= {"source", "license"}
_WORDS = {
    "model": "model name",
    "weights": "model weights (sha256)",
    "card": "model card (threshold, calibration, bands, preprocessing or members)",
    "video_model": "video model",
}


def settings_path(output: str | Path) -> Path:
    """Where the settings of the scan writing ``output`` are kept."""
    output = Path(output)
    return output.with_name(output.name + SUFFIX)


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _members(model: Any) -> list[Any]:
    members = getattr(model, "members", None)
    return list(members) if members is not None else [model]


def weights_digests(model: Any) -> list[str]:
    """The sha256 of each network's tensors (an ensemble's members', in order), computed
    from the weights in memory: a file whose card carries no digest is covered too."""
    from mesonet.models.card import tensors_sha256

    return [
        getattr(member, "weights_sha256", "") or tensors_sha256(member.state_dict())
        for member in _members(model)
    ]


def card_digest(model: Any) -> str:
    """A digest of what the cards of ``model`` (and its members) say about scoring."""

    def scoring(card: Any) -> dict[str, Any]:
        if card is None:
            return {}
        fields = card.__dict__ if hasattr(card, "__dict__") else {}
        return {k: v for k, v in sorted(fields.items()) if k not in DESCRIPTIVE}

    parts = {
        "card": scoring(getattr(model, "card", None)),
        "members": [scoring(getattr(m, "card", None)) for m in getattr(model, "members", [])],
        "member_weights": list(getattr(model, "weights", []) or []),
    }
    return _digest(parts)


def scan_settings(detector: Any) -> dict[str, Any]:
    """Every setting of ``detector`` that changes a scan's records, as JSON values."""
    options = getattr(detector, "_detector_options", {}) or {}
    temporal = getattr(detector, "temporal", None)  # a video model of face tracks, if any
    backend = str(getattr(detector, "backend", ""))
    fps = getattr(detector, "fps", None)
    return {
        "model": detector.model_name,
        "weights": weights_digests(detector.model),
        "card": card_digest(detector.model),
        "faces": getattr(detector, "faces", None),
        "threshold": getattr(detector, "threshold", None),
        "frames": None if fps is not None else getattr(detector, "frames", None),
        "fps": fps,
        "aggregate": getattr(detector, "aggregate", None),
        "margin": getattr(detector, "margin", None),
        "track_share": getattr(detector, "track_share", None),
        "track_size": getattr(detector, "track_size", None),
        "redetect_s": getattr(detector, "redetect_s", None),
        "video_detect_side": getattr(detector, "video_detect_side", None),
        "min_face_size": options.get("min_face_size"),
        "face_confidence": options.get("face_confidence"),
        "inference": _inference(detector.model, backend),  # exact engines agree (1e-4)
        "video_model": None if temporal is None else video_settings(temporal),
    }


def _inference(model: Any, backend: str) -> str:
    """What the records' arithmetic is (:func:`mesonet.backends.int8_record.arithmetic`); a
    shipped int8 graph is named by its entry in the PyTorch path's cache (the same graph)."""
    entry = getattr(model, "int8_entry", None)
    if entry is not None:  # a model in its graph form
        from mesonet.backends.int8_record import arithmetic

        return arithmetic(backend, entry or None)
    from mesonet.backends.int8_choice import inference_kind

    return inference_kind(model, backend)


def video_settings(temporal: Any) -> dict[str, Any]:
    """The video model's name, weights and card digests, and how its evidence is used."""
    model = temporal.model
    card = getattr(model, "card", None)
    return {
        "name": getattr(card, "name", type(model).__name__),
        "weights": weights_digests(model),
        "card": card_digest(model),
        "rule": getattr(temporal, "rule", None),
        "windows": getattr(temporal, "windows", None),
    }


def _shown(key: str, value: Any) -> str:
    if isinstance(value, dict):  # the video model
        return f"{value.get('name')} ({value.get('rule')}, {str(value.get('card'))[:8]})"
    if key == "weights" and isinstance(value, list):
        return "+".join(str(v)[:12] for v in value)
    if key == "card" and isinstance(value, str):
        return value[:12]
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    return "none" if value is None else str(value)


def differences(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``key: old -> new`` for every setting both record and that differs."""
    return [
        f"{_WORDS.get(key, key)}: {_shown(key, before[key])} -> {_shown(key, value)}"
        for key, value in now.items()
        if key in before and before[key] != value
    ]


def read_settings(output: str | Path) -> dict[str, Any] | None:
    """The settings recorded for ``output``, or None when none are."""
    path = settings_path(output)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MesonetError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
        settings = data["settings"]
        if not isinstance(settings, dict):
            raise TypeError("settings is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise MesonetError(
            f"{path} is not a readable record of the scan's settings ({exc}): pass --restart "
            "to scan again from the start, or choose another output"
        ) from None
    return settings


def write_settings(output: str | Path, settings: Mapping[str, Any]) -> Path:
    """Record ``settings`` for ``output`` (whole or not at all)."""
    from mesonet import __version__

    data = {"format": FORMAT, "mesonet": __version__, "settings": dict(settings)}
    return write_output(settings_path(output), json.dumps(data, indent=2) + "\n", "scan settings")


def check_resume(
    output: Path, models: set[str], settings: Mapping[str, Any], *, restart: bool
) -> None:
    """Refuse (``MesonetError``, exit 2) to add records made with ``settings`` to ``output``,
    which holds records (of ``models``), when they were made otherwise (``restart``: the
    caller starts over instead). An output from before settings were recorded is taken over
    when its records name this model, with a warning."""
    if restart:
        return
    before = read_settings(output)
    if before is None:
        if models - {settings["model"]}:
            raise MesonetError(
                f"{output} holds results of {', '.join(sorted(models))}, not of "
                f"{settings['model']}: scan into another output (or use that model), or pass "
                "--restart to start over"
            )
        log.warning(
            "%s records no settings (an older mesonet wrote it): resuming it with these", output
        )
        return
    changed = differences(before, settings)
    if changed:
        hint = ""
        now = str(settings.get("inference"))
        if before.get("inference") == "exact" and now.startswith("int8"):
            hint = " (--backend auto runs this model in int8 now; --backend openvino as before)"
        raise MesonetError(
            f"{output} was scanned with other settings ({'; '.join(changed)}): rerun with the "
            f"same ones{hint}, scan into another output, or pass --restart to start over"
        )
