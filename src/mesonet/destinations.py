"""Where results go: the one way every output is checked and written.

Every file mesonet writes (predict's and scan's results, annotated copies, calibrated models
and ensemble cards, a training run's files, evaluation reports) goes through this module:

- **checked before any work** (:func:`check_output_file`, :func:`check_output_dir`): a
  folder named as a file, a symbolic link, a FIFO or device, one of the run's own inputs, a
  name of an image or video for a results file, an existing model without ``--force``, a
  folder that is missing, read-only or a file: each refused with a one-line
  :class:`OutputError` (exit code 2) before the first input is analysed;
- **written whole or not at all** (:func:`replacing`, :func:`write_output`): into a new
  temporary file beside the output (created with ``O_EXCL | O_NOFOLLOW | O_NONBLOCK``, so it
  is never a link or a pipe someone planted), renamed over the output when complete and
  removed on any failure; a rename replaces a name, never follows it. Files get the
  permissions the umask gives (0644 typically), models included;
- **appended in place** only by a scan's journal (:func:`open_append`), opened without
  following a link or blocking on a pipe, and refused unless it is a regular file.

A failure while writing (a full disk) is an ``OutputError`` with exit code 1 naming the file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from mesonet.errors import MesonetError

EXIT_USAGE, EXIT_IO = 2, 1
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_MAX_NAME = 200  # of an output's name kept in its temporary file's (NAME_MAX is 255)

PathLike = str | os.PathLike[str]


class OutputError(MesonetError):
    """An output that cannot be written; ``exit_code`` 2 when refused before any work,
    1 when writing failed part way."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


# --------------------------------------------------------------------------- checks


def _media_suffix(path: Path) -> bool:
    from mesonet.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    return path.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS


def _kind_refusal(path: Path, st: os.stat_result, what: str) -> str | None:
    """Why the existing entry ``path`` (its ``lstat``) cannot be replaced, or None."""
    if stat.S_ISLNK(st.st_mode):
        if not path.exists():
            return f"the {what} {path} is a broken symbolic link: give a new name"
        return (
            f"the {what} {path} is a symbolic link, not a regular file: outputs never follow "
            "links; give the file itself or a new name"
        )
    if stat.S_ISDIR(st.st_mode):
        return f"the {what} {path} is a folder: give a file name"
    if not stat.S_ISREG(st.st_mode):
        return (
            f"the {what} {path} is not a regular file (a device, pipe or socket): "
            "give a new file or a regular one"
        )
    return None


def input_clash(path: PathLike, inputs: Iterable[PathLike]) -> str | None:
    """The input among ``inputs`` that ``path`` names (same name or same file), or None."""
    target = os.path.abspath(path)
    try:
        st: os.stat_result | None = os.stat(path)
    except OSError:
        st = None  # nothing there: writing it destroys no input
    for item in inputs:
        if os.path.abspath(item) == target:
            return os.fspath(item)
        if st is not None:
            try:
                if os.path.samestat(st, os.stat(item)):
                    return os.fspath(item)
            except OSError:
                continue
    return None


def _check_parent(path: Path, what: str) -> None:
    """The folder of ``path`` exists, is a folder and takes a new file; else ``OutputError``."""
    parent = path.parent
    try:
        st = parent.stat()
    except FileNotFoundError:
        raise OutputError(
            f"cannot write the {what} {path}: its folder {parent} does not exist"
        ) from None
    except NotADirectoryError:
        raise OutputError(
            f"cannot write the {what} {path}: {_first_file(parent)} is a file, not a folder"
        ) from None
    except OSError as exc:
        raise OutputError(f"cannot write the {what} {path}: {_reason(exc)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"cannot write the {what} {path}: {parent} is not a folder")
    _probe(parent, f"cannot write the {what} {path}")


def _check_ancestor(path: Path, what: str) -> None:
    """The nearest existing folder above ``path`` takes new folders; else ``OutputError``."""
    for ancestor in Path(os.path.abspath(path)).parents:
        if ancestor.exists() or ancestor.is_symlink():
            if not ancestor.is_dir():
                raise OutputError(f"cannot write the {what} {path}: {ancestor} is not a folder")
            _probe(ancestor, f"cannot write the {what} {path}")
            return


def _first_file(folder: Path) -> Path:
    """The first part of ``folder`` that is a file (why a path below it cannot exist)."""
    for part in reversed([folder, *folder.parents]):
        if part.exists() and not part.is_dir():
            return part
    return folder


def _probe(folder: Path, doing: str) -> None:
    """Create (and remove) a file in ``folder``, or raise ``OutputError`` (exit 2)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OutputError(f"{doing}: {folder} is not writable ({_reason(exc)})") from None


def check_output_file(
    path: PathLike,
    what: str = "output",
    *,
    inputs: Iterable[PathLike] = (),
    overwrite: bool = True,
    media_name: bool = False,
) -> Path:
    """Refuse (``OutputError``, exit 2) an output file that cannot be written safely, before
    any work; returns it as a ``Path``.

    Refused: an empty name; a symbolic link (followed, it would write elsewhere), a folder,
    a FIFO, device or socket (a write would block or go nowhere); one of ``inputs`` (the
    run's own files, by name or as the same file); a name of an image or video unless
    ``media_name`` (``predict -o *.jpg`` would overwrite the first image); an existing file
    when ``overwrite`` is false (a model: replaced only with ``--force``); a folder that is
    missing, not a folder or not writable.
    """
    if not os.fspath(path):
        raise OutputError(f"the {what} has an empty name: give a file name")
    path = Path(path)
    try:
        st: os.stat_result | None = path.lstat()
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise OutputError(
            f"cannot write the {what} {path}: {_first_file(path.parent)} is a file, not a folder"
        ) from None
    except OSError as exc:
        raise OutputError(f"cannot use {path} as the {what}: {_reason(exc)}") from None
    if st is not None and (why := _kind_refusal(path, st, what)):
        raise OutputError(why)
    clash = input_clash(path, inputs)
    if clash is not None:
        raise OutputError(
            f"the {what} {path} is one of this run's inputs ({clash}): writing it would "
            "destroy it; give another name"
        )
    if not media_name and _media_suffix(path):
        raise OutputError(
            f"the {what} {path} is named like an image or video: an input would be "
            "overwritten; give it a name of its own kind"
        )
    if st is not None and not overwrite:
        raise OutputError(f"the {what} {path} already exists: add --force to replace it")
    _check_parent(path, what)
    return path


def check_output_dir(
    path: PathLike,
    what: str = "output folder",
    *,
    inputs: Iterable[PathLike] = (),
    create: bool = True,
    parents: bool = False,
) -> Path:
    """Refuse (``OutputError``, exit 2) an output folder that cannot take files, before any
    work: a file, a link, one of ``inputs``, a missing parent, a read-only place. A missing
    folder is created when ``create`` (not its parents), else left for the first write
    (its parent is then checked instead). With ``parents``, missing parents are allowed (a
    training folder's, created as the run starts): the nearest existing one is checked and,
    with ``create``, the missing ones are made. Returns it."""
    if not os.fspath(path):
        raise OutputError(f"the {what} has an empty name: give a folder")
    path = Path(path)
    try:
        st: os.stat_result | None = path.lstat()
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise OutputError(
            f"cannot write to the {what} {path}: {_first_file(path.parent)} is a file, not a folder"
        ) from None
    except OSError as exc:
        raise OutputError(f"cannot write to the {what} {path}: {_reason(exc)}") from None
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise OutputError(
            f"the {what} {path} is a symbolic link: outputs never follow links; give the "
            "folder itself"
        )
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"the {what} {path} exists and is not a folder")
    clash = input_clash(path, inputs)
    if clash is not None:
        raise OutputError(
            f"the {what} {path} is one of this run's inputs ({clash}): give another folder"
        )
    if st is None:
        if parents and not path.parent.exists():
            _check_ancestor(path, what)
        else:
            _check_parent(path, what)
        if not create:
            return path
        try:
            path.mkdir(parents=parents)
        except FileExistsError:
            pass
        except OSError as exc:
            raise OutputError(f"cannot write to the {what} {path}: {_reason(exc)}") from None
    _probe(path, f"cannot write to the {what} {path}")
    return path


def check_outputs_in(folder: PathLike, names: Iterable[str], what: str) -> None:
    """Refuse (exit 2) any of ``names`` in ``folder`` that is a link, folder, FIFO or device:
    the files a run will write there, checked before it starts."""
    for name in names:
        path = Path(folder) / name
        try:
            st = path.lstat()
        except OSError:
            continue
        if why := _kind_refusal(path, st, what):
            raise OutputError(why)


# --------------------------------------------------------------------------- writing


@contextlib.contextmanager
def writing(path: PathLike, what: str = "output") -> Iterator[None]:
    """Turn an ``OSError`` raised inside into ``OutputError`` (exit 1) naming ``path``."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"could not write the {what} {path}: {_reason(exc)}", EXIT_IO) from None


def _new_temporary(path: Path, what: str) -> tuple[int, Path]:
    """A new file beside ``path``, opened to write (and read back, as an MP4 muxer does):
    never a link, never a pipe."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _NONBLOCK | _CLOEXEC | _BINARY
    for _ in range(100):
        temporary = path.with_name(f".{path.name[:_MAX_NAME]}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temporary, flags, 0o666), temporary  # the umask decides the rest
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"cannot write the {what} {path}: {_reason(exc)}") from None
    raise OutputError(f"cannot write the {what} {path}: no free temporary name beside it")


def _commit(temporary: Path, path: Path, what: str) -> None:
    """Rename ``temporary`` over ``path`` unless ``path`` became something not to replace."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"could not write the {what} {path}: {_reason(exc)}", EXIT_IO) from None
    if st is not None and (why := _kind_refusal(path, st, what)):
        raise OutputError(f"{why} (it became one while the run went on)", EXIT_IO)
    with writing(path, what):
        os.replace(temporary, path)


@contextlib.contextmanager
def replacing(
    path: PathLike,
    what: str = "output",
    *,
    text: bool = False,
    encoding: str = "utf-8",
    newline: str | None = None,
    durable: bool = True,
) -> Iterator[IO[Any]]:
    """A file to write ``path``'s new content to; it replaces ``path`` when the block ends
    without an exception, and is removed otherwise (``path`` is then left as it was).

    The file is a temporary one beside ``path``; ``durable`` syncs it to disk before the
    rename. An ``OSError`` inside the block becomes ``OutputError`` (exit 1) naming ``path``.
    """
    path = Path(path)
    fd, temporary = _new_temporary(path, what)
    try:
        try:
            handle: IO[Any] = (
                os.fdopen(fd, "w", encoding=encoding, newline=newline)
                if text
                else os.fdopen(fd, "wb")
            )
        except BaseException:
            os.close(fd)
            raise
        raw = getattr(getattr(handle, "buffer", handle), "raw", None)
        with contextlib.suppress(AttributeError):  # a muxer that reopens the file by its name
            raw.name = os.fspath(temporary)  # (FFmpeg's MP4 faststart) finds the temporary
        with writing(path, what), handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        _commit(temporary, path, what)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def write_output(
    path: PathLike, data: bytes | str, what: str = "output", *, durable: bool = True
) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through :func:`replacing`; returns it."""
    with replacing(path, what, durable=durable) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def open_append(path: PathLike, what: str = "output") -> IO[bytes]:
    """``path`` opened to read and append (created when missing): never through a link, never
    blocking on a pipe; anything but a regular file is refused (``OutputError``, exit 2)."""
    path = Path(path)
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _NONBLOCK | _CLOEXEC | _BINARY
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        try:
            st = path.lstat()
        except OSError:
            st = None
        if st is not None and (why := _kind_refusal(path, st, what)):
            raise OutputError(why) from None
        raise OutputError(f"cannot write the {what} {path}: {_reason(exc)}") from None
    try:
        st = os.fstat(fd)
        if why := _kind_refusal(path, st, what):
            raise OutputError(why)
        if _NONBLOCK and hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "a+b")
    except BaseException:
        os.close(fd)
        raise


def open_output(
    path: PathLike, mode: str = "w", what: str = "output", **kwargs: Any
) -> contextlib.AbstractContextManager[IO[Any]]:
    """:func:`check_output_file`, then :func:`replacing` (a context manager: the file
    replaces ``path`` when its block ends cleanly). ``mode`` ``"w"`` (text) or ``"wb"``."""
    path = check_output_file(path, what)
    return replacing(
        path,
        what,
        text="b" not in mode,
        encoding=kwargs.get("encoding") or "utf-8",
        newline=kwargs.get("newline"),
    )
