"""Which file a model name means: bundled names, paths, and the members of ensemble cards.

A model is named by a bundled name (``meso4.dfdc``) or a path. An ensemble card's members
are read from the card's own folder (``mdl/mine.json`` with member ``c1.safetensors`` means
``mdl/c1.safetensors``, wherever the command runs), and written back relative to the card a
model is saved as (:func:`relative_members`). In memory, a loaded member is named by its
*reference*: its bundled name, or its file's absolute path, which mean the same from anywhere.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from mesonet.errors import ModelError
from mesonet.models.combine import is_ensemble_name

WEIGHTS_SUFFIX = ".safetensors"
ENSEMBLE_SUFFIX = ".json"
MODEL_SUFFIXES = (WEIGHTS_SUFFIX, ENSEMBLE_SUFFIX)


def _weights_dir() -> Path:
    return Path(str(resources.files("mesonet.models") / "weights"))


def bundled_models() -> dict[str, Path]:
    """Names of the models shipped in the package (weights and ensemble cards), mapped to
    their files."""
    folder = _weights_dir()
    if not folder.is_dir():
        return {}
    files = [*folder.glob("*" + WEIGHTS_SUFFIX), *folder.glob("*" + ENSEMBLE_SUFFIX)]
    return {p.name.removesuffix(p.suffix): p for p in sorted(files, key=lambda p: p.name)}


def default_model_name() -> str | None:
    """The model `predict`, `evaluate` and the API use when none is named."""
    names = bundled_models()
    for preferred in ("ensemble.lite0-f2f", "ensemble.dfdc-f2f-paper", "meso4.mix", "meso4.dfdc"):
        if preferred in names:
            return preferred
    return next(iter(names), None)


def file_kind(path: Path) -> str:
    """``"file"``, ``"folder"``, ``"other"`` (a FIFO, a device, a socket) or ``""`` (absent,
    or a name the system refuses: too long, a NUL byte, not encodable)."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return ""
    if stat.S_ISREG(mode):
        return "file"
    return "folder" if stat.S_ISDIR(mode) else "other"


def locate(name: str, base: Path | None = None) -> tuple[Path, str]:
    """The file ``name`` means and its reference (see the module docstring).

    Paths are taken from ``base`` (an ensemble card's folder) or, without one, the working
    folder; ``name`` is a bundled name only when no file of that name is there. Raises
    :class:`ModelError` saying why nothing usable is meant: an empty name, a folder, a FIFO
    or device, a missing file, an unknown name.
    """
    if not name.strip():
        raise ModelError("the model name is empty: give a bundled name or a model file's path")
    candidate = Path(name) if base is None else base / name
    kind = file_kind(candidate)
    if kind == "file":
        return candidate, str(candidate.resolve())
    names = bundled_models()
    if name in names:
        return names[name], name
    if kind == "folder":
        raise ModelError(f"{candidate} is a folder, not a model file (.safetensors or .json)")
    if kind == "other":
        raise ModelError(f"{candidate} is not a regular file (a FIFO, a device or a socket)")
    if candidate.suffix in MODEL_SUFFIXES or os.sep in name:
        raise ModelError(f"model file not found: {candidate}")
    known = ", ".join(names) or "none"
    raise ModelError(
        f"unknown model {name!r}: bundled models are {known}; "
        "or give the path of a .safetensors file"
    )


def relative_members(members: Sequence[dict[str, Any]], card_path: Path) -> list[dict[str, Any]]:
    """``members`` as written into a card saved at ``card_path``: bundled names as they are,
    paths (absolute, or relative to the working folder, as in memory) relative to the card's
    folder, so the card and its files can move together."""
    folder = os.path.realpath(card_path.parent)
    out = []
    for member in members:
        name = str(member["model"])
        try:
            _, reference = locate(name)
        except ModelError:  # a missing file keeps its meaning; anything else stays as given
            path = Path(name)
            looks_like_path = path.is_absolute() or path.suffix in MODEL_SUFFIXES or os.sep in name
            looks_like_path = looks_like_path and not is_ensemble_name(name)  # a+b: refused later
            reference = os.path.abspath(name) if looks_like_path else name
        if Path(reference).is_absolute():  # a file (a bundled name is never absolute)
            name = os.path.relpath(os.path.realpath(reference), folder)
        out.append({**member, "model": name})
    return out


def cycle_text(chain: Sequence[Path]) -> str:
    """``a.json -> b.json -> a.json`` for a chain of cards."""
    return " -> ".join(p.name for p in chain)
