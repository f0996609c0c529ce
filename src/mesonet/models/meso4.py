"""Meso-4 (Afchar et al., WIFS 2018), layer for layer as the authors' Keras ``classifiers.py``."""

from __future__ import annotations

import torch
from torch import nn

# Keras' BatchNormalization default; the authors' weights were trained with it.
KERAS_BN_EPS = 1e-3


class ConvBlock(nn.Sequential):
    """conv ('same' padding) -> ReLU -> batch norm -> max-pool, the Meso block."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, pool: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(out_ch, eps=KERAS_BN_EPS),
            nn.MaxPool2d(pool),
        )


class MesoHead(nn.Sequential):
    """flatten -> dropout 0.5 -> dense 16 -> LeakyReLU 0.1 -> dropout 0.5 -> dense 1 (a logit).

    The flatten runs on channels-last features so the dense weights keep the Keras order.
    """

    def __init__(self, features: int = 16 * 8 * 8, hidden: int = 16) -> None:
        super().__init__(
            nn.Dropout(0.5),
            nn.Linear(features, hidden),
            nn.LeakyReLU(0.1),
            nn.Dropout(0.5),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1).flatten(1)).squeeze(1)


CROP_SIZE = 256
"""Side of the face crops every model receives (the pipeline's aligned crop)."""


class Preprocess(nn.Module):
    """A model's own input from the pipeline's crop: resize, then ``(x - mean) / std``.

    Takes float32 RGB N x 3 x H x W in [0, 1] (the pipeline gives 256 x 256) and returns
    N x 3 x ``size`` x ``size``. Resizing is bilinear with antialiasing (area-like when
    shrinking), as ``torch.nn.functional.interpolate(..., antialias=True)``; from the 256 px
    crop it runs as two matrix products with that resize's weights (:func:`resize_matrix`),
    which every engine exports, where the antialiased resize op has no ONNX form. It is
    skipped when the crop already has the size; mean 0 and std 1 skip the normalisation, so
    MesoNet's graph is unchanged. No state: nothing enters the weights.
    """

    def __init__(
        self,
        size: int,
        mean: tuple[float, ...] = (0.0, 0.0, 0.0),
        std: tuple[float, ...] = (1.0, 1.0, 1.0),
    ) -> None:
        super().__init__()
        self.size = int(size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)
        weights = resize_matrix(CROP_SIZE, self.size) if self.size != CROP_SIZE else None
        self.register_buffer("_resize", weights, persistent=False)

    @property
    def identity(self) -> bool:
        """True when the crop goes to the network unchanged (the MesoNets)."""
        return self.size == CROP_SIZE and self.normalises is False

    @property
    def normalises(self) -> bool:
        return self.mean != (0.0, 0.0, 0.0) or self.std != (1.0, 1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalising first is the same (each output pixel's resize weights sum to 1) and
        # keeps OpenVINO from fusing the per-channel step into the resize's matrix product
        if self.normalises:
            x = (x - self._mean.to(x.dtype)) / self._std.to(x.dtype)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            if self._resize is not None and x.shape[-1] == x.shape[-2] == CROP_SIZE:
                r = self._resize.to(x.dtype)
                x = torch.matmul(torch.matmul(r, x), r.t())
            else:
                x = nn.functional.interpolate(
                    x, size=(self.size, self.size), mode="bilinear", antialias=True
                )
        return x


def resize_matrix(source: int, target: int) -> torch.Tensor:
    """``target`` x ``source`` weights of the antialiased bilinear resize along one axis:
    ``R @ X @ R.T`` resizes a square ``X`` as ``interpolate(..., antialias=True)`` does."""
    eye = torch.eye(source).view(1, 1, source, source)
    resized = nn.functional.interpolate(eye, size=(source, target), mode="bilinear", antialias=True)
    return resized[0, 0].t().contiguous()


class MesoNet(nn.Module):
    """Shared shape of every network: preprocessing, a feature trunk and a head.

    ``forward`` maps float32 RGB N x 3 x 256 x 256 in [0, 1] (the pipeline's crop) to N fake
    probabilities; ``logits`` gives the pre-sigmoid scores (for training with a logit loss).
    ``preprocess`` turns the crop into the network's own input (``input_size``, ``mean``,
    ``std``, which the model card records); for the MesoNets it is the identity.
    ``head_prefix`` names the state-dict keys of the classifier head (trained at the full
    rate when the body's rate is scaled down).
    """

    arch: str = ""
    input_sizes: tuple[int, ...] = (CROP_SIZE,)  # the input sizes the architecture accepts
    default_input_size: int = CROP_SIZE
    default_mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    default_std: tuple[float, ...] = (1.0, 1.0, 1.0)
    head_prefix: str = "head."
    int8_fp32_convs: int = 0
    """Leading convolutions kept in fp32 when the network is quantised to int8 (the
    ``openvino-int8`` recipe, :mod:`mesonet.backends.int8`)."""

    def __init__(
        self,
        features: nn.Module,
        head: nn.Module | None = None,
        preprocess: Preprocess | None = None,
    ) -> None:
        super().__init__()
        self.features = features
        self.head = MesoHead() if head is None else head
        self.preprocess = preprocess or Preprocess(
            self.default_input_size, self.default_mean, self.default_std
        )

    @property
    def input_size(self) -> int:
        return self.preprocess.size

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.preprocess(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


class Meso4(MesoNet):
    """Four conv blocks (8@3x3, 8@5x5, 16@5x5, 16@5x5) and the Meso head: 27,977 parameters."""

    arch = "meso4"

    def __init__(self) -> None:
        super().__init__(
            nn.Sequential(
                ConvBlock(3, 8, 3, 2),
                ConvBlock(8, 8, 5, 2),
                ConvBlock(8, 16, 5, 2),
                ConvBlock(16, 16, 5, 4),
            )
        )


class Meso4W(MesoNet):
    """Meso-4 twice as wide after its first block: 8@3x3, 16@5x5, 32@5x5, 32@5x5, dense 32.

    Not in the paper: the capacity lever of issue 12 for training on several sources, where
    Meso-4 underfits. The first block keeps Meso-4's 8 channels at full resolution, where
    width costs most time (about three quarters of Meso-4's speed; 107,681 parameters).
    :func:`widen_meso4` makes one from a trained Meso-4 that computes the same function.
    """

    arch = "meso4w"

    def __init__(self) -> None:
        super().__init__(
            nn.Sequential(
                ConvBlock(3, 8, 3, 2),
                ConvBlock(8, 16, 5, 2),
                ConvBlock(16, 32, 5, 2),
                ConvBlock(32, 32, 5, 4),
            ),
            MesoHead(32 * 8 * 8, hidden=32),
        )


@torch.no_grad()
def widen_meso4(source: Meso4, noise: float = 0.0, seed: int = 0) -> Meso4W:
    """A :class:`Meso4W` computing what ``source`` computes (Net2Net widening: Chen,
    Goodfellow and Shlens, ICLR 2016).

    Every widened unit is a copy of an old one (new unit ``j`` copies old ``j mod n``); the
    layer after it sees each copy with half the old weight, so in eval mode the outputs are
    the same. ``noise`` adds Gaussian noise of that fraction of each weight tensor's standard
    deviation, so the copies can learn apart in training.
    """
    target = Meso4W().eval()
    generator = torch.Generator().manual_seed(seed)
    in_map = torch.arange(3)
    for block_old, block_new in zip(source.features, target.features, strict=True):
        old, new = block_old[0], block_new[0]
        out_map = torch.arange(new.out_channels) % old.out_channels
        counts = torch.bincount(in_map, minlength=old.in_channels).float()
        weight = old.weight[out_map][:, in_map] / counts[in_map].view(1, -1, 1, 1)
        new.weight.copy_(_jitter(weight, noise, generator))
        new.bias.copy_(old.bias[out_map])
        bn_old, bn_new = block_old[2], block_new[2]
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(bn_new, name).copy_(getattr(bn_old, name)[out_map])
        in_map = out_map
    # the head flattens channels-last 8 x 8 x C features: feature (p, c) = p * C + c
    channels_old, channels_new = old.out_channels, new.out_channels
    positions = torch.arange(64).repeat_interleave(channels_new)
    feature_map = positions * channels_old + in_map.repeat(64)
    dense_old, dense_new = source.head[1], target.head[1]
    hidden_map = torch.arange(dense_new.out_features) % dense_old.out_features
    counts = torch.bincount(in_map, minlength=channels_old).float().repeat(64)
    weight = dense_old.weight[hidden_map][:, feature_map] / counts[feature_map]
    dense_new.weight.copy_(_jitter(weight, noise, generator))
    dense_new.bias.copy_(dense_old.bias[hidden_map])
    last_old, last_new = source.head[4], target.head[4]
    counts = torch.bincount(hidden_map, minlength=dense_old.out_features).float()
    last_new.weight.copy_(last_old.weight[:, hidden_map] / counts[hidden_map])
    last_new.bias.copy_(last_old.bias)
    return target


def _jitter(weight: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    if noise <= 0:
        return weight
    scale = noise * float(weight.std())
    return weight + torch.randn(weight.shape, generator=generator) * scale
