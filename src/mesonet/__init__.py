"""mesonet: deepfake detection with MesoNet (Meso-4, MesoInception-4) in PyTorch."""

from mesonet.models import create_model, list_models, load_model

__all__ = ["create_model", "list_models", "load_model", "__version__"]
__version__ = "0.1.0"
