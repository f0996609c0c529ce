"""One registry: build an architecture, or load named (bundled) or on-disk weights.

Bundled weights live in ``mesonet/models/weights/<name>.safetensors`` with their model card
in the file's metadata; names have the form ``architecture.tag`` (``meso4.dfdc``). Ensembles
are ``a+b`` (any bundled names or paths) or an ensemble card ``<name>.json`` (bundled beside
the weights, or a path): see :mod:`mesonet.models.ensemble`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from mesonet.destinations import write_output
from mesonet.errors import ModelError
from mesonet.models.card import (
    ENSEMBLE_ARCH,
    MAX_MEMBERS,
    ModelCard,
    normalization_text,
    shown,
    tensors_sha256,
)
from mesonet.models.card_files import CARD_KEY as CARD_KEY
from mesonet.models.card_files import list_models as list_models
from mesonet.models.card_files import read_card as read_card
from mesonet.models.efficientnet import EfficientNetLite0
from mesonet.models.ensemble import SEPARATOR, Ensemble, ensemble_card, is_ensemble_name
from mesonet.models.meso4 import Meso4, Meso4W, MesoNet, Preprocess
from mesonet.models.mesoinception4 import MesoInception4
from mesonet.models.references import (
    cycle_text,
    default_model_name,
    file_kind,
    locate,
    relative_members,
)
from mesonet.models.sequence import is_video_card
from mesonet.models.video_models import (
    Meso4Video,
    TemporalConv,
    check_frame_digest,
    create_video_model,
)

ARCHITECTURES: dict[str, type[MesoNet]] = {
    "meso4": Meso4,
    "mesoinception4": MesoInception4,
    "meso4w": Meso4W,
    "efficientnet_lite0": EfficientNetLite0,
    # video models (a card with a sequence; see mesonet.models.video_models)
    "meso4video": Meso4Video,
    "temporal_conv": TemporalConv,
}
MAX_CYCLE_CARDS = 64
"""Most ensemble cards read while looking for a cycle among them."""


def create_model(
    arch: str,
    input_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> MesoNet:
    """A freshly initialised model of ``arch`` (a key of ``ARCHITECTURES``), in train mode.

    ``input_size``, ``mean`` and ``std`` set its preprocessing (see
    :class:`mesonet.models.meso4.Preprocess`); None keeps the architecture's own. A size the
    architecture cannot take is refused.
    """
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise ModelError(
            f"unknown architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)}"
        ) from None
    size = cls.default_input_size if input_size is None else input_size
    if size not in cls.input_sizes:
        allowed = ", ".join(str(s) for s in cls.input_sizes)
        raise ModelError(f"{arch} takes input sizes {allowed} px, not {size}")
    model = cls() if size == cls.default_input_size else cls(input_size=size)
    model.preprocess = Preprocess(
        size,
        cls.default_mean if mean is None else tuple(mean),
        cls.default_std if std is None else tuple(std),
    )
    return model


def create_model_for(card: ModelCard) -> MesoNet:
    """A freshly initialised model shaped and preprocessed as ``card`` says."""
    if card.sequence:  # a video model: frames and the frame model it sits on
        return create_video_model(card)
    return create_model(card.arch, card.input_size, card.mean, card.std)


def save_model(
    model: MesoNet, path: str | Path, card: ModelCard, *, digest: bool = True
) -> ModelCard:
    """Write ``model``'s weights and ``card`` (with a fresh digest) to a safetensors file.

    ``digest=False`` writes the card without a sha256, so the file stays unverified (loaded
    only with ``trust_unverified``): for weights that were unverified when read, whose trust a
    rewrite must not vouch for. The write is atomic: a crash leaves either the old file or the
    new one.
    """
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    card.arch = model.arch
    card.input_size = model.preprocess.size
    card.mean, card.std = list(model.preprocess.mean), list(model.preprocess.std)
    card.normalization = normalization_text(card.mean, card.std)
    card.weights_sha256 = tensors_sha256(state) if digest else ""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # through the one output writer: a temporary file renamed over ``path``, umask modes
    write_output(path, save(state, metadata={CARD_KEY: card.to_json()}), "model")
    return card


def save_ensemble(card: ModelCard, path: str | Path) -> ModelCard:
    """Write an ensemble card (JSON) atomically, its members' paths relative to it (see
    :func:`~mesonet.models.references.relative_members`); ``card`` itself is not changed."""
    card.check()
    path = Path(path)
    written = dataclasses.replace(card, members=relative_members(card.members, path))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_output(path, written.to_json() + "\n", "ensemble card")
    return card


def resolve_model_path(name_or_path: str | Path | None) -> Path:
    """The weights file meant by a bundled name, a path, or None (the default model)."""
    return _resolve(name_or_path)[0]


def _resolve(name_or_path: str | Path | None) -> tuple[Path, str]:
    if name_or_path is None:
        name_or_path = default_model_name()
        if name_or_path is None:
            raise ModelError(
                "no bundled model is installed: pass --model PATH.safetensors "
                "(see `mesonet import-keras` to convert the authors' weights)"
            )
    return locate(str(name_or_path))


def load_model(
    name_or_path: str | Path | None = None, *, verify: bool = True, trust_unverified: bool = False
) -> MesoNet | Ensemble:
    """A model in eval mode mapping N x 3 x 256 x 256 RGB in [0, 1] to N fake probabilities
    (each model resizes and normalises that crop to its own input, as its card says).

    ``name_or_path``: a bundled name (``mesonet.list_models()``), a ``.safetensors`` path, an
    ensemble (``a+b``, or an ensemble card ``.json``), or None for the default model. The
    card is attached as ``model.card``; its calibration is applied by the scorers
    (:mod:`mesonet.scoring`), not by ``forward``. Tensors holding NaN or infinity are always
    refused. With ``verify``, the tensors must match the card's architecture exactly and its
    sha256 digest, and a card without a digest is refused unless ``trust_unverified`` (the
    model is then marked ``model.unverified = True``, and every record it scores says so; an
    ensemble is unverified when one of its members is).

    An ensemble has at most :data:`~mesonet.models.card.MAX_MEMBERS` members, none an
    ensemble itself (cards that list each other are named as a cycle); a card's members are
    read from its own folder, and each distinct file is loaded once. In the loaded card,
    members are named by their references (bundled names or absolute paths).
    """
    loader = _Loader(verify, trust_unverified)
    text = None if name_or_path is None else str(name_or_path)
    if text is not None and is_ensemble_name(text) and not file_kind(Path(text)):
        parts = [p.strip() for p in text.split(SEPARATOR)]
        if not all(parts):
            raise ModelError(f"{shown(text)}: an ensemble is model names joined by '+', as a+b")
        if len(parts) > MAX_MEMBERS:
            raise ModelError(
                f"{shown(text)}: an ensemble has at most {MAX_MEMBERS} members, not {len(parts)}"
            )
        members = [loader.member(p) for p in parts]
        card = ensemble_card(text, members, [1.0] * len(members))
        return Ensemble(members, [1.0] * len(members), card).eval()
    path, reference = _resolve(name_or_path)
    card = read_card(path)
    if card.arch == ENSEMBLE_ARCH:
        return loader.ensemble(path, card)
    return loader.single(path, reference, card)


class _Loader:
    """One :func:`load_model` call: each distinct file loaded once, cycles named."""

    def __init__(self, verify: bool, trust_unverified: bool) -> None:
        self.verify = verify
        self.trust_unverified = trust_unverified
        self.loaded: dict[Path, MesoNet] = {}

    def single(self, path: Path, reference: str, card: ModelCard) -> MesoNet:
        key = path.resolve()
        if key not in self.loaded:
            model = _load_weights(path, card, self.verify, self.trust_unverified)
            model.source = reference  # how ensemble cards name it (see ensemble_card)
            model.card_path = path  # where files its card names are (int8 statistics)
            self.loaded[key] = model
        return self.loaded[key]

    def member(self, name: str, card_path: Path | None = None) -> MesoNet:
        """Member ``name`` of the card at ``card_path`` (None: of an ``a+b`` ensemble)."""
        base = None if card_path is None else card_path.parent
        where = "" if card_path is None else f"{card_path}: member {shown(name)}: "
        candidate = Path(name) if base is None else base / name
        if is_ensemble_name(name) and not file_kind(candidate):
            raise ModelError(f"{where}{name}: an ensemble cannot be a member of another ensemble")
        try:
            path, reference = locate(name, base)
            card = read_card(path)
        except ModelError as exc:
            raise ModelError(f"{where}{exc}") from None
        if card.arch == ENSEMBLE_ARCH:
            cycle = None if card_path is None else _find_cycle(card_path, path)
            if cycle:
                raise ModelError(f"{card_path}: its members form a cycle: {cycle_text(cycle)}")
            raise ModelError(f"{where}{name}: an ensemble cannot be a member of another ensemble")
        if is_video_card(card):  # it scores runs of frames, never one crop
            raise ModelError(
                f"{where}{name} is a video model: it cannot be a member of an ensemble "
                "(give it as --video-model)"
            )
        return self.single(path, reference, card)

    def ensemble(self, path: Path, card: ModelCard) -> Ensemble:
        members = [self.member(m["model"], path) for m in card.members]
        weights = [m.get("weight", 1.0) for m in card.members]
        card.members = [
            {**m, "model": model.source} for m, model in zip(card.members, members, strict=True)
        ]
        ensemble = Ensemble(members, weights, card).eval()
        ensemble.card_path = path
        return ensemble


def _find_cycle(top: Path, first: Path) -> list[Path] | None:
    """Ensemble cards from ``top`` through its member ``first`` back to one already on the
    chain (a card listing itself: ``[a, a]``), or None. Reads each card once, at most
    :data:`MAX_CYCLE_CARDS` of them, and no weights."""
    seen: set[Path] = set()

    def walk(chain: list[Path]) -> list[Path] | None:
        path = chain[-1]
        if path in chain[:-1]:
            return chain[chain.index(path) :]
        if path in seen or len(seen) >= MAX_CYCLE_CARDS:
            return None
        seen.add(path)
        try:
            card = read_card(path)
        except ModelError:
            return None
        for member in card.members if card.arch == ENSEMBLE_ARCH else ():
            try:
                following, _ = locate(member["model"], path.parent)
            except ModelError:
                continue
            found = walk([*chain, following.resolve()])
            if found:
                return found
        return None

    return walk([top.resolve(), first.resolve()])


def _load_weights(path: Path, card: ModelCard, verify: bool, trust_unverified: bool) -> MesoNet:
    """The single model in the weights file ``path`` whose card is ``card``."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read weights ({exc})") from None
    if card.arch not in ARCHITECTURES:
        raise ModelError(
            f"{path}: model card names an unknown architecture {card.arch!r} "
            f"(known: {', '.join(ARCHITECTURES)})"
        )
    model = create_model_for(card)
    _check_state(model, state, path)
    _check_finite(state, path)
    check_frame_digest(card, state, str(path))
    unverified = not card.weights_sha256.strip()
    if verify and unverified and not trust_unverified:
        raise ModelError(
            f"{path}: model card carries no sha256 of the weights, so they cannot be verified; "
            "pass --trust-unverified (API: trust_unverified=True) to load them anyway"
        )
    if verify and not unverified and tensors_sha256(state) != card.weights_sha256:
        raise ModelError(
            f"{path}: weights do not match the sha256 in their model card "
            "(file altered or corrupted)"
        )
    model.load_state_dict(state, strict=True)
    model.card = card
    model.unverified = unverified or not verify
    return model.eval()


def _check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse weights holding NaN or infinity: such a model gives no meaningful score."""
    bad = [
        name
        for name, tensor in sorted(state.items())
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ModelError(f"{path}: weights hold NaN or infinite values ({shown}): refusing them")


def _check_state(model: MesoNet, state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse a state dict with missing, extra or wrongly shaped tensors, saying which."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append("missing tensors: " + ", ".join(missing[:5]))
    if extra:
        problems.append("unexpected tensors: " + ", ".join(extra[:5]))
    if wrong:
        problems.append("wrong shapes: " + ", ".join(wrong[:5]))
    if problems:
        raise ModelError(f"{path}: weights do not fit {model.arch}: " + "; ".join(problems))
