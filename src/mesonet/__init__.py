"""mesonet: deepfake detection with MesoNet (Meso-4, MesoInception-4) and EfficientNet-Lite.

>>> import mesonet
>>> detector = mesonet.Detector()            # bundled default model
>>> result = detector.predict("photo.jpg")   # MediaResult: status, fake_probability, faces...

Importing the package loads nothing heavy: the names below are imported on first use.
"""

import os as _os
import sys as _sys

# OpenVINO's converter, imported by `import openvino`, sends usage telemetry: on every start
# it forks the interpreter to try a web request (which hangs without a network until a
# timeout), and the forked copy holds every file open at that moment, a scan's locked output
# too. mesonet makes no network request: the telemetry package is kept from loading, so
# OpenVINO and NNCF use their stubs. MESONET_OPENVINO_TELEMETRY=1 leaves it be.
if not _os.environ.get("MESONET_OPENVINO_TELEMETRY") and "openvino_telemetry" not in _sys.modules:
    _sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]

__all__ = ["Detector", "MediaResult", "create_model", "list_models", "load_model", "__version__"]
__version__ = "0.1.0"

_LAZY = {
    "Detector": "mesonet.pipeline",  # OpenCV and the face detector
    "MediaResult": "mesonet.results",
    "create_model": "mesonet.models",  # PyTorch
    "list_models": "mesonet.models",
    "load_model": "mesonet.models",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mesonet' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
