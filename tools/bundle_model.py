"""Measure a trained model on held-out data and install it as a bundled model.

    python tools/bundle_model.py runs/meso4-dfdc/best.safetensors --name meso4.dfdc

Runs `mesonet evaluate` (the library call behind it) on:
  - ../shared/datasets/dfdc-faces/test       (frame level, --faces none; the held-out split)
  - ../shared/datasets/mesonet-deepfake-val  (frame level, --faces none; never trained on)
  - ../shared/datasets/ffpp-c40-videos       (video level, faces detected; never trained on)
records each result with the command that reproduces it in the model card, and writes
src/mesonet/models/weights/<name>.safetensors. The threshold stays the one chosen on
validation data during training.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mesonet.evaluation.runner import evaluate
from mesonet.models import load_model, save_model
from mesonet.pipeline import Detector
from mesonet.training.loop import inherited_license

REPO = Path(__file__).resolve().parents[1]
SHARED = Path("../shared")
WEIGHTS = REPO / "src" / "mesonet" / "models" / "weights"
HEADLINE = ("n", "auc", "ap", "eer", "accuracy", "precision", "recall", "f1", "threshold")

SETS = {
    "dfdc_faces_test": (SHARED / "datasets/dfdc-faces/test", "none"),
    "mesonet_deepfake_val": (SHARED / "datasets/mesonet-deepfake-val", "none"),
    "ffpp_c40_videos": (SHARED / "datasets/ffpp-c40-videos", "detect"),
}


def measure(model_path: Path, name: str, only: list[str]) -> dict:
    results = {}
    for key, (data, faces) in SETS.items():
        if only and key not in only:
            continue
        metrics = evaluate(Detector(model_path, faces=faces), data)
        flag = " --faces none" if faces == "none" else ""
        results[key] = {
            **{k: metrics[k] for k in HEADLINE},
            "level": metrics["level"],
            "by_group": {
                g: {"n": v["n"], "accuracy": v["accuracy"], "auc": v["auc"]}
                for g, v in metrics["by_group"].items()
                if g
            },
            "command": f"mesonet evaluate {data}{flag} --model {name}",
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "model", type=Path, help="a trained .safetensors (e.g. runs/x/best.safetensors)"
    )
    parser.add_argument("--name", required=True, help="bundled name, architecture.tag")
    parser.add_argument("--only", nargs="*", default=[], help="measure only these sets")
    parser.add_argument(
        "--command",
        help="the training command(s) to record, where the run's own is not the whole story "
        "(a resumed run: both commands)",
    )
    parser.add_argument("--description", help="the card's one-paragraph description")
    parser.add_argument(
        "--notes",
        type=Path,
        help="a Markdown file: what was tried and its measured effect, added to the .md card",
    )
    args = parser.parse_args()
    model = load_model(args.model)
    card = model.card
    if args.command:
        card.training["command"] = args.command
    if args.description:
        card.description = args.description
    card.license = card.license or inherited_license(card.training.get("init", ""))
    notes = args.notes.read_text(encoding="utf-8").strip() if args.notes else ""
    measured = measure(args.model, args.name, args.only)
    card.name = args.name
    validation = card.metrics.get("validation", card.metrics)  # re-bundling keeps it once
    card.metrics = {"validation": validation, **measured}
    out = WEIGHTS / f"{args.name}.safetensors"
    card = save_model(model, out, card)
    (WEIGHTS / f"{args.name}.md").write_text(markdown_card(card, notes), encoding="utf-8")
    print(json.dumps(measured, indent=2))
    print(f"wrote {out} and its model card {out.with_suffix('.md')}")


def _f(value) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _initialisation(init: str) -> str:
    if not init:
        return "random (seeded), no pretrained weights."
    if init.lower().endswith(".h5"):
        return f"{init} (the authors' Apache-2.0 weights: transfer learning)."
    return f"{init}."


def markdown_card(card, notes: str = "") -> str:
    """The human-readable model card: the same facts as the JSON card in the weights file."""
    t = card.training
    rows = [
        f"| {key} | {m.get('level', 'frame')} | {_f(m.get('n'))} | {_f(m.get('auc'))} | "
        f"{_f(m.get('ap'))} | {_f(m.get('eer'))} | {_f(m.get('accuracy'))} | "
        f"`{m.get('command', '')}` |"
        for key, m in card.metrics.items()
        if isinstance(m, dict)
    ]
    return "\n".join(
        [
            f"# Model card: {card.name}",
            "",
            card.description,
            "",
            f"- Architecture: {card.arch} (Afchar et al., WIFS 2018), input {card.input_size}x"
            f"{card.input_size}, {card.normalization}; whole images resized with `{card.resize}`.",
            f"- Output: {card.label_convention}; label fake when p >= {card.threshold:.4f} "
            f"(chosen on the validation split by the `{t.get('threshold_rule', '')}` rule).",
            f"- Training data: {t.get('data', '')}; split: {t.get('split', '')}.",
            f"- Initialisation: {_initialisation(t.get('init', ''))}",
            f"- Command: `{t.get('command', '')}` (seed {t.get('seed')}, best epoch "
            f"{t.get('epochs')} of {t.get('max_epochs')}).",
            f"- Licence: {card.license}. Weights sha256 (tensors): `{card.weights_sha256}`.",
            "",
            "## Measured",
            "",
            "| set | level | n | ROC AUC | AP | EER | accuracy | command |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            "Validation metrics come from training; the others from `tools/bundle_model.py`, "
            "which runs the commands shown. dfdc-faces test was never used for training or "
            "tuning; mesonet-deepfake-val and ffpp-c40-videos are other datasets entirely.",
            "",
            *([notes, ""] if notes else []),
            "## Limitations",
            "",
            "A 28k-parameter network: it is fast and small, not state of the art. Scores are "
            "evidence, not proof; they drop on heavily compressed video and on manipulation "
            "methods unlike DFDC's face swaps. Use the threshold and the per-face scores together "
            "with human review.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
