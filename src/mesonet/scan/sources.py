"""What a scan reads: a folder or a manifest of paths, as absolute :class:`Input` items.

Paths are made absolute (not resolved through symlinks) so that records match across
reruns from other folders and workers on other machines open the same files.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from mesonet.errors import MesonetError
from mesonet.inputs import Input, discover
from mesonet.media import IMAGE_EXTENSIONS, media_kind
from mesonet.results import safe_text

MANIFEST_HINT = "a folder, a .txt file of paths (one a line) or a .csv file with a 'path' column"


def absolute(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute and normalised, symlinks kept as named."""
    return Path(os.path.abspath(os.fspath(path)))


def read_manifest(manifest: Path) -> list[str]:
    """The paths a manifest lists, in order, as written.

    ``.csv``: the ``path`` column (other columns are ignored). Anything else: one path a
    line; blank lines and lines starting with ``#`` are skipped. The file is UTF-8; bytes
    that are not (a file name in another encoding) are kept as the file system's.
    """
    try:
        text = manifest.read_bytes().decode("utf-8-sig", "surrogateescape")
    except OSError as exc:
        raise MesonetError(f"cannot read the manifest {manifest}: {exc}") from exc
    if manifest.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        fields = [f.strip() for f in reader.fieldnames or []]
        if "path" not in fields:
            raise MesonetError(
                f"{manifest} has no 'path' column (columns: {', '.join(fields) or 'none'})"
            )
        reader.fieldnames = fields
        return [row["path"].strip() for row in reader if (row.get("path") or "").strip()]
    lines = (line.strip() for line in text.split("\n"))  # only newlines end a path
    return [line for line in lines if line and not line.startswith("#")]


def list_source(
    source: str | os.PathLike[str],
    *,
    recursive: bool = False,
    root: str | os.PathLike[str] | None = None,
) -> list[Input]:
    """The inputs of a scan, each once, with absolute paths.

    A folder is listed like ``mesonet predict`` lists one (media files only; ``recursive``
    descends). A manifest's paths are taken as given, media or not, so a missing or bad
    file still gets its error record; relative ones start from ``root`` (default: the
    manifest's folder). Manifest items have kind None: the worker that opens the file
    tells its kind, so listing a huge manifest does not read every file.
    """
    source = Path(source)
    if source.is_dir():
        items = (Input(absolute(i.path), i.kind) for i in discover([source], recursive=recursive))
        return _unique(items)
    if not source.is_file():
        raise MesonetError(f"{source} does not exist; the source is {MANIFEST_HINT}")
    if media_kind(source) is not None:
        raise MesonetError(
            f"{source} is a media file, not a list of them: use `mesonet predict` for single "
            f"files; the source of a scan is {MANIFEST_HINT}"
        )
    base = Path(root) if root is not None else source.parent
    paths = (Path(p) if Path(p).is_absolute() else base / p for p in read_manifest(source))
    return _unique(Input(absolute(p), None) for p in paths)


def _unique(items: Iterable[Input]) -> list[Input]:
    seen: set[Path] = set()
    out = []
    for item in items:
        if item.path not in seen:
            seen.add(item.path)
            out.append(item)
    return out


def with_kind(item: Input) -> Input:
    """``item`` with its kind read from the file when the listing left it open."""
    return item if item.kind is not None else Input(item.path, media_kind(item.path))


def record_path(path: str | os.PathLike[str]) -> str:
    """``path`` as its record spells it (undecodable bytes of a name as ``\\xNN``)."""
    return safe_text(str(path))


def pending(items: Sequence[Input], done: Iterable[str]) -> list[Input]:
    """The items that have no record yet (``done``: the paths already written)."""
    finished = set(done)
    return [item for item in items if record_path(item.path) not in finished]


def work_units(items: Sequence[Input], batch_size: int) -> Iterator[list[Input]]:
    """Items grouped into units of work: up to ``batch_size`` images scored together, each
    video (or file of unknown kind that is not named like an image) alone.

    A unit is what one worker call analyses and what a flush writes, so an interruption
    loses at most the units in flight.
    """
    images: list[Input] = []
    for item in items:
        image_like = item.kind == "image" or (
            item.kind is None and item.path.suffix.lower() in IMAGE_EXTENSIONS
        )
        if image_like:
            images.append(item)
            if len(images) >= batch_size:
                yield images
                images = []
        else:
            yield [item]
    if images:
        yield images
