"""mesonet: deepfake detection with MesoNet (Meso-4, MesoInception-4) and EfficientNet-Lite.

>>> import mesonet
>>> detector = mesonet.Detector()            # bundled default model
>>> result = detector.predict("photo.jpg")   # MediaResult: status, fake_probability, faces...

Importing the package loads nothing heavy: the names below are imported on first use.
"""

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
