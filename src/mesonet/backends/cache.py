"""OpenVINO's start-up work kept between runs, in the user cache folder.

A model that the direct graph builder does not know (the ImageNet backbone) is traced by
``openvino.convert_model``, which takes seconds; the traced graph is saved as OpenVINO IR
under ``$MESONET_CACHE/openvino`` (default ``~/.cache/mesonet/openvino``), keyed by a sha256
of the model's tensors, its preprocessing and output, this cache's format and the OpenVINO
version, so a second start reads it back in milliseconds and changed weights never meet a
stale graph. OpenVINO's own ``CACHE_DIR`` keeps the compiled blobs beside it. A cache folder
that cannot be written is skipped: the model is converted as without a cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

log = logging.getLogger(__name__)

FORMAT = 1
"""Bumped when the graphs mesonet builds for the same weights change."""


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


def compiled_cache_dir() -> Path | None:
    """Where OpenVINO keeps compiled models (its ``CACHE_DIR``), or None without a cache."""
    return _folder("openvino-compiled")


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
    before, else converted and saved there."""
    import openvino as ov

    folder = _folder("openvino")
    if folder is None:
        return convert()
    key = graph_key(model)
    path = folder / key / "model.xml"
    if path.is_file():
        try:
            return ov.Core().read_model(str(path))
        except Exception as exc:  # noqa: BLE001 - a damaged entry is converted again
            log.warning("ignoring a damaged OpenVINO cache entry %s (%s)", path.parent, exc)
            shutil.rmtree(path.parent, ignore_errors=True)
    graph = convert()
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder))
        try:
            ov.save_model(graph, str(tmp / "model.xml"), compress_to_fp16=False)
            tmp.rename(folder / key)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        log.debug("could not cache the converted graph in %s: %s", folder, exc)
    return graph
