"""Evidence maps in the records: which faces get one, their crops again, where the pictures go.

``Detector(explain=DIR)`` (``mesonet predict --explain DIR``) writes each explained face's
crop with its map overlaid as a PNG in DIR; ``Detector(explain=True)`` (the API's
``explain=true``) keeps it in the record as a PNG data URL. Either way the face's record gets
``explain``: ``map`` (the file or the data URL), ``peak_region`` (named from the landmarks,
None without them), ``peak`` (the strongest cell's centre in source pixels) and
``peak_logit_drop`` (how far the model's logit falls when that region is hidden).

An image's faces are explained, most suspicious first, up to :data:`MAX_FACES`; a video's
are the :data:`VIDEO_FACES` most suspicious faces of the track that decided it, their frames
decoded again (the analysis does not hold frames).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mesonet.explain import (
    CROP,
    EvidenceMap,
    Logits,
    Occlusion,
    face_region,
    overlay,
    png_bytes,
    png_data_url,
)
from mesonet.faces import Face
from mesonet.faces.align import crop_matrix, from_crop, to_crop
from mesonet.results import FaceResult, MediaResult

MAX_FACES = 8
"""Faces of an image explained at most (the most suspicious)."""
VIDEO_FACES = 3
"""Faces of a video's deciding track explained (its most suspicious frames)."""
DATA_URL_SIDES = (160, 128, 96, 64)
"""Sides tried, largest first, for a map sent as a data URL until it fits :data:`MAX_DATA_URL`."""
MAX_DATA_URL = 64 * 1024
"""Longest data URL of one map (characters): a response carries at most
``MAX_FACES * MAX_DATA_URL`` bytes of maps."""
WHAT = "evidence map"


@dataclass(frozen=True)
class Shown:
    """An explained face, for drawing its map over the frame: the ``frame`` it is in, its
    ``face``, its ``evidence`` and ``peak_region``, and ``matrix``, the 2 x 3 affine map from
    source pixels to the pixels of its :data:`~mesonet.explain.CROP` px crop."""

    frame: int
    face: Face
    evidence: EvidenceMap
    peak_region: str | None
    matrix: np.ndarray


@dataclass
class Explainer:
    """Explains the faces of records under one model.

    Args:
        logits: the model's scorer's logits (the same engine as the score).
        out_dir: where the PNGs go; None keeps them in the record as data URLs.
        names: the run's output names (:func:`mesonet.annotate.output_stem`), shared with
            the annotated copies so two inputs never share a name.
        margin: the crop margin of the face finder (to map landmarks into the crop).
        detected: the faces come from a detector (else the whole image is the crop).
    """

    logits: Logits
    out_dir: Path | None = None
    names: dict[str, str] = field(default_factory=dict)
    margin: float = 1.3
    detected: bool = True
    occlusion: Occlusion = field(default_factory=Occlusion)

    def attach(
        self,
        result: MediaResult,
        frames: Sequence[Any],
        source: Any,
        finder: Any,
        limits: Any = None,
    ) -> list[Shown]:
        """Add ``explain`` to the chosen faces of ``result``, whose analysed ``frames``
        (:class:`~mesonet.pipeline.FrameFaces`) hold their faces; ``source`` is the image's
        pixels or the video's path (its frames decoded again under ``limits``, an
        :class:`~mesonet.budget.AnalysisLimits`), ``finder`` cuts the crops as the analysis
        did. Returns the maps made, for annotated copies to draw."""
        if result.status != "ok":
            return []
        pairs = face_pairs(result, frames)
        chosen = choose(result, pairs)
        if not chosen:
            return []
        if result.kind == "video":
            from mesonet.media import iter_video_frames

            wanted = {pairs[i][1] for i in chosen}
            decoded = iter_video_frames(source, sorted(wanted), limits=limits)
            images = ((f.index, f.image) for f in decoded)
        else:
            images = iter([(pairs[chosen[0]][1], source)])
        by_frame: dict[int, list[int]] = {}
        for i in chosen:
            by_frame.setdefault(pairs[i][1], []).append(i)
        shown = []
        for index, image in images:
            for i in by_frame.get(index, []):
                face_result, _, face = pairs[i]
                crop = finder.crops(image, [face])[0]
                evidence = self.occlusion.map(self.logits, crop)
                entry = self.explain(result, chosen.index(i), face, crop, evidence)
                face_result.explain = entry
                matrix = self.crop_matrix(face)
                shown.append(Shown(index, face, evidence, entry["peak_region"], matrix))
        return shown

    def crop_matrix(self, face: Face) -> np.ndarray:
        """The 2 x 3 affine map from source pixels to ``face``'s crop pixels."""
        if self.detected:
            matrix, render = crop_matrix(face, CROP, self.margin)
            return matrix * (CROP / render)
        x, y, w, h = face.box  # the whole image stretched to the crop
        return np.array([[CROP / w, 0.0, -x * CROP / w], [0.0, CROP / h, -y * CROP / h]])

    def explain(
        self,
        result: MediaResult,
        rank: int,
        face: Face,
        crop: np.ndarray,
        evidence: EvidenceMap,
    ) -> dict:
        """The ``explain`` entry of the ``rank``-th most suspicious face explained in
        ``result`` (its ``face``, ``crop`` and ``evidence``)."""
        landmarks = None
        if self.detected and len(face.landmarks) >= 5:
            landmarks = to_crop(face, np.asarray(face.landmarks), CROP, self.margin)
        if self.detected:
            peak = from_crop(face, np.asarray([evidence.peak]), CROP, self.margin)[0]
        else:  # the whole image is the crop, stretched to a square
            x, y, w, h = face.box
            peak = (x + evidence.peak[0] * w / CROP, y + evidence.peak[1] * h / CROP)
        entry: dict[str, Any] = {
            "map": None,
            "peak_region": None if landmarks is None else face_region(evidence.peak, landmarks),
            "peak": [round(float(peak[0]), 1), round(float(peak[1]), 1)],
            "peak_logit_drop": round(evidence.strength, 3),
        }
        if self.out_dir is None:
            entry["map"] = fitting_data_url(crop, evidence)
        else:
            entry["map"] = str(self.write(result, rank, overlay(crop, evidence)))
        return entry

    def write(self, result: MediaResult, rank: int, picture: np.ndarray) -> Path:
        """Write the picture as ``<folder>_<file name>.evidence<rank>.png`` in the folder."""
        from mesonet.annotate import output_stem
        from mesonet.destinations import write_output

        assert self.out_dir is not None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{output_stem(result.path, self.names)}.evidence{rank}.png"
        return write_output(path, png_bytes(picture), WHAT, durable=False)


def fitting_data_url(crop: np.ndarray, evidence: Any) -> str:
    """The overlay as a PNG data URL, at the largest of :data:`DATA_URL_SIDES` that keeps it
    within :data:`MAX_DATA_URL`."""
    for side in DATA_URL_SIDES:
        url = png_data_url(overlay(crop, evidence, side))
        if len(url) <= MAX_DATA_URL:
            return url
    raise ValueError(f"an evidence map over {MAX_DATA_URL} characters even at {side} px")


def face_pairs(result: MediaResult, frames: Sequence[Any]) -> list[tuple[FaceResult, int, Face]]:
    """Each of ``result.faces`` with its frame's index and its detected :class:`Face`.

    A video's record lists its faces frame by frame as analysed; an image's, sorted by
    score (most suspicious first, ties in the order found), as
    :meth:`~mesonet.pipeline.Records.image` does."""
    found = [
        (f.index, face, score)
        for f in frames
        for face, score in zip(f.faces, f.scores, strict=True)
    ]
    if result.kind != "video":
        found = sorted(found, key=lambda item: -round(item[2], 6))
    if len(found) != len(result.faces):
        raise ValueError("the record's faces do not match the analysed ones")
    pairs = []
    for record, (index, face, _) in zip(result.faces, found, strict=True):
        if record.box != [round(v, 1) for v in face.box]:
            raise ValueError("the record's faces do not match the analysed ones")
        pairs.append((record, index, face))
    return pairs


def choose(result: MediaResult, pairs: list[tuple[FaceResult, int, Face]]) -> list[int]:
    """Indices into ``result.faces`` to explain: an image's most suspicious faces, a
    video's deciding track's most suspicious frames."""
    deciding = {id(f) for f in result.deciding_faces()}
    ranked = sorted(
        (i for i, (f, _, _) in enumerate(pairs) if id(f) in deciding),
        key=lambda i: -pairs[i][0].fake_probability,
    )
    return ranked[: VIDEO_FACES if result.kind == "video" else MAX_FACES]


def map_names(paths: Sequence[Any]) -> list[str]:
    """Every name the evidence maps of ``paths`` may take in their folder."""
    from mesonet.annotate import annotated_names

    tail = ".annotated.jpg"  # one per stem: the stems annotated copies take
    stems = [n[: -len(tail)] for n in annotated_names(paths) if n.endswith(tail)]
    return [f"{stem}.evidence{rank}.png" for stem in stems for rank in range(MAX_FACES)]


def check_map_outputs(folder: Path, paths: Sequence[Any]) -> None:
    """Refuse (``OutputError``, exit 2), before any work, evidence maps of ``paths`` that
    would replace one of them, or whose name in ``folder`` is a link, folder, FIFO or
    device (as :func:`mesonet.annotate.check_annotated_outputs` does for annotated copies)."""
    from mesonet.destinations import OutputError, check_outputs_in, input_clash

    names = map_names(paths)
    check_outputs_in(folder, names, WHAT)
    for name in names:
        clash = input_clash(folder / name, paths)
        if clash is not None:
            raise OutputError(
                f"the {WHAT} {folder / name} would replace the input {clash}: "
                "explain into another folder"
            )
