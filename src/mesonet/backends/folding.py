"""The model as the engines run it: batch norms folded away, and logits instead of
probabilities when asked."""

from __future__ import annotations

import copy

import torch
from torch import nn


class Logits(nn.Module):
    """A model whose forward gives its logits instead of probabilities: a MesoNet's own
    ``logits``, or, for any module whose forward gives probabilities (the contract in
    docs/architecture.md), their log-odds (clamped, so 0 and 1 stay finite)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "logits"):
            return self.model.logits(x)
        return torch.logit(self.model(x).clamp(1e-7, 1 - 1e-7))


# --------------------------------------------------------------------------- batch norm folding


class ChannelShift(nn.Module):
    """Adds a per-channel constant: the shift of a folded batch norm, moved past a max-pool."""

    def __init__(self, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("shift", shift.detach().clone().reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


def _last_convs(layer: nn.Module) -> list[nn.Conv2d] | None:
    """The convs whose ReLU'd outputs (concatenated, in order) form ``layer``'s output."""
    from mesonet.models.mesoinception4 import InceptionLayer

    if isinstance(layer, nn.Conv2d):
        return [layer]
    if isinstance(layer, InceptionLayer):
        convs = []
        for branch in (layer.branch1, layer.branch2, layer.branch3, layer.branch4):
            last = [m for m in branch.modules() if isinstance(m, nn.Conv2d)][-1]
            convs.append(last)
        return convs
    return None


def _first_convs(layer: nn.Module) -> list[nn.Conv2d] | None:
    """The convs that read ``layer``'s input directly."""
    from mesonet.models.mesoinception4 import InceptionLayer

    if isinstance(layer, nn.Conv2d):
        return [layer]
    if isinstance(layer, InceptionLayer):
        branches = (layer.branch1, layer.branch2, layer.branch3, layer.branch4)
        return [next(m for m in b.modules() if isinstance(m, nn.Conv2d)) for b in branches]
    return None


def _unpadded_1x1(conv: nn.Conv2d) -> bool:
    return conv.kernel_size == (1, 1) and conv.padding in ((0, 0), 0) and conv.groups == 1


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of a MesoNet with its batch norms folded away, outputs unchanged.

    In a Meso block the batch norm ``y = a * x + b`` (per channel) sits after the ReLU and
    before the max-pool. When every ``a > 0``: ``a * relu(z) = relu(a * z)``, so ``a`` goes
    into the weights and bias of the conv(s) before the ReLU; and ``max(x + b) = max(x) + b``,
    so ``b`` moves past the pool, onto a 4 to 16 times smaller tensor. There it folds into
    the bias of the next layer when that layer sees no padding (the dense head, the 1 x 1
    convs opening an inception layer); before a zero-padded conv it stays a
    :class:`ChannelShift` (folding it into that conv's bias would be wrong at the borders,
    where the padding zeros would have to become ``-b``). Blocks with any ``a <= 0`` are kept
    as they are. Works on any MesoNet made of ``ConvBlock`` / ``InceptionBlock``; any other
    model is returned as an eval-mode copy.
    """
    folded = copy.deepcopy(model).eval().float()
    features = getattr(folded, "features", None)
    head = getattr(folded, "head", None)
    if not isinstance(features, nn.Sequential):
        return folded
    blocks = list(features)
    for i, block in enumerate(blocks):
        parts = list(block) if isinstance(block, nn.Sequential) else []
        bn_at = next((k for k, m in enumerate(parts) if isinstance(m, nn.BatchNorm2d)), None)
        if bn_at is None or bn_at + 1 >= len(parts):
            continue
        bn, pool = parts[bn_at], parts[bn_at + 1]
        producers = _last_convs(parts[0])
        if not isinstance(pool, nn.MaxPool2d) or producers is None:
            continue
        if bn_at == 2 and not isinstance(parts[1], nn.ReLU):
            continue  # ConvBlock: conv, ReLU, BN, pool
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        if not bool((scale > 0).all()) or sum(c.out_channels for c in producers) != len(scale):
            continue
        start = 0
        for conv in producers:
            s = scale[start : start + conv.out_channels]
            conv.weight.mul_(s.reshape(-1, 1, 1, 1))
            if conv.bias is not None:
                conv.bias.mul_(s)
            start += conv.out_channels
        block[bn_at] = nn.Identity()
        # The shift, after the pool: into the next layer when it sees no padding.
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        consumers = _first_convs(following[0]) if isinstance(following, nn.Sequential) else None
        if following is None and isinstance(head, nn.Sequential):
            linear = next((m for m in head if isinstance(m, nn.Linear)), None)
            if linear is not None and linear.in_features % len(shift) == 0:
                # the head flattens channels-last: feature k holds channel k % C
                repeats = linear.in_features // len(shift)
                linear.bias.add_(linear.weight @ shift.repeat(repeats))
                continue
        elif consumers and all(_unpadded_1x1(c) and c.bias is not None for c in consumers):
            for conv in consumers:
                conv.bias.add_(conv.weight[:, :, 0, 0] @ shift)
            continue
        block[bn_at + 1] = nn.Sequential(pool, ChannelShift(shift))
    return folded
