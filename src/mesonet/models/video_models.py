"""Video models: a fake probability for a window of one face track's crops.

Two architectures, registered with the image ones (:data:`~mesonet.models.ARCHITECTURES`)
and loaded by :func:`~mesonet.models.load_model` like any model; their cards carry a
``sequence`` (:mod:`mesonet.models.sequence`). Both take float32 RGB crops
N x T x 3 x 256 x 256 in [0, 1] (T = the card's ``sequence.frames``: 24 crops of one track,
in order) and give N logits (``forward``: probabilities); ``preprocess`` resizes and
normalises every crop as for an image model.

- ``meso4video``: Meso-4's layers as 3-D convolutions (8/16/32/32 channels, 3x3x3 kernels,
  batch norm, pooling; global average pooling; dense 64 and 16 with LeakyReLU 0.1 and
  dropout 0.5; one logit), the video model of the system we build on, here on aligned face
  crops of one track (at 128 px by default, to stay trainable on a CPU) rather than on
  whole frames.
- ``temporal_conv``: a small 1-D convolution over the per-frame embeddings of a frozen
  frame model (its pooled features and its own logit, and their changes from frame to
  frame). The frame model's tensors are stored in the same file under ``frame.``; the card
  names it and the sha256 of those tensors, checked on load.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mesonet.errors import ModelError
from mesonet.models.efficientnet import LITE_MEAN, LITE_STD
from mesonet.models.meso4 import CROP_SIZE, MesoNet, Preprocess
from mesonet.models.sequence import FRAME_ARCHS

FRAMES = 24
"""Frames per window (the system we build on samples 24 per clip)."""
FRAME_PREFIX = "frame."


class VideoNet(MesoNet):
    """A video model: ``logits`` maps N x T x 3 x H x W crops in [0, 1] to N logits."""

    frames: int = FRAMES

    def frame_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Every crop of the windows through ``preprocess``: N x T x 3 x s x s."""
        if x.dim() != 5:
            raise ModelError(f"a video model takes N x T x 3 x H x W crops, not {tuple(x.shape)}")
        n, t = x.shape[:2]
        return self.preprocess(x.flatten(0, 1)).unflatten(0, (n, t))


class Conv3dBlock(nn.Sequential):
    """conv 3x3x3 ('same') -> ReLU -> batch norm -> max-pool (time, height, width)."""

    def __init__(self, in_ch: int, out_ch: int, pool: tuple[int, int, int]) -> None:
        super().__init__(
            nn.Conv3d(in_ch, out_ch, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.BatchNorm3d(out_ch),
            nn.MaxPool3d(pool),
        )


class VideoHead(nn.Sequential):
    """global average pooling -> dense 64 -> LeakyReLU 0.1 -> dropout 0.5 -> dense 16 ->
    LeakyReLU 0.1 -> dropout 0.5 -> dense 1 (a logit)."""

    def __init__(self, features: int = 32) -> None:
        super().__init__(
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(1),
            nn.Linear(features, 64),
            nn.LeakyReLU(0.1),
            nn.Dropout(0.5),
            nn.Linear(64, 16),
            nn.LeakyReLU(0.1),
            nn.Dropout(0.5),
            nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).squeeze(1)


class Meso4Video(VideoNet):
    """Conv3D 8/16/32/32 over 24 crops of one track: 37,585 parameters.

    Time is pooled from the second block on (24 -> 12 -> 6 -> 3 frames), space at every
    block (128 px -> 8 px), so the last block still sees motion across frames.
    """

    arch = "meso4video"
    input_sizes = tuple(range(64, CROP_SIZE + 1, 32))
    default_input_size = 128

    def __init__(self, input_size: int = 128, frames: int = FRAMES) -> None:
        super().__init__(
            nn.Sequential(
                Conv3dBlock(3, 8, (1, 2, 2)),
                Conv3dBlock(8, 16, (2, 2, 2)),
                Conv3dBlock(16, 32, (2, 2, 2)),
                Conv3dBlock(32, 32, (2, 2, 2)),
            ),
            VideoHead(32),
            Preprocess(input_size),
        )
        self.frames = frames

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.frame_inputs(x).transpose(1, 2)))


class TemporalHead(nn.Module):
    """Per-frame embedding -> dense ``width`` -> with its change from the previous frame and
    the frame logit and its change -> two 1-D convolutions (kernel 3) over time -> mean and
    max over time -> dropout 0.5 -> dense 1 (a logit)."""

    def __init__(self, embedding: int, width: int = 64, channels: int = 32) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Dropout(0.2), nn.Linear(embedding, width), nn.ReLU())
        self.conv = nn.Sequential(
            nn.Conv1d(2 * width + 2, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, padding=1),
            nn.ReLU(),
        )
        self.out = nn.Sequential(nn.Dropout(0.5), nn.Linear(2 * channels, 1))

    def forward(self, embeddings: torch.Tensor, frame_logits: torch.Tensor) -> torch.Tensor:
        """``embeddings`` N x T x D and ``frame_logits`` N x T -> N logits."""
        h = self.project(embeddings)
        z = frame_logits.unsqueeze(2)
        parts = [h, _change(h), z, _change(z)]
        y = self.conv(torch.cat(parts, dim=2).transpose(1, 2))
        return self.out(torch.cat([y.mean(2), y.amax(2)], dim=1)).squeeze(1)


def _change(x: torch.Tensor) -> torch.Tensor:
    """x[t] - x[t - 1] along dim 1 (0 for the first frame)."""
    return torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], dim=1)


class TemporalConv(VideoNet):
    """A temporal head over a frozen frame model's per-frame embeddings.

    ``frame`` is the frame model (any image architecture in
    :data:`~mesonet.models.sequence.FRAME_ARCHS`); it stays in eval mode and is never
    trained. ``embed`` gives its pooled features and logits per crop, which is all a
    trainer needs to precompute.
    """

    arch = "temporal_conv"
    input_sizes = tuple(range(64, 321, 32))
    default_input_size = 160
    default_mean = LITE_MEAN  # the default frame model's (efficientnet_lite0)
    default_std = LITE_STD
    head_prefix = "head."

    def __init__(
        self,
        input_size: int = 160,
        frames: int = FRAMES,
        frame_arch: str = "efficientnet_lite0",
        frame: MesoNet | None = None,
    ) -> None:
        if frame is None:
            frame = _frame_model(frame_arch, input_size)
        super().__init__(nn.Identity(), TemporalHead(_embedding_size(frame)), frame.preprocess)
        self.frame = frame.eval().requires_grad_(False)
        self.frames = frames

    @property
    def frame_arch(self) -> str:
        return self.frame.arch

    def train(self, mode: bool = True) -> TemporalConv:
        super().train(mode)
        self.frame.eval()  # frozen: its batch norm and dropout never train
        return self

    def embed(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The frame model's pooled features (N x D) and logits (N) of crops N x 3 x H x W
        (float in [0, 1])."""
        x = self.preprocess(crops)
        features = self.frame.features(x)
        return _pooled(features), self.frame.head(features)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ModelError(f"a video model takes N x T x 3 x H x W crops, not {tuple(x.shape)}")
        n, t = x.shape[:2]
        with torch.no_grad():
            embeddings, frame_logits = self.embed(x.flatten(0, 1))
        return self.head(embeddings.unflatten(0, (n, t)), frame_logits.unflatten(0, (n, t)))


def _pooled(features: torch.Tensor) -> torch.Tensor:
    """A frame's embedding: pooled features (spatial maps averaged; vectors as they are)."""
    return features.mean(dim=(2, 3)) if features.dim() == 4 else features.flatten(1)


def _frame_model(arch: str, input_size: int) -> MesoNet:
    if arch not in FRAME_ARCHS:
        raise ModelError(f"a temporal head sits on one of {', '.join(FRAME_ARCHS)}, not {arch!r}")
    from mesonet.models.registry import create_model

    return create_model(arch, input_size)


@torch.no_grad()
def _embedding_size(frame: MesoNet) -> int:
    training = frame.training
    frame.eval()
    crop = torch.zeros(1, 3, CROP_SIZE, CROP_SIZE)
    size = _pooled(frame.features(frame.preprocess(crop))).shape[1]
    frame.train(training)
    return int(size)


def create_video_model(card: Any) -> VideoNet:
    """A freshly initialised video model shaped as ``card`` says (its ``sequence`` checked)."""
    frames = int(card.sequence["frames"])
    if card.arch == Meso4Video.arch:
        if card.input_size not in Meso4Video.input_sizes:
            raise ModelError(f"meso4video takes input sizes 64 to 256 px, not {card.input_size}")
        model: VideoNet = Meso4Video(card.input_size, frames)
        model.preprocess = Preprocess(card.input_size, tuple(card.mean), tuple(card.std))
        return model
    if card.arch == TemporalConv.arch:
        from mesonet.models.registry import create_model

        frame_arch = card.sequence["frame_model"]["arch"]
        frame = create_model(frame_arch, card.input_size, card.mean, card.std)
        return TemporalConv(card.input_size, frames, frame=frame)
    raise ModelError(f"{card.arch!r} is not a video architecture")


def frame_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The frame model's tensors of a temporal head's state, under their own names."""
    return {k[len(FRAME_PREFIX) :]: v for k, v in state.items() if k.startswith(FRAME_PREFIX)}


def head_on(frame: MesoNet, frames: int = FRAMES) -> TemporalConv:
    """A new temporal head on a trained (loaded) frame model, whose weights it copies."""
    if getattr(frame, "arch", None) not in FRAME_ARCHS:
        raise ModelError(
            f"a temporal head sits on a single image model ({', '.join(FRAME_ARCHS)}), "
            f"not {getattr(frame, 'arch', type(frame).__name__)!r}"
        )
    from mesonet.models.registry import create_model

    pre = frame.preprocess
    copy = create_model(frame.arch, pre.size, pre.mean, pre.std)
    copy.load_state_dict(frame.state_dict())
    copy.card = getattr(frame, "card", None)
    return TemporalConv(copy.preprocess.size, frames, frame=copy)


def check_frame_digest(card: Any, state: dict[str, torch.Tensor], where: str) -> None:
    """Refuse a temporal head whose stored frame model is not the one its card names."""
    if card.arch != TemporalConv.arch:
        return
    from mesonet.models.card import tensors_sha256

    named = card.sequence["frame_model"]
    if tensors_sha256(frame_state(state)) != named["sha256"]:
        raise ModelError(
            f"{where}: the frame model stored in it is not {named['name']!r} "
            "(its tensors do not match the sha256 in the card's sequence.frame_model)"
        )
