"""The optional settings a request sends: form fields and the ``include`` query parameter."""

from __future__ import annotations

import dataclasses
import math
import re

from mesonet.aggregate import AGGREGATIONS
from mesonet.models.card import MAX_MEMBERS
from mesonet.serve.errors import ServiceError

PLAIN_NUMBER = re.compile(r"[+-]?(?P<digits>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""A number as a form field may spell it: ASCII digits, a point, an exponent."""
MAX_FRAMES = 300
"""Most frames a request may ask for (the CLI's default is 32)."""
INCLUDES = ("crops",)


@dataclasses.dataclass
class Options:
    """Per-request overrides of the served detector's settings."""

    frames: int | None = None
    threshold: float | None = None
    aggregate: str | None = None
    track_share: float | None = None
    model: str | None = None  # a bundled model name, or bundled names joined by "+"
    video_model: str | None = None  # a bundled video model (mesonet.pipeline.temporal)
    video_rule: str | None = None  # frames, temporal or mean
    explain: bool | None = None  # evidence maps as data URLs (mesonet.pipeline.explain)


def parse_options(fields: dict[str, str]) -> Options:
    """Validate the optional form fields; raise a 422 ServiceError saying what is wrong."""
    options = Options()
    value = fields.get("frames", "").strip()
    if value:
        # ASCII digits only: int() would also take "1_0", " 7" or Arabic-Indic digits
        options.frames = int(value) if re.fullmatch(r"[0-9]{1,6}", value) else None
        if options.frames is None or not 1 <= options.frames <= MAX_FRAMES:
            raise ServiceError(
                422, f"frames must be a whole number from 1 to {MAX_FRAMES}, not {value[:40]!r}"
            )
    options.threshold = _fraction(fields, "threshold")
    value = fields.get("aggregate", "").strip()
    if value:
        if value not in AGGREGATIONS:
            raise ServiceError(
                422, f"aggregate must be one of {', '.join(AGGREGATIONS)}, not {value!r}"
            )
        options.aggregate = value
    options.track_share = _fraction(fields, "track_share")
    value = fields.get("model", "").strip()
    if value:
        options.model = check_model_name(value)
    value = fields.get("video_model", "").strip()
    if value:
        options.video_model = check_video_model_name(value)
    value = fields.get("video_rule", "").strip()
    if value:
        from mesonet.pipeline.temporal import VIDEO_RULES

        if value not in VIDEO_RULES:
            raise ServiceError(
                422, f"video_rule must be one of {', '.join(VIDEO_RULES)}, not {value[:40]!r}"
            )
        options.video_rule = value
    value = fields.get("explain", "").strip().lower()
    if value:
        if value not in ("true", "false", "1", "0"):
            raise ServiceError(422, f"explain must be true or false, not {value[:40]!r}")
        options.explain = True if value in ("true", "1") else None
    return options


def check_video_model_name(value: str) -> str:
    """A bundled video model's name (never a path); a 422 ServiceError naming them otherwise."""
    from mesonet.pipeline.temporal import bundled_video_models

    names = bundled_video_models()
    if value not in names:
        raise ServiceError(
            422,
            f"video_model must be a bundled video model ({', '.join(names) or 'none'}), "
            f"not {value[:100]!r}",
        )
    return value


def _fraction(fields: dict[str, str], name: str) -> float | None:
    """The optional form field ``name`` as a number from 0 to 1 (None when absent)."""
    value = fields.get(name, "").strip()
    if not value:
        return None
    match = PLAIN_NUMBER.fullmatch(value)
    # a plain decimal (float() would also take "1_0", "nan", "inf" or non-ASCII digits)
    number = float(value) if match and len(value) <= 40 else math.nan
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise ServiceError(422, f"{name} must be a number from 0 to 1, not {value[:40]!r}")
    if number == 0.0 and match and match.group("digits").strip("0."):
        raise ServiceError(
            422, f"{name} {value!r} is too small to be told from 0: write 0, or a larger number"
        )
    return number + 0.0  # -0 is 0


def check_model_name(value: str) -> str:
    """A bundled model name, or an ensemble of bundled names (``a+b``): clients may not make
    the server load files by path. Raises a 422 ServiceError naming the bundled models."""
    from mesonet.models import bundled_models

    names = bundled_models()
    parts = [part.strip() for part in value.split("+")]
    too_many = len(parts) > MAX_MEMBERS
    if len(value) > 500 or too_many or not all(part in names for part in parts):
        raise ServiceError(
            422,
            f"model must be a bundled model ({', '.join(names) or 'none'}) or up to "
            f"{MAX_MEMBERS} bundled names joined by +, not {value[:100]!r}",
        )
    from mesonet.pipeline.temporal import bundled_video_models

    video = [p for p in parts if p in bundled_video_models()]
    if video:  # a video model scores runs of frames, never one crop: by kind, up front
        raise ServiceError(
            422,
            f"model {value[:100]!r}: {', '.join(video)} is a video model: send it as "
            "video_model (model takes image models)",
        )
    nested = [p for p in parts if names[p].suffix == ".json"] if len(parts) > 1 else []
    if nested:
        raise ServiceError(
            422,
            f"model {value[:100]!r}: {', '.join(nested)} is an ensemble and cannot be a "
            "member of another ensemble; name it alone",
        )
    return "+".join(parts)


def parse_include(include: str | None) -> set[str]:
    """``?include=crops`` (comma-separated) -> the set of extras asked for."""
    wanted = {part.strip() for part in (include or "").split(",") if part.strip()}
    unknown = wanted - set(INCLUDES)
    if unknown:
        raise ServiceError(
            422, f"include must be one of {', '.join(INCLUDES)}, not {', '.join(sorted(unknown))}"
        )
    return wanted
