"""Training a video model on video folders (``mesonet train-video``).

The clips of a real/fake video folder (faces found once and cached, the longest track per
clip: :mod:`mesonet.training.videos`) are split by clip and identity; each is prepared once
per variant (as cached, augmented, and for real clips temporal self-blended:
:mod:`mesonet.training.video_bank`), and every step draws windows of ``frames`` consecutive
crops at random offsets, half real and half fake, ``synthetic_share`` of the fakes
self-blended. A ``temporal_conv`` head trains over a frozen frame model (copied into the run
folder at every start, so a file still being written by another run cannot change under it,
and a new ``frame_model`` replaces the copy of an older one); its tensors' digest goes into
``last.pt`` and the card, and a resume over another frame model is refused.
``meso4video`` trains whole from random initialisation.

The run folder follows ``mesonet train``'s rules: checked before any data is read (missing
parents are created), a folder holding a run (``last.pt`` or ``best.safetensors``) is
refused unless ``resume`` (continue it) or ``force`` (start over).

Validation after every epoch: each validation clip variant's score is the mean logit of its
windows (every 4th offset); ``auc`` is over real and fake clips (as cached and augmented),
``auc_sbi`` over real clips and their self-blends. The best epoch (highest ``auc``, then
``auc_sbi``) is written as ``best.safetensors`` with its card; ``last.pt`` holds the head,
the optimizer and the history, so ``resume`` continues a stopped run.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mesonet.destinations import check_output_dir, check_outputs_in, replacing
from mesonet.models import ModelCard, create_model, load_model, save_model
from mesonet.models.card import check_name, tensors_sha256
from mesonet.models.sequence import VIDEO_ARCHS
from mesonet.models.video_models import FRAMES, TemporalConv, VideoNet, head_on
from mesonet.training.checkpoint import read_checkpoint, save_checkpoint
from mesonet.training.clips import video_clips, window_starts
from mesonet.training.errors import TrainingError
from mesonet.training.video_bank import Entry, cached_bank, digest_path

CHECKPOINT = "last.pt"
BEST = "best.safetensors"
FRAME_COPY = "frame_model.safetensors"
BANKS = ("bank-train.pt", "bank-val.pt")
VAL_STRIDE = 4
MAX_LR = 1.0
"""The largest learning rate accepted: Adam's steps are about ``lr`` in size, so at 1e30
the weights overflow float32 in a step or two."""


@dataclass
class VideoTrainConfig:
    """The options of ``mesonet train-video`` (see its ``--help``)."""

    data: str
    out: str
    arch: str = "temporal_conv"
    frame_model: str = ""  # temporal_conv: the frozen frame model (bundled name or path)
    name: str = ""
    frames: int = FRAMES
    input_size: int = 0  # meso4video: crop side (0: 128)
    val_fraction: float = 0.2
    augmented: int = 3  # augmented copies of each clip
    blended: int = 6  # temporal self-blends of each real clip
    synthetic_share: float = 0.5  # share of the fake windows that are self-blended
    epochs: int = 30
    steps: int = 40  # batches per epoch
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 8
    seed: int = 0
    threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.arch not in VIDEO_ARCHS:
            raise TrainingError(f"arch must be one of {', '.join(VIDEO_ARCHS)}, not {self.arch!r}")
        if (self.arch == "temporal_conv") != bool(self.frame_model):
            raise TrainingError("--frame-model is needed by temporal_conv, and only by it")
        if not 2 <= self.frames <= 32:
            raise TrainingError(f"frames must be from 2 to 32 (a clip's length), not {self.frames}")
        if not 0 <= self.synthetic_share <= 1 or not 0 <= self.val_fraction < 1:
            raise TrainingError("synthetic_share must be in [0, 1] and val_fraction in [0, 1)")
        for key in ("epochs", "steps", "batch_size", "threads", "patience"):
            if getattr(self, key) < 1:
                raise TrainingError(f"{key} must be at least 1")
        for key in ("augmented", "blended", "input_size"):
            if getattr(self, key) < 0:
                raise TrainingError(f"{key} must be 0 or more, not {getattr(self, key)}")
        for key in ("lr", "weight_decay"):
            value = getattr(self, key)
            if not math.isfinite(value):
                raise TrainingError(f"{key} must be a finite number, not {value!r}")
        if not 0 < self.lr <= MAX_LR:
            raise TrainingError(f"lr must be above 0 and at most {MAX_LR:g}, not {self.lr!r}")
        if not 0 <= self.weight_decay <= 1:
            raise TrainingError(f"weight_decay must be from 0 to 1, not {self.weight_decay!r}")
        try:  # the card's name, checked before any work (the default comes from --out)
            check_name(self.card_name())
        except ValueError as exc:
            raise TrainingError(f"the model's name: {exc} (set it with --name)") from None

    def card_name(self) -> str:
        """The name the card will carry: ``name``, else ``ARCH.<out folder's name>``."""
        return self.name or f"{self.arch}.{Path(self.out).name}"


def build_model(config: VideoTrainConfig, out: Path) -> tuple[VideoNet, dict[str, str], str]:
    """The model to train, for a temporal head the card's ``frame_model`` (name, arch and
    the sha256 of its tensors), and the licence the weights inherit (the frame model's)."""
    if config.arch == "meso4video":
        torch.manual_seed(config.seed)
        return create_model("meso4video", config.input_size or None), {}, ""
    source = Path(config.frame_model)
    if source.suffix == ".safetensors" and source.is_file():
        copy = out / FRAME_COPY  # a run writing that file must not change it under us
        with replacing(copy, "copy of the frame model") as handle, source.open("rb") as f:
            shutil.copyfileobj(f, handle)
        source = copy
    frame = load_model(str(source) if source.is_file() else config.frame_model)
    torch.manual_seed(config.seed)
    model = head_on(frame, config.frames)
    named = {
        "name": frame.card.name,
        "arch": frame.arch,
        "sha256": tensors_sha256(model.frame.state_dict()),
    }
    return model, named, frame.card.license


def window_logits(model: VideoNet, entries: Sequence[Entry], starts: Sequence[int], length: int):
    """The model's logits for windows of ``length`` items of ``entries`` from ``starts``."""
    items = torch.stack([e.items[s : s + length] for e, s in zip(entries, starts, strict=True)])
    if isinstance(model, TemporalConv):
        return model.head(items[..., :-1], items[..., -1])
    return model.logits(items.float() / 255.0)


def draw_batch(
    pools: dict[str, list[Entry]], share: float, size: int, rng: np.random.Generator
) -> list[Entry]:
    """Half real entries, half fake (``share`` of those self-blended, when there are any)."""
    batch = []
    for i in range(size):
        if i % 2 == 0:
            pool = pools["real"]
        else:
            pool = pools["sbi"] if pools["sbi"] and rng.random() < share else pools["fake"]
            pool = pool or pools["sbi"]
        batch.append(pool[int(rng.integers(len(pool)))])
    return batch


@torch.no_grad()
def validate(model: VideoNet, entries: Sequence[Entry], length: int) -> dict[str, Any]:
    """Clip-level AUCs: each entry's score is the mean logit of its windows."""
    from sklearn.metrics import roc_auc_score

    model.eval()
    scores = []
    for entry in entries:
        starts = window_starts(entry.indices, length)[::VAL_STRIDE]
        scores.append(float(window_logits(model, [entry] * len(starts), starts, length).mean()))
    labels = np.array([e.label for e in entries])
    kinds = np.array([e.kind for e in entries])
    scores_a = np.array(scores)
    found = {"n": len(entries)}
    for name, keep in (("auc", kinds != "sbi"), ("auc_sbi", (kinds == "sbi") | (labels == 0))):
        y = labels[keep]
        found[name] = (
            round(float(roc_auc_score(y, scores_a[keep])), 4) if len(set(y)) == 2 else None
        )
    return found


def _pools(entries: Sequence[Entry], length: int) -> dict[str, list[Entry]]:
    usable = [e for e in entries if window_starts(e.indices, length)]
    return {
        "real": [e for e in usable if e.label == 0],
        "fake": [e for e in usable if e.label == 1 and e.kind != "sbi"],
        "sbi": [e for e in usable if e.kind == "sbi"],
    }


def _better(found: dict, best: dict | None) -> bool:
    if best is None:
        return True
    key = (found["auc"] or 0.0, found["auc_sbi"] or 0.0)
    return key > (best["auc"] or 0.0, best["auc_sbi"] or 0.0)


def check_run_folder(config: VideoTrainConfig, resume: bool, force: bool) -> dict | None:
    """Refuse, before any data is read, a run folder that cannot take the run's files or
    holds a run (``last.pt``, ``best.safetensors``) without ``resume`` or ``force``; with
    ``resume``, its checkpoint (read and checked)."""
    out = Path(config.out)
    inputs = [Path(config.data)]
    if config.frame_model and Path(config.frame_model).exists():
        inputs.append(Path(config.frame_model))
    check_output_dir(out, "training folder", inputs=inputs, create=False, parents=True)
    names = (CHECKPOINT, BEST, FRAME_COPY, *BANKS, *(digest_path(out / b).name for b in BANKS))
    check_outputs_in(out, names, "training output")
    if resume:
        return _read_checkpoint(out / CHECKPOINT)
    held = [name for name in (CHECKPOINT, BEST) if (out / name).exists()]
    if held and not force:
        raise TrainingError(
            f"{out} already holds a training run ({', '.join(held)}): pass --resume to "
            "continue it, --force to replace it, or choose another --out"
        )
    return None


def train_video(
    config: VideoTrainConfig,
    command: str = "",
    log: Callable[[str], None] = print,
    resume: bool = False,
    force: bool = False,
) -> Path:
    """Train as the module docstring says; returns the best weights' path. ``resume``
    continues the run in ``config.out``; ``force`` replaces it (see :func:`check_run_folder`)."""
    config.check()
    ckpt = check_run_folder(config, resume, force)
    torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    model, frame_model, licence = build_model(config, out)
    if ckpt is not None:
        _check_resumable(out / CHECKPOINT, ckpt, config, frame_model)
    train_clips, val_clips = video_clips(
        Path(config.data), config.val_fraction, config.seed, warn=log
    )
    log(
        f"{len(train_clips)} training clips, {len(val_clips)} validation clips "
        f"(split by clip and identity); preparing {config.augmented} augmented copies of "
        f"each and {config.blended} temporal self-blends of each real clip"
    )
    train = cached_bank(
        out / "bank-train.pt", train_clips, model, config.augmented, config.blended, config.seed,
        lambda d, n: log(f"  training clips prepared: {d}/{n}") if d % 10 == 0 or d == n else None,
        warn=log,
    )  # fmt: skip
    val = cached_bank(out / "bank-val.pt", val_clips, model, 2, 2, config.seed + 1, warn=log)
    bank_s = time.monotonic() - started
    pools = _pools(train, config.frames)
    if not pools["real"] or not (pools["fake"] or pools["sbi"]):
        raise TrainingError("the training clips need real windows and fake ones")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    state = {"epoch": 0, "history": [], "best": None}
    if ckpt is not None:
        state = _restore(out / CHECKPOINT, ckpt, model, optimizer)
    loss_fn = nn.BCEWithLogitsLoss()
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        rng = np.random.default_rng([config.seed, epoch])
        model.train()
        losses = []
        for _ in range(config.steps):
            batch = draw_batch(pools, config.synthetic_share, config.batch_size, rng)
            starts = [int(rng.choice(window_starts(e.indices, config.frames))) for e in batch]
            target = torch.tensor([float(e.label) for e in batch])
            loss = loss_fn(window_logits(model, batch, starts, config.frames), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        found = {"epoch": epoch, "loss": round(float(np.mean(losses)), 4)}
        found.update(validate(model, val, config.frames))
        improved = _better(found, state["best"])
        if improved:
            state["best"] = found
            card = _card(config, frame_model, train, val, found, command, started)
            card.license = licence
            save_model(model, out / "best.safetensors", card)
        state["epoch"] = epoch
        state["history"].append(found)
        _checkpoint(out, model, optimizer, state, config, frame_model)
        log(f"epoch {epoch}: {json.dumps(found)}" + (" (best)" if improved else ""))
        if epoch - state["best"]["epoch"] >= config.patience:
            log(f"no gain for {config.patience} epochs: stopping")
            break
    log(f"bank {bank_s:.0f} s, total {time.monotonic() - started:.0f} s")
    return out / "best.safetensors"


def _trainable(model: VideoNet) -> dict[str, torch.Tensor]:
    if isinstance(model, TemporalConv):
        return {f"head.{k}": v for k, v in model.head.state_dict().items()}
    return model.state_dict()


def _checkpoint(
    out: Path, model: VideoNet, optimizer, state: dict, config: VideoTrainConfig, frame: dict
) -> None:
    payload = {
        "kind": KIND,
        "arch": config.arch,
        "frames": config.frames,
        "frame_model": frame,  # name, arch, sha256 of its tensors ({} for meso4video)
        "model": _trainable(model),
        "optimizer": optimizer.state_dict(),
        "state": state,
    }
    save_checkpoint(out / CHECKPOINT, payload)  # a temporary file renamed over the old one


KIND = "train-video"


def _read_checkpoint(path: Path) -> dict:
    """``path`` read as a ``train-video`` checkpoint; anything else is one line."""
    saved = read_checkpoint(path)
    state = saved.get("state") if isinstance(saved, dict) else None
    if (
        not isinstance(saved, dict)
        or not {"model", "optimizer"} <= saved.keys()
        or not isinstance(state, dict)
        or not {"epoch", "history", "best"} <= state.keys()
    ):
        raise TrainingError(f"{path}: not a train-video checkpoint")
    if not isinstance(state["epoch"], int) or not isinstance(state["history"], list):
        raise TrainingError(f"{path}: a damaged train-video checkpoint (its state)")
    return saved


def _check_resumable(path: Path, saved: dict, config: VideoTrainConfig, frame: dict) -> None:
    """Refuse to resume ``saved`` with another architecture, window or frame model."""
    for key in ("arch", "frames"):
        if key in saved and saved[key] != getattr(config, key):
            raise TrainingError(
                f"{path} holds a run with {key} {saved[key]}, not {getattr(config, key)}: "
                "resume it as it was started, or --force to start over"
            )
    before = saved.get("frame_model") or {}
    if before.get("sha256") and before["sha256"] != frame.get("sha256"):
        raise TrainingError(
            f"{path} was trained over the frame model {before.get('name')} (tensors sha256 "
            f"{before['sha256'][:12]}), not {frame.get('name')} ({frame.get('sha256', '')[:12]})"
            ": resume with the same --frame-model, or --force to start over"
        )


def _restore(path: Path, saved: dict, model: VideoNet, optimizer) -> dict:
    try:
        if isinstance(model, TemporalConv):  # only the head is saved: every key of it
            weights = saved["model"]
            if any(not k.startswith("head.") for k in weights):
                raise KeyError("weights other than a temporal head's")
            model.head.load_state_dict({k.removeprefix("head."): v for k, v in weights.items()})
        else:
            model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().split("\n")[0][:160]
        raise TrainingError(f"{path} does not fit this model ({first})") from None
    return saved["state"]


def _card(
    config: VideoTrainConfig,
    frame_model: dict[str, str],
    train: Sequence[Entry],
    val: Sequence[Entry],
    found: dict,
    command: str,
    started: float,
) -> ModelCard:
    sequence: dict[str, Any] = {"frames": config.frames, "frame_step": 1}
    if frame_model:
        sequence["frame_model"] = frame_model
        what = (
            f"A temporal head (1-D convolution over {config.frames} frames) over the frozen "
            f"frame model {frame_model['name']} ({frame_model['arch']}): its per-frame "
            "embeddings and logits, and their changes from frame to frame"
        )
    else:
        what = (
            f"Meso-4's layers as 3-D convolutions over {config.frames} aligned face crops of "
            "one track, each resized to 128 px (the original works on whole frames at 256 px; "
            "128 px keeps it trainable on a CPU)"
        )
    counts = {kind: sum(e.kind == kind for e in train) for kind in ("clip", "aug", "sbi")}
    return ModelCard(
        name=config.card_name(),
        arch=config.arch,
        description=(
            f"{what}; trained with `mesonet train-video` on {config.data} (windows of "
            f"{config.frames} consecutive frames, temporal self-blended fakes from the real "
            f"clips), best epoch {found['epoch']} by validation AUC over held-out clips."
        ),
        sequence=sequence,
        threshold=0.5,
        training={
            "data": config.data,
            "split": f"by clip and identity, {len({e.clip for e in val})} validation clips",
            "variants": counts,
            "command": command,
            "config": asdict(config),
            "seconds": round(time.monotonic() - started),
        },
        metrics={"split": "val", "level": "clip", **found, "command": command},
        source="mesonet train-video",
    )
