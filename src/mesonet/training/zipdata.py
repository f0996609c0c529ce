"""Safe extraction of a training-data zip: no path escapes, links, bombs or overfilled disks.

A failed or interrupted extraction (SIGTERM and Ctrl+C included) leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import stat
import threading
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from mesonet.training.errors import DatasetError

ZIP_RATIO_FLOOR = 64 * 1024**2
"""Below this many bytes in all, a zip's overall compression ratio is not checked (a few
small, very compressible files are no bomb)."""
FREE_SPACE_MARGIN = 512 * 1024**2
"""Space left free on the disk after extracting a zip."""


def extract_zip(
    zip_path: str | Path,
    dest: str | Path,
    max_total_bytes: int = 20 * 1024**3,
    max_ratio: float = 200.0,
) -> Path:
    """Extract ``zip_path`` into ``dest``, refusing anything unsafe; returns ``dest``.

    Refused (with a :class:`DatasetError`, before anything is written): entries with absolute
    paths or ``..`` components, symbolic links, a name that is both a file and a folder, a
    total uncompressed size above ``max_total_bytes`` or above the free space at ``dest``,
    and entries (over 1 MiB) or whole archives (over 64 MiB) compressed more than
    ``max_ratio`` to 1 (zip bombs, however many small entries they spread over). Sizes are
    enforced again while extracting, so lying headers do not get past. On any failure,
    SIGTERM and Ctrl+C included, what was extracted is removed again.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    try:
        archive = zipfile.ZipFile(zip_path)
    except FileNotFoundError:
        raise DatasetError(f"data not found: {zip_path}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{zip_path}: not a readable zip file ({exc})") from None
    with archive:
        infos = archive.infolist()
        _check_archive(zip_path, infos, dest, max_total_bytes, max_ratio)
        made_dest = not dest.exists()
        created: list[Path] = []
        try:
            with terminate_as_exit():
                dest.mkdir(parents=True, exist_ok=True)
                _extract_entries(archive, infos, dest.resolve(), zip_path, max_total_bytes, created)
        except BaseException:
            _remove(created, dest if made_dest else None)
            raise
    return dest


def _check_archive(
    zip_path: Path,
    infos: Sequence[zipfile.ZipInfo],
    dest: Path,
    max_total_bytes: int,
    max_ratio: float,
) -> None:
    """Refuse an archive whose entries, total size or overall ratio are unsafe."""
    files: set[str] = set()
    folders: set[str] = set()
    total = packed = 0
    for info in infos:
        _check_entry(zip_path, info, max_ratio)
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if info.is_dir():
            folders.add("/".join(parts))
        else:
            files.add("/".join(parts))
        total += info.file_size
        packed += info.compress_size
    clash = sorted(files & folders)
    if clash:
        raise DatasetError(
            f"{zip_path}: entry {clash[0]!r} is both a file and a folder: the zip is malformed"
        )
    if total > max_total_bytes:
        raise DatasetError(
            f"{zip_path}: would extract to {total / 1e9:.1f} GB, over the "
            f"{max_total_bytes / 1e9:.1f} GB limit (raise max_zip_bytes if it is genuine)"
        )
    if total > ZIP_RATIO_FLOOR and total > max_ratio * max(packed, 1):
        raise DatasetError(
            f"{zip_path}: {packed / 1e6:.1f} MB would extract to {total / 1e9:.2f} GB, "
            f"compressed {total / max(packed, 1):.0f}:1 overall, over the {max_ratio:.0f}:1 "
            "limit (a zip bomb?)"
        )
    existing = next((p for p in (dest, *dest.parents) if p.exists()), Path("."))
    free = shutil.disk_usage(existing).free
    if total + FREE_SPACE_MARGIN > free:
        raise DatasetError(
            f"{zip_path}: would extract to {total / 1e9:.2f} GB, more than the "
            f"{max(free - FREE_SPACE_MARGIN, 0) / 1e9:.2f} GB free at {existing} "
            "(point TMPDIR at a larger disk, or extract it yourself)"
        )


def _extract_entries(
    archive: zipfile.ZipFile,
    infos: Sequence[zipfile.ZipInfo],
    root: Path,
    zip_path: Path,
    max_total_bytes: int,
    created: list[Path],
) -> None:
    """Write every entry under ``root``, noting each file and folder made in ``created``."""
    written = 0
    for info in infos:
        target = (root / info.filename).resolve()
        if not target.is_relative_to(root):
            raise DatasetError(f"{zip_path}: entry {info.filename!r} escapes the folder")
        folder = target if info.is_dir() else target.parent
        missing = [p for p in (folder, *folder.parents) if p.is_relative_to(root)]
        missing = [p for p in reversed(missing) if not p.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetError(f"{zip_path}: cannot extract {info.filename!r} ({exc})") from None
        created.extend(missing)
        if info.is_dir():
            continue
        created.append(target)
        written += _copy_entry(archive, info, target, zip_path, max_total_bytes - written)


def _remove(created: Sequence[Path], dest: Path | None) -> None:
    """Undo a partial extraction: the files and folders made (all of ``dest`` if we made it)."""
    if dest is not None:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for path in reversed(created):
        try:
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Within it, SIGTERM raises SystemExit (exit code 143) instead of killing the process
    outright, so ``finally`` blocks remove a partial extraction or a run's extracted data
    (Ctrl+C already raises KeyboardInterrupt). Only the main thread can set signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_entry(zip_path: Path, info: zipfile.ZipInfo, max_ratio: float) -> None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise DatasetError(
            f"{zip_path}: refusing entry {name!r} (absolute path or '..' escapes the folder)"
        )
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DatasetError(f"{zip_path}: refusing entry {name!r} (symbolic link)")
    if info.file_size > 1024**2 and info.file_size > max_ratio * max(info.compress_size, 1):
        raise DatasetError(
            f"{zip_path}: refusing entry {name!r}: compressed {info.file_size / max(info.compress_size, 1):.0f}:1, "  # noqa: E501
            f"over the {max_ratio:.0f}:1 limit (a zip bomb?)"
        )


def _copy_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, zip_path: Path, budget: int
) -> int:
    """Stream one entry to ``target``, stopping if it outgrows its header or the budget."""
    limit = min(info.file_size, budget)
    size = 0
    try:
        with archive.open(info) as src, target.open("wb") as dst:
            while chunk := src.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise DatasetError(
                        f"{zip_path}: entry {info.filename!r} is larger than its header says "
                        "or than the size limit (refusing a zip bomb)"
                    )
                dst.write(chunk)
    except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:
        raise DatasetError(f"{zip_path}: cannot extract {info.filename!r} ({exc})") from None
    return size


def cleanup(path: Path) -> None:
    """Remove a temporary extraction folder, ignoring errors."""
    shutil.rmtree(path, ignore_errors=True)
