"""Models as shipped OpenVINO graphs: what prediction runs, without PyTorch.

A model ``NAME`` made by ``mesonet export`` (:mod:`mesonet.export`; ``make graphs`` for the
bundled ones) is three files: ``NAME.xml`` and ``NAME.bin``, the OpenVINO graph of its logits
(float32 N x 3 x 256 x 256 in [0, 1] in; a video model's N x T x 3 x 256 x 256), and
``NAME.graph.json``, its card with the graph's sha256 (``graph``), the digest of the weights
it was made from, and, for a model run in int8, its prebuilt int8 graph (``int8``). The
bundled ones are in ``mesonet/models/graphs/``; a user's ``x.safetensors`` has its graph in
``x.graph.json`` beside it. An ensemble has no graph of its own: its members' are fused when
it is scored (:func:`mesonet.backends.fused.combine_graphs`); the bundled default also ships
its fused int8 graph.

:func:`load_graph_model` reads a model in this form, checks every graph file against the
digest its card records, and returns a :class:`GraphModel`, which the scorers
(:mod:`mesonet.scoring`) and the video stage run on OpenVINO.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesonet.errors import ModelError
from mesonet.models.card import ENSEMBLE_ARCH, MAX_CARD_BYTES, ModelCard, shown
from mesonet.models.combine import (
    SEPARATOR,
    ensemble_card,
    is_ensemble_name,
    normalised_weights,
)
from mesonet.models.references import ENSEMBLE_SUFFIX, bundled_models, file_kind, locate

GRAPHS = Path(__file__).parent / "graphs"
"""Where the bundled models' graphs are."""
SUFFIX = ".graph.json"
log = logging.getLogger(__name__)
FORMAT = 1


def graph_card_path(path: Path, reference: str) -> Path:
    """Where the graph card of the model at ``path`` (named ``reference``) is."""
    if reference in bundled_models():
        return GRAPHS / f"{reference}{SUFFIX}"
    if path.name.endswith(SUFFIX):
        return path
    return path.with_name(path.name.removesuffix(path.suffix) + SUFFIX)


def graph_digest(xml_path: str | Path, bin_path: str | Path) -> str:
    """The sha256 (hex) of a graph: its ``.xml`` bytes followed by its ``.bin`` bytes."""
    digest = hashlib.sha256()
    for path in (xml_path, bin_path):
        with open(path, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class GraphFiles:
    """One graph (``xml`` and ``bin``) and the sha256 its card records for them."""

    xml: Path
    bin: Path
    sha256: str

    @classmethod
    def of(cls, entry: Any, folder: Path, what: str) -> GraphFiles:
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) for k in ("xml", "bin", "sha256")
        ):
            raise ModelError(f"{what}: its graph entry names no xml, bin and sha256")
        files = cls(
            folder / Path(entry["xml"]).name, folder / Path(entry["bin"]).name, entry["sha256"]
        )
        files.check(what)
        return files

    def check(self, what: str) -> None:
        """Refuse (``ModelError``) missing files or files that are not those the card names."""
        for path in (self.xml, self.bin):
            if not path.is_file():
                raise ModelError(f"{what}: its graph file {path} is missing")
        if graph_digest(self.xml, self.bin) != self.sha256:
            raise ModelError(
                f"{what}: {self.xml.name} is not the graph its card names (sha256 differs): "
                "export the model again"
            )

    def read(self) -> Any:
        import openvino as ov

        return ov.Core().read_model(str(self.xml), str(self.bin))


@dataclass(eq=False)  # one model, one identity (a cache key)
class GraphModel:
    """A model in its shipped-graph form: its ``card``, its fp32 ``graph`` (None for an
    ensemble, whose ``members`` and ``weights`` are fused when scored), its prebuilt
    ``int8`` graph if any, and ``source``, the name or path it was loaded by."""

    card: ModelCard
    source: str
    graph: GraphFiles | None = None
    int8: GraphFiles | None = None
    members: list[GraphModel] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    unverified: bool = False
    weights_sha256: str = ""  # the digest of the tensors the graph was made from
    int8_entry: str = ""  # the int8 graph's name in the PyTorch path's cache (same graph)

    @property
    def arch(self) -> str:
        return self.card.arch

    @property
    def is_ensemble(self) -> bool:
        return self.card.arch == ENSEMBLE_ARCH

    def logit_graph(self) -> Any:
        """The OpenVINO model of the logits (an ensemble's members fused; see the module
        docstring)."""
        if self.graph is not None:
            return self.graph.read()
        from mesonet.backends.fused import combine_graphs, fusable, member_scale

        if not fusable(self):
            raise ModelError(f"{self.card.name}: a member calibrated by an isotonic map")
        scales = [member_scale(m, w) for m, w in zip(self.members, self.weights, strict=True)]
        return combine_graphs([m.logit_graph() for m in self.members], scales)

    def eval(self) -> GraphModel:
        return self  # a graph has no training mode: the same call as a module's


def has_graph(name_or_path: str | Path | None) -> bool:
    """Whether the model named (None: the default) can be loaded as graphs: its graph card
    (every member's, for an ensemble) is there."""
    try:
        for path, reference in _parts(name_or_path):
            if path.suffix == ENSEMBLE_SUFFIX and not path.name.endswith(SUFFIX):
                card = _json_card(path)
                members = [locate(str(m["model"]), path.parent) for m in card.members]
                if not all(_ready(p, r) for p, r in members):
                    return False
            elif not _ready(path, reference):
                return False
    except ModelError:
        return False
    return True


def _ready(path: Path, reference: str) -> bool:
    """Whether the model at ``path`` has a graph card made from its very weights."""
    return graph_card_path(path, reference).is_file() and _current(path, reference)


def _current(path: Path, reference: str) -> bool:
    """Whether the graph beside a weights file was made from these very weights (a model
    trained again under the same name leaves a stale graph, which is not run)."""
    if reference in bundled_models() or path.suffix != ".safetensors":
        return True  # bundled: tests/test_graphs.py checks them; a graph card given itself
    from mesonet.models.card_files import read_card

    made_from = read_graph_card(graph_card_path(path, reference)).get("weights_sha256")
    now = read_card(path).weights_sha256
    if now and made_from != now:
        log.warning("%s: its graph was made from other weights: mesonet export it again", path)
        return False
    return True


def load_graph_model(
    name_or_path: str | Path | None = None, *, trust_unverified: bool = False
) -> GraphModel:
    """The model named (a bundled name, a ``.safetensors`` path with its graph card beside
    it, a ``.graph.json``, an ensemble card or ``a+b``; None: the default) as graphs.
    ``ModelError`` when a graph is missing or is not the one its card names."""
    parts = _parts(name_or_path)
    if len(parts) > 1 or (name_or_path is not None and is_ensemble_name(str(name_or_path))):
        members = [_member(p, r, trust_unverified) for p, r in parts]
        card = ensemble_card(str(name_or_path), members, [1.0] * len(members))
        return _combined(card, str(name_or_path), members, [1.0] * len(members))
    ((path, reference),) = parts
    if path.suffix == ENSEMBLE_SUFFIX and not path.name.endswith(SUFFIX):
        return _ensemble(path, reference, trust_unverified)
    return _single(path, reference, trust_unverified)


def _parts(name_or_path: str | Path | None) -> list[tuple[Path, str]]:
    from mesonet.models.references import default_model_name

    text = default_model_name() if name_or_path is None else str(name_or_path)
    if text is None:
        raise ModelError("no bundled model is installed: pass --model")
    if is_ensemble_name(text) and not file_kind(Path(text)):
        return [locate(part.strip()) for part in text.split(SEPARATOR)]
    if text.endswith(SUFFIX):
        return [(Path(text), text)]
    return [locate(text)]


def _json_card(path: Path) -> ModelCard:
    try:
        raw = path.read_bytes()[: MAX_CARD_BYTES + 1]
        return ModelCard.from_json(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise ModelError(f"{path}: not a readable model card ({exc})") from None


def read_graph_card(path: Path) -> dict[str, Any]:
    """The graph card at ``path`` (JSON), checked for its format."""
    try:
        data = json.loads(path.read_bytes()[: 8 * MAX_CARD_BYTES + 1])
    except FileNotFoundError:
        raise ModelError(
            f"{path} is missing: this model has no graph; make one with `mesonet export` "
            "(needs pip install 'mesonet[train]')"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable graph card ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"{path}: not a graph card of format {FORMAT}")
    return data


def _single(path: Path, reference: str, trust_unverified: bool) -> GraphModel:
    card_path = graph_card_path(path, reference)
    data = read_graph_card(card_path)
    what = shown(reference)
    try:
        card = ModelCard.from_json(json.dumps(data.get("card")))
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{card_path}: invalid model card: {exc}") from None
    unverified = not card.weights_sha256
    if unverified and not trust_unverified:
        raise ModelError(
            f"{what}: its card carries no sha256 of its weights; pass --trust-unverified "
            "to use it anyway"
        )
    folder = card_path.parent
    graph = GraphFiles.of(data["graph"], folder, what) if data.get("graph") else None
    int8 = GraphFiles.of(data["int8"], folder, what) if data.get("int8") else None
    if graph is None:
        raise ModelError(f"{card_path}: names no graph")
    digest = str(data.get("weights_sha256") or "")
    return GraphModel(card, reference, graph, int8, unverified=unverified, weights_sha256=digest)


def _member(
    path: Path, reference: str, trust_unverified: bool, card_path: Path | None = None
) -> GraphModel:
    """An ensemble's member: refused when it is an ensemble or a video model (as the
    registry refuses them), else loaded as one model."""
    from mesonet.models.card_files import read_card
    from mesonet.models.sequence import is_video_card

    where = "" if card_path is None else f"{card_path}: member {shown(reference)}: "
    card = read_card(path)
    if card.arch == ENSEMBLE_ARCH:
        raise ModelError(f"{where}{reference}: an ensemble cannot be a member of another ensemble")
    if is_video_card(card):
        raise ModelError(
            f"{where}{reference} is a video model: it cannot be a member of an ensemble "
            "(give it as --video-model)"
        )
    return _single(path, reference, trust_unverified)


def _ensemble(path: Path, reference: str, trust_unverified: bool) -> GraphModel:
    card = _json_card(path)
    if card.arch != ENSEMBLE_ARCH:
        raise ModelError(f"{path}: a .json model must be an ensemble card (arch 'ensemble')")
    members = [
        _member(*locate(str(m["model"]), path.parent), trust_unverified, path) for m in card.members
    ]
    weights = [float(m.get("weight", 1.0)) for m in card.members]
    model = _combined(card, reference, members, weights)
    own = graph_card_path(path, reference)
    if own.is_file():  # the bundled default's prebuilt int8 graph
        data = read_graph_card(own)
        if data.get("int8") and _int8_current(data, model):
            model.int8 = GraphFiles.of(data["int8"], own.parent, shown(reference))
            model.int8_entry = str((data["int8"].get("record") or {}).get("entry") or "")
    return model


def _int8_current(data: dict[str, Any], model: GraphModel) -> bool:
    """Whether a prebuilt int8 graph was made for this very ensemble: the card it was made
    with is this one, and its members' weights digests and factors are these. A stale one
    (a card or member changed since ``make graphs``) is not run."""
    from mesonet.backends.fused import member_scale

    record = (data.get("int8") or {}).get("record") or {}
    pairs = zip(model.members, model.weights, strict=True)
    members = [f"{m.card.weights_sha256}|{member_scale(m, w)!r}" for m, w in pairs]
    current = (
        data.get("card") == json.loads(model.card.to_json()) and record.get("weights") == members
    )
    if not current:
        log.warning(
            "%s: its int8 graph was made for another card or members; run make graphs",
            model.card.name,
        )
    return current


def _combined(
    card: ModelCard,
    source: str,
    members: list[GraphModel],
    weights: list[float],
    int8: GraphFiles | None = None,
) -> GraphModel:
    """An ensemble of ``members``, its weights scaled to sum to 1 and a member named twice
    kept once with the sum of its weights (as :class:`~mesonet.models.ensemble.Ensemble`)."""
    kept: dict[str, tuple[GraphModel, float]] = {}
    for member, share in zip(members, normalised_weights(weights), strict=True):
        before = kept.get(member.source, (member, 0.0))[1]
        kept[member.source] = (member, before + share)
    unverified = any(m.unverified for m in members)
    models, shares = [m for m, _ in kept.values()], [w for _, w in kept.values()]
    return GraphModel(card, source, None, int8, models, shares, unverified)


def load_for_prediction(
    name_or_path: str | Path | None, backend: str = "auto", trust_unverified: bool = False
) -> Any:
    """The model to predict with: its graphs when it has them and ``backend`` runs graphs
    (no PyTorch is imported), else its weights (PyTorch). Without PyTorch, a model with
    no graph is refused with the way to make one."""
    from mesonet.scoring import GRAPH_BACKENDS

    if backend in GRAPH_BACKENDS and has_graph(name_or_path):
        return load_graph_model(name_or_path, trust_unverified=trust_unverified)
    try:
        from mesonet.models.registry import load_model
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "torch":
            raise
        what = shown(str(name_or_path or "the default model"))
        if backend in GRAPH_BACKENDS:
            hint = (
                f"{what} has no current graph and PyTorch is not installed: make it with "
                f"`mesonet export {what}` where pip install 'mesonet[train]' is done"
            )
        else:
            hint = (
                f"--backend {backend} needs PyTorch: pip install 'mesonet[train]' "
                "(or leave --backend auto)"
            )
        raise ModelError(hint) from None
    return load_model(name_or_path, trust_unverified=trust_unverified)


def ships_int8(card: ModelCard) -> bool:
    """Whether ``auto`` runs this bundled model in int8: its card's record passes and its
    prebuilt int8 graph was made with this very card (what ``mesonet models`` says)."""
    from mesonet.backends.int8_record import record_passes

    path = GRAPHS / f"{card.name}{SUFFIX}"
    if not record_passes(card) or not path.is_file():
        return False
    try:
        data = read_graph_card(path)
    except ModelError:
        return False
    return bool(data.get("int8")) and data.get("card") == json.loads(card.to_json())
