"""What annotated copies say in words: why a file has no face (a caption under the image,
the text of an empty chart) and the timeline chart's title (file, model, verdict)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mesonet.results import MediaResult, safe_text

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def no_face_caption(result: MediaResult) -> str:
    """What an annotated copy of a file without a face says: why there is none."""
    reason = result.error or "no face found"
    return reason if reason.startswith("no face") else f"no face: {reason}"


def caption_image(image: np.ndarray, text: str, min_width: int = 320) -> np.ndarray:
    """``image`` (RGB) with ``text`` in light letters on a dark band below it, wrapped at
    words; an image narrower than ``min_width`` is padded to it, so the text stays legible
    under a thumbnail."""
    h, w = image.shape[:2]
    width = max(w, min_width)
    font_scale = max(0.5, round(width / 400) / 3)
    thickness = max(1, round(font_scale * 1.5))
    lines: list[str] = []
    for word in text.split():
        line = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(line, _FONT, font_scale, thickness)[0][0] <= width - 12:
            lines[-1] = line
        else:
            lines.append(word)
    (_, th), base = cv2.getTextSize("Ag", _FONT, font_scale, thickness)
    step = th + base + 6
    band = np.full((step * len(lines) + 8, width, 3), 30, np.uint8)
    for i, line in enumerate(lines):
        y = 4 + step * i + th + 3
        cv2.putText(band, line, (6, y), _FONT, font_scale, (235, 235, 235), thickness, cv2.LINE_AA)
    canvas = np.full((h, width, 3), 30, np.uint8)
    canvas[:, :w] = image
    return np.vstack([canvas, band])


def timeline_title(result: MediaResult, name_chars: int = 48) -> str:
    """The chart's title, so the PNG alone says what it shows: the file's name (its end, when
    long), the model (and the video model with its rule) and the verdict with its
    probability (or why there is none)."""
    name = safe_text(Path(result.path).name)
    if len(name) > name_chars:
        name = "…" + name[-(name_chars - 1) :]
    if result.status == "ok" and result.fake_probability is not None:
        verdict = f"{result.verdict or result.label}, p(fake) {result.fake_probability:.2f}"
    elif result.status == "no_face":
        verdict = no_face_caption(result)
    else:
        verdict = result.error or result.status
    model = safe_text(result.model)
    if result.video_model is not None:
        model += f" + {safe_text(result.video_model)} ({result.video_rule})"
    return f"{name}  ·  {model}  ·  {verdict}"
