"""Model cards: the metadata that travels inside every weights file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from mesonet.models.calibration import check_bands, check_calibration, finite_number
from mesonet.models.sequence import check_sequence

INPUT_SIZE = 256
NORMALIZATION = "RGB, float32 in [0, 1] (pixel / 255), no mean/std"
LABEL_CONVENTION = "output is fake_probability: 1 = forged, 0 = real"
# "auto": area-average when shrinking, bilinear when enlarging; "nearest": as Keras' load_img,
# which the authors' models were trained and evaluated with.
RESIZE_MODES = ("auto", "nearest", "bilinear", "area")
MAX_CARD_BYTES = 1024 * 1024
"""Largest model card accepted (the bundled ones are ~5 KB): bigger is not a card."""
MAX_CARD_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in a card (the bundled ones: 5)."""
MAX_INPUT_SIZE = 4096
"""Largest network input side a card may name (the bundled models take 224 or 256 px)."""
MEAN_RANGE = (0.0, 1.0)
"""A card's ``mean`` per channel: a mean of pixel values, which lie in [0, 1]."""
STD_RANGE = (1e-3, 1e3)
"""A card's ``std`` per channel: with it and a mean in :data:`MEAN_RANGE`, ``(x - mean) /
std`` stays within +-1000 for every pixel, a range float32 holds to 7 digits (a std of
1e-300 is 0 in float32: every input became infinite and every face scored the same)."""
MAX_MEMBERS = 8
"""Most members an ensemble may have (the bundled ones have 3): each is a whole model in
memory and a forward pass per crop. The web service's ``model`` field has the same cap."""
MAX_NAME_CHARS = 200
"""Longest model name (a card's ``name``, a training run's ``name``)."""
MAX_REFERENCE_CHARS = 4096
"""Longest member reference (a bundled name or a path) in an ensemble card."""
MAX_JSON_DIGITS = 300
"""Longest integer a card may spell: anything longer cannot be a float (1e308 is the most)."""
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")
ENSEMBLE_ARCH = "ensemble"


@dataclass
class ModelCard:
    """What a weights file is, how to feed it and how well it measured.

    ``threshold`` turns a fake probability into a label (fake when ``p >= threshold``).
    ``weights_sha256`` is a digest of the tensors (see :func:`tensors_sha256`), checked on load.
    ``calibration`` maps raw scores to calibrated probabilities; ``threshold`` and
    ``verdict_bands`` are in calibrated terms. An ensemble card (``arch`` ``"ensemble"``)
    has ``members`` and no weights of its own.
    """

    name: str
    arch: str
    description: str = ""
    input_size: int = INPUT_SIZE  # the network's input side, resized from the 256 px crop
    normalization: str = NORMALIZATION  # in words; ``mean`` and ``std`` are what is applied
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # per RGB channel, [0, 1]
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    resize: str = "auto"  # how a whole image becomes the input (faces="none"): see RESIZE_MODES
    label_convention: str = LABEL_CONVENTION
    threshold: float = 0.5
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    license: str = ""
    weights_sha256: str = ""
    # fitted on validation data by `mesonet calibrate` (see mesonet.models.calibration)
    calibration: dict[str, Any] = field(default_factory=dict)
    # {"uncertain": [low, high], "rule": ..., "data": ...}: the verdict in words
    verdict_bands: dict[str, Any] = field(default_factory=dict)
    # ensembles only (arch "ensemble"): [{"model": name, "weight": w}], combined in logits
    members: list[dict[str, Any]] = field(default_factory=list)
    # video models only: the input sequence (frames, frame_step, frame_model); see
    # mesonet.models.sequence. Empty for an image model.
    sequence: dict[str, Any] = field(default_factory=dict)
    # the measured effect of int8 quantisation (backend openvino-int8): the calibration data
    # ({"data", "n", "sha256"}) and {"auc_change": {set: int8 AUC - fp32 AUC}}; written by
    # benchmarks/bench_int8.py, read by backend "auto" (mesonet.backends.int8). Empty: not
    # measured, so "auto" never runs this model in int8.
    int8: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse a card written by :meth:`to_json`, checking every field's type and range.

        Raises ``json.JSONDecodeError`` when ``text`` is not JSON and ``ValueError`` saying
        which field is wrong otherwise; unknown keys are ignored (newer cards).
        """
        if len(text) > MAX_CARD_BYTES:
            raise ValueError(
                f"it is {len(text):,} characters long, over the {MAX_CARD_BYTES:,} limit"
            )
        if json_depth(text) > MAX_CARD_DEPTH:
            raise ValueError(f"it nests arrays or objects over {MAX_CARD_DEPTH} levels deep")
        data = json.loads(text, parse_int=_json_int)
        if not isinstance(data, dict):
            kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
            raise ValueError(f"it is {kind.get(type(data), 'a number')}, not a JSON object")
        missing = [key for key in ("name", "arch") if key not in data]
        if missing:
            raise ValueError(f"it has no {' or '.join(missing)}")
        known = {f.name for f in dataclasses.fields(cls)}
        card = cls(**{k: v for k, v in data.items() if k in known})
        card.check()
        return card

    def check(self) -> None:
        """Raise ``ValueError`` naming the first field of a wrong type or out of range."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "threshold":
                if not (finite_number(value) and 0.0 <= value <= 1.0):
                    raise ValueError(f"threshold must be a number from 0 to 1, not {shown(value)}")
            elif f.name == "input_size":
                if not (type(value) is int and 0 < value <= MAX_INPUT_SIZE):
                    raise ValueError(
                        f"input_size must be a positive integer (at most {MAX_INPUT_SIZE}), "
                        f"not {shown(value)}"
                    )
            elif f.name in ("mean", "std"):
                low, high = MEAN_RANGE if f.name == "mean" else STD_RANGE
                if not (
                    isinstance(value, list)
                    and len(value) == 3
                    and all(finite_number(v) and low <= v <= high for v in value)
                ):
                    what = "positive numbers" if f.name == "std" else "numbers"
                    raise ValueError(
                        f"{f.name} must be a list of 3 {what} from {low:g} to {high:g}, "
                        f"not {shown(value)}"
                    )
            elif f.name == "members":
                if not isinstance(value, list):
                    raise ValueError(f"members must be a list, not {type(value).__name__}")
            elif f.name in (
                "training",
                "metrics",
                "calibration",
                "verdict_bands",
                "sequence",
                "int8",
            ):
                if not isinstance(value, dict):
                    raise ValueError(f"{f.name} must be an object, not {type(value).__name__}")
            elif not isinstance(value, str):
                raise ValueError(f"{f.name} must be a string, not {type(value).__name__}")
            elif not value.isascii():
                try:  # JSON can spell lone surrogates, which no output can write
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError(f"{f.name} is not valid Unicode text") from None
        check_name(self.name)
        check_calibration(self.calibration)
        check_bands(self.verdict_bands, self.threshold)
        check_members(self.members)
        check_sequence(self.sequence, self.arch)
        check_int8(self.int8)
        if (self.arch == ENSEMBLE_ARCH) != bool(self.members):
            raise ValueError(f"an ensemble card (arch {ENSEMBLE_ARCH!r}) and only it has members")
        if self.resize not in RESIZE_MODES:
            raise ValueError(
                f"resize must be one of {', '.join(RESIZE_MODES)}, not {self.resize!r}"
            )


def check_name(value: Any, what: str = "name", limit: int = MAX_NAME_CHARS) -> str:
    """``value`` when it can name a model (or, with ``what="member ..."``, a card's member);
    ``ValueError`` saying why not otherwise: not a string, empty or blank, longer than
    ``limit``, holding control characters, or not encodable Unicode. Training configs apply
    the same rules to the name they will write into the card."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} is empty")
    if len(value) > limit:
        raise ValueError(f"{what} is {len(value):,} characters long, over the {limit:,} limit")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ValueError(f"{what} holds control characters (a newline, a tab, ...)")
    try:  # JSON can spell lone surrogates, which no output can write
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode text") from None
    return value


def check_members(members: Any) -> None:
    """Raise ``ValueError`` unless ``members`` is a list of at most :data:`MAX_MEMBERS`
    ``{"model": reference, "weight": positive finite number}`` objects."""
    if not isinstance(members, list):
        raise ValueError(f"members must be a list, not {type(members).__name__}")
    if len(members) > MAX_MEMBERS:
        raise ValueError(f"an ensemble has at most {MAX_MEMBERS} members, not {len(members):,}")
    for i, member in enumerate(members, 1):
        if not isinstance(member, dict):
            raise ValueError('each member must be {"model": name, "weight": positive number}')
        check_name(member.get("model"), f"member {i}'s model", MAX_REFERENCE_CHARS)
        weight = member.get("weight", 1.0)
        if not (finite_number(weight) and weight > 0):
            raise ValueError(
                f"member {i}'s weight must be a positive finite number, not {shown(weight)}"
            )


_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_int8(record: Any) -> None:
    """Raise ``ValueError`` unless ``record`` (a card's ``int8``) is empty or holds
    ``calibration`` ``{"data": name, "n": positive integer, "sha256": 64 hex digits}`` and
    ``auc_change`` ``{set name: number from -1 to 1}`` with at least one set, and optionally
    ``fp32_members`` (names of members kept whole in fp32) and ``statistics`` ``{"file": a
    path inside the card's folder, "sha256": 64 hex digits}``."""
    if not isinstance(record, dict):
        raise ValueError(f"int8 must be an object, not {type(record).__name__}")
    if not record:
        return
    calibration = record.get("calibration")
    if not isinstance(calibration, dict):
        raise ValueError("int8.calibration must be an object naming the calibration data")
    check_name(calibration.get("data"), "int8.calibration.data", MAX_REFERENCE_CHARS)
    n = calibration.get("n")
    if not (type(n) is int and n > 0):
        raise ValueError(f"int8.calibration.n must be a positive integer, not {shown(n)}")
    digest = calibration.get("sha256")
    if not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
        raise ValueError("int8.calibration.sha256 must be 64 lowercase hex digits")
    changes = record.get("auc_change")
    if not (isinstance(changes, dict) and changes):
        raise ValueError("int8.auc_change must be an object {set: AUC change}, not empty")
    for name, delta in changes.items():
        check_name(name, "an int8.auc_change set name")
        if not (finite_number(delta) and -1.0 <= delta <= 1.0):
            raise ValueError(
                f"int8.auc_change[{name!r}] must be a number from -1 to 1, not {shown(delta)}"
            )
    kept = record.get("fp32_members", [])
    if not isinstance(kept, list):
        raise ValueError("int8.fp32_members must be a list of member names")
    for name in kept:
        check_name(name, "an int8.fp32_members name", MAX_REFERENCE_CHARS)
    shipped = record.get("statistics")
    if shipped is not None:
        if not isinstance(shipped, dict):
            raise ValueError("int8.statistics must be an object {file, sha256}")
        file = shipped.get("file")
        check_name(file, "int8.statistics.file", MAX_REFERENCE_CHARS)
        if file.startswith(("/", "\\")) or ".." in file.replace("\\", "/").split("/"):
            raise ValueError("int8.statistics.file must be a path inside the card's folder")
        if not (isinstance(shipped.get("sha256"), str) and _SHA256.fullmatch(shipped["sha256"])):
            raise ValueError("int8.statistics.sha256 must be 64 lowercase hex digits")


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages (an integer too large for a
    float is described, not printed: its digits could run to thousands)."""
    if isinstance(value, int) and not isinstance(value, bool) and not finite_number(value):
        return f"an integer of {value.bit_length():,} bits (too large for a number)"
    try:
        text = repr(value)
    except ValueError:  # a container holding an integer of thousands of digits
        return f"a {type(value).__name__} holding a huge integer"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_int(text: str) -> int:
    """JSON integers, refused past :data:`MAX_JSON_DIGITS` digits (before converting them)."""
    if len(text.lstrip("-")) > MAX_JSON_DIGITS:
        raise ValueError(
            f"it holds an integer of {len(text.lstrip('-')):,} digits: no card number is so large"
        )
    return int(text)


def normalization_text(mean: list[float], std: list[float]) -> str:
    """The card's ``normalization`` in words for a model's ``mean`` and ``std``."""
    if list(mean) == [0.0, 0.0, 0.0] and list(std) == [1.0, 1.0, 1.0]:
        return NORMALIZATION
    m = ", ".join(f"{v:.4f}" for v in mean)
    d = ", ".join(f"{v:.4f}" for v in std)
    return f"RGB, float32 in [0, 1] (pixel / 255), then (x - mean) / std with mean ({m}), std ({d})"


def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in JSON ``text``, counted without parsing it
    (so a hostile card cannot exhaust the parser's recursion)."""
    depth = deepest = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def tensors_sha256(state: dict[str, Any]) -> str:
    """A digest of names, dtypes, shapes and bytes of every tensor, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()
