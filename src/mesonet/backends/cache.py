"""OpenVINO's start-up work kept between runs, in the user cache folder.

A model that the direct graph builder does not know (the ImageNet backbone) is traced by
``openvino.convert_model``, which takes seconds; the traced graph is saved as OpenVINO IR
under ``$MESONET_CACHE/openvino`` (default ``~/.cache/mesonet/openvino``), keyed by a sha256
of the model's tensors, its preprocessing and output, this cache's format and the OpenVINO
version, so a second start reads it back in milliseconds and changed weights never meet a
stale graph. OpenVINO's own ``CACHE_DIR`` keeps the compiled blobs beside it.

**Every entry proves what it holds** (:func:`store_entry`, :func:`read_entry`): beside its
files, ``sha256.json`` lists the sha256 of each, and a read checks them; an entry that fails
(truncated, overwritten, a file missing) is removed with a warning and built again. **A
cache that cannot be written** (no folder, read-only, a full disk: ``OSError``, or the
``RuntimeError`` ``openvino.save_model`` raises) means working without it: one warning per
process, no more writes tried, the work done in memory as without a cache.
**One build per key**: tracing, quantising and compiling run under a lock per graph key
(:func:`key_lock`), so concurrent first requests wait for one build and then read it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesonet.errors import MesonetError

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

FORMAT = 2
"""Bumped when the graphs mesonet builds for the same weights, or the layout of an entry,
change (2: each entry lists the sha256 of its files)."""
DIGESTS = "sha256.json"
"""The file beside an entry's files naming each one's sha256."""

_KEY_LOCKS: dict[str, threading.Lock] = {}
_KEY_LOCKS_GUARD = threading.Lock()
_TRACE_LOCK = threading.Lock()
_WRITE_FAILED: set[Path] = set()  # cache roots a write failed in: none is tried again


def cache_root() -> Path:
    """``$MESONET_CACHE``, else ``$XDG_CACHE_HOME/mesonet``, else ``~/.cache/mesonet``."""
    base = os.environ.get("MESONET_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mesonet"


def _folder(name: str) -> Path | None:
    if os.environ.get("MESONET_NO_CACHE"):
        return None
    folder = cache_root() / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


def writable_folder(name: str) -> Path | None:
    """The cache folder ``name`` when entries may be written there: None without a cache,
    and after a write failed in this process (see the module)."""
    return None if cache_root() in _WRITE_FAILED else _folder(name)


def compiled_cache_dir() -> Path | None:
    """Where OpenVINO keeps compiled models (its ``CACHE_DIR``), or None without a cache."""
    return writable_folder("openvino-compiled")


def key_lock(key: str) -> threading.Lock:
    """The lock of one graph key: whoever builds what the key names holds it, so a second
    thread asking for the same graph waits and then reads the first one's result."""
    with _KEY_LOCKS_GUARD:
        return _KEY_LOCKS.setdefault(key, threading.Lock())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_entry(folder: Path, name: str, write: Callable[[Path], None]) -> Path | None:
    """Write the entry ``folder/name``: ``write(tmp)`` puts its files in a new folder, their
    sha256 go in :data:`DIGESTS`, and the folder is renamed into place (replacing a damaged
    entry). Returns the entry, or None when the cache cannot be written (see the module)."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder))
        try:
            write(tmp)
            digests = {
                p.name: _sha256(p.read_bytes()) for p in sorted(tmp.iterdir()) if p.is_file()
            }
            (tmp / DIGESTS).write_text(json.dumps(digests, indent=2) + "\n")
            shutil.rmtree(folder / name, ignore_errors=True)
            tmp.rename(folder / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except (OSError, RuntimeError, MesonetError) as exc:  # RuntimeError: ov.save_model, disk full
        if folder.parent not in _WRITE_FAILED:
            log.warning("cannot write the cache in %s (%s): working without it", folder, exc)
            _WRITE_FAILED.add(folder.parent)
        return None
    return folder / name


def entry_files(entry: Path, names: Iterable[str]) -> dict[str, bytes] | None:
    """The bytes of the files ``names`` of ``entry`` when the entry is there and each of
    its files matches the sha256 it lists; None when it is absent. A damaged entry (a file
    missing, cut or altered, or no digests) is removed with a warning, and None returned."""
    if not entry.is_dir():
        return None
    wanted = tuple(names)
    files: dict[str, bytes] = {}
    try:
        digests = json.loads((entry / DIGESTS).read_text())
        listed = [n for n in digests if Path(n).name == n]  # never a path out of the entry
        files = {n: (entry / n).read_bytes() for n in listed}
        unlisted = [n for n in wanted if n not in files]
        altered = [n for n in listed if _sha256(files[n]) != digests[n]]
        problem = (
            f"{unlisted[0]} is not listed in {DIGESTS}"
            if unlisted
            else f"{altered[0]} does not match its sha256"
            if altered
            else None
        )
    except FileNotFoundError as exc:
        problem = f"{Path(str(exc.filename)).name} is missing"
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        problem = f"{DIGESTS} is unreadable ({type(exc).__name__})"
    if problem is None:
        return {n: files[n] for n in wanted}
    log.warning("a damaged cache entry %s (%s): building it again", entry, problem)
    shutil.rmtree(entry, ignore_errors=True)
    return None


def entry_intact(entry: Path, names: Iterable[str]) -> bool:
    """Whether ``entry`` is there and intact (a damaged one is removed: see
    :func:`entry_files`)."""
    return entry_files(entry, names) is not None


def read_graph(entry: Path) -> Any:
    """The OpenVINO model in ``entry`` (``model.xml`` and ``model.bin``), read from the bytes
    just checked against their digests; None when the entry is absent or damaged."""
    import numpy as np
    import openvino as ov

    files = entry_files(entry, ("model.xml", "model.bin"))
    if files is None:
        return None
    weights = ov.Tensor(np.frombuffer(files["model.bin"], np.uint8).copy())
    return ov.Core().read_model(files["model.xml"], weights)


_KEYS: weakref.WeakKeyDictionary[nn.Module, tuple[Any, str]] = weakref.WeakKeyDictionary()


def graph_key(model: nn.Module) -> str:
    """A digest of what the traced graph depends on: every tensor's name, dtype, shape and
    bytes, the module tree, this cache's format and the OpenVINO version.

    Remembered per model while its module tree and tensors stay the same objects, unchanged
    (a tensor's version counter moves with every in-place change), so a start-up that asks
    several times hashes the weights once."""
    import openvino as ov

    tree = f"{FORMAT}|{ov.__version__}|{model!r}"
    tensors = [*model.state_dict().items(), *model.named_buffers()]
    signature = (tree, tuple((n, t.data_ptr(), t._version, t.dtype, t.shape) for n, t in tensors))
    known = _KEYS.get(model)
    if known is not None and known[0] == signature:
        return known[1]
    key = _digest(model, tree)
    _KEYS[model] = (signature, key)
    return key


def _digest(model: nn.Module, tree: str) -> str:
    digest = hashlib.sha256(tree.encode())
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.numpy().tobytes())
    for name, buffer in sorted(model.named_buffers()):  # non-persistent: preprocessing
        if name not in state:
            digest.update(name.encode() + buffer.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:32]


def converted_graph(model: nn.Module, convert: Callable[[], Any]) -> Any:
    """``convert()``'s OpenVINO model, read from the cache when this model was converted
    before (and the entry is intact), else converted and saved there. One conversion at a
    time: two traces at once can fail torch's sanity check."""
    import openvino as ov

    folder = _folder("openvino")
    if folder is None:
        with _TRACE_LOCK:
            return convert()
    key = graph_key(model)
    with key_lock(f"openvino/{key}"):
        graph = read_graph(folder / key)
        if graph is not None:
            return graph
        with _TRACE_LOCK:
            graph = convert()
        if writable_folder("openvino") is not None:
            store_entry(
                folder,
                key,
                lambda tmp: ov.save_model(graph, str(tmp / "model.xml"), compress_to_fp16=False),
            )
    return graph
