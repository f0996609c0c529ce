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

    def __init__(self, features: int = 16 * 8 * 8) -> None:
        super().__init__(
            nn.Dropout(0.5),
            nn.Linear(features, 16),
            nn.LeakyReLU(0.1),
            nn.Dropout(0.5),
            nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1).flatten(1)).squeeze(1)


class MesoNet(nn.Module):
    """Shared shape of both MesoNets: a feature trunk and the Meso head.

    ``forward`` maps float32 RGB N x 3 x 256 x 256 in [0, 1] to N fake probabilities;
    ``logits`` gives the pre-sigmoid scores (for training with a logit loss).
    """

    arch: str = ""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.head = MesoHead()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

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
