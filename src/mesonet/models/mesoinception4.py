"""MesoInception-4 (Afchar et al., WIFS 2018), as the authors' released code and weights have it."""

from __future__ import annotations

import torch
from torch import nn

from mesonet.models.meso4 import KERAS_BN_EPS, ConvBlock, MesoNet


def _conv_relu(in_ch: int, out_ch: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel - 1) // 2  # Keras 'same' for odd kernels, stride 1
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=pad, dilation=dilation), nn.ReLU(inplace=True)
    )


class InceptionLayer(nn.Module):
    """Concat of [1x1 a], [1x1 b, 3x3 b], [1x1 c, 3x3 c dilation 2], [1x1 d, 3x3 d dilation 3]."""

    def __init__(self, in_ch: int, a: int, b: int, c: int, d: int) -> None:
        super().__init__()
        self.branch1 = _conv_relu(in_ch, a, 1)
        self.branch2 = nn.Sequential(_conv_relu(in_ch, b, 1), _conv_relu(b, b, 3))
        self.branch3 = nn.Sequential(_conv_relu(in_ch, c, 1), _conv_relu(c, c, 3, dilation=2))
        self.branch4 = nn.Sequential(_conv_relu(in_ch, d, 1), _conv_relu(d, d, 3, dilation=3))
        self.out_channels = a + b + c + d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], dim=1)


class InceptionBlock(nn.Sequential):
    """Inception layer -> batch norm -> max-pool 2."""

    def __init__(self, in_ch: int, a: int, b: int, c: int, d: int) -> None:
        layer = InceptionLayer(in_ch, a, b, c, d)
        super().__init__(
            layer, nn.BatchNorm2d(layer.out_channels, eps=KERAS_BN_EPS), nn.MaxPool2d(2)
        )


class MesoInception4(MesoNet):
    """Inception blocks (1, 4, 4, 2) and (2, 4, 4, 2), then Meso-4's last two conv blocks and head.

    The paper's table gives (1,4,4,1)/(1,4,4,2); the released code and weights use the values
    here, which give 28,615 trainable parameters.
    """

    arch = "mesoinception4"

    def __init__(self) -> None:
        super().__init__(
            nn.Sequential(
                InceptionBlock(3, 1, 4, 4, 2),
                InceptionBlock(11, 2, 4, 4, 2),
                ConvBlock(12, 16, 5, 2),
                ConvBlock(16, 16, 5, 4),
            )
        )
