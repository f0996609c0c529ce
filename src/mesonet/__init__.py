"""mesonet: deepfake detection with MesoNet (Meso-4, MesoInception-4) in PyTorch.

>>> import mesonet
>>> detector = mesonet.Detector()            # bundled default model
>>> result = detector.predict("photo.jpg")   # MediaResult: status, fake_probability, faces...
"""

from mesonet.models import create_model, list_models, load_model

__all__ = ["Detector", "MediaResult", "create_model", "list_models", "load_model", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str):  # the pipeline pulls in OpenCV and the face detector: load on use
    if name == "Detector":
        from mesonet.pipeline import Detector

        return Detector
    if name == "MediaResult":
        from mesonet.results import MediaResult

        return MediaResult
    raise AttributeError(f"module 'mesonet' has no attribute {name!r}")
