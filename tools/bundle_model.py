"""Turn weights into a bundled model: convert, calibrate, measure, write both model cards.

    python tools/bundle_model.py runs/meso4-dfdc/best.safetensors --name meso4.dfdc \\
        --calibrate ../shared/datasets/dfdc-faces/val
    python tools/bundle_model.py ../shared/reference/mesonet-keras/weights/Meso4_DF.h5 \\
        --name meso4.df --calibrate ../shared/datasets/mesonet-deepfake-val
    python tools/bundle_model.py meso4.df+meso4.dfdc --name ensemble.df-dfdc \\
        --calibrate ../shared/datasets/dfdc-faces/val

MODEL is a trained .safetensors, the authors' Keras .h5 (converted as `mesonet import-keras`
does) or an ensemble of bundled models (a+b; written as an ensemble card, NAME.json).

1. Calibration (`mesonet calibrate MODEL --calibrate DATA`, the library call behind it):
   temperature scaling (or --method isotonic) and the verdict bands, fitted on DATA, a
   validation set (--calibrate-faces: none for face crops, detect otherwise). Skipped with
   --no-calibrate.
2. The model goes to src/mesonet/models/weights/NAME.safetensors (or NAME.json).
3. `mesonet evaluate` (the library call) on every dev-visible set present under ../shared:
     dfdc-faces test        (frame level, --faces none; held out from every training run)
     mesonet-deepfake-val   (frame level, --faces none)
     ffpp-faces-dev         (frame level, --faces none)
     ffpp-c40-videos        (video level, faces detected, 32 frames, mean aggregation)
   each recorded in the card with the command that reproduces it.
4. With --leave-out RUN: the same sets measured for RUN, a model trained by the same recipe
   without some sources (--leave-out-sets, default the FaceForensics++ ones), recorded in the
   card as the cross-dataset figures (``metrics.leave_out``).
5. NAME.md, the human-readable card, beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import get_args

from mesonet.evaluation.calibrate import calibrate_model
from mesonet.evaluation.metrics import METRIC_KEYS, ThresholdRule
from mesonet.evaluation.runner import evaluate
from mesonet.keras_import import import_keras
from mesonet.models import Ensemble, load_model, save_ensemble, save_model
from mesonet.models.ensemble import is_ensemble_name
from mesonet.pipeline import Detector
from mesonet.training.loop import inherited_license

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WEIGHTS = REPO / "src" / "mesonet" / "models" / "weights"
HEADLINE = tuple(k for k in METRIC_KEYS if k not in ("confusion", "by_group"))

SETS = {
    "dfdc_faces_test": ("datasets/dfdc-faces/test", "none"),
    "mesonet_deepfake_val": ("datasets/mesonet-deepfake-val", "none"),
    "ffpp_faces_dev": ("datasets/ffpp-faces-dev", "none"),
    "ffpp_c40_videos": ("datasets/ffpp-c40-videos", "detect"),
}


ARCH_TEXT = {
    "meso4": "Meso-4 (Afchar et al., WIFS 2018)",
    "mesoinception4": "MesoInception-4 (Afchar et al., WIFS 2018)",
    "meso4w": "Meso-4 twice as wide after its first block (ours, after Afchar et al.)",
    "efficientnet_lite0": "EfficientNet-Lite0 (Tan and Le, ICML 2019; TensorFlow's Lite "
    "variant), ImageNet-pretrained, with a one-logit head",
}
SIZE_TEXT = {
    "efficientnet_lite0": "A 4-million-parameter ImageNet backbone fine-tuned on a few "
    "thousand faces",
    "ensemble": "An ensemble of the member networks named above; each member's limits apply",
}


def measure(model_path: Path | str, name: str, only: list[str], shared: Path) -> dict:
    """`mesonet evaluate` on every set present under ``shared`` (or those in ``only``)."""
    results = {}
    for key, (part, faces) in SETS.items():
        data = shared / part
        if (only and key not in only) or not data.is_dir():
            continue
        print(f"measuring {name} on {data} ...", file=sys.stderr, flush=True)
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
            "command": f"mesonet evaluate ../shared/{part}{flag} --model {name}",
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "model", help="a .safetensors, the authors' .h5, or an ensemble of bundled names (a+b)"
    )
    parser.add_argument("--name", required=True, help="bundled name, architecture.tag")
    parser.add_argument("--calibrate", type=Path, help="validation folder to calibrate on")
    parser.add_argument(
        "--calibrate-faces", default="none", help="none (face crops, default) or detect"
    )
    parser.add_argument("--method", default="temperature", help="temperature or isotonic")
    parser.add_argument(
        "--threshold-rule",
        choices=get_args(ThresholdRule),
        help="choose the threshold on the calibration data by this rule (default: keep the "
        "model's own, mapped through the calibration)",
    )
    parser.add_argument(
        "--no-calibrate", action="store_true", help="keep the model's calibration as it is"
    )
    parser.add_argument("--only", nargs="*", default=[], help="measure only these sets")
    parser.add_argument(
        "--shared",
        type=Path,
        default=SHARED,
        help="the shared data folder (default: ../shared beside the project)",
    )
    parser.add_argument(
        "--command",
        help="the training command(s) to record, where the run's own is not the whole story "
        "(a resumed run: both commands)",
    )
    parser.add_argument(
        "--leave-out",
        help="weights of the same recipe trained without some sources: measured on "
        "--leave-out-sets and recorded as the card's cross-dataset figures",
    )
    parser.add_argument(
        "--leave-out-sets",
        nargs="*",
        default=["ffpp_faces_dev", "ffpp_c40_videos"],
        help="the sets the --leave-out run never saw (default: the FaceForensics++ ones)",
    )
    parser.add_argument("--description", help="the card's one-paragraph description")
    parser.add_argument("--data", help="the card's training data, when the file does not say")
    parser.add_argument("--license", help="the card's licence, when the file does not say")
    parser.add_argument(
        "--notes",
        type=Path,
        help="a Markdown file: what was tried and its measured effect, added to the .md card",
    )
    args = parser.parse_args()
    if not args.no_calibrate and args.calibrate is None:
        parser.error("give --calibrate VALIDATION_FOLDER (or --no-calibrate)")
    notes = args.notes.read_text(encoding="utf-8").strip() if args.notes else ""
    with tempfile.TemporaryDirectory() as tmp:
        source = args.model
        if source.lower().endswith(".h5"):
            source = str(Path(tmp) / "converted.safetensors")
            import_keras(args.model, source)
        if args.no_calibrate:
            model = load_model(source)
        else:
            shown = str(args.calibrate).replace(str(args.shared), "../shared")
            calibration_command = (
                f"mesonet calibrate MODEL {shown} --faces {args.calibrate_faces} "
                f"--method {args.method}"
                + (f" --threshold-rule {args.threshold_rule}" if args.threshold_rule else "")
            )
            fit = calibrate_model(
                source,
                args.calibrate,
                method=args.method,
                faces=args.calibrate_faces,
                command=calibration_command,
                threshold_rule=args.threshold_rule,
            )
            model = fit.model
            print(
                f"calibrated on {fit.n} faces: ECE {fit.ece_before:.4f} -> {fit.ece_after:.4f}",
                file=sys.stderr,
            )
    card = model.card
    card.name = args.name
    if args.command:
        card.training["command"] = args.command
    if args.description:
        card.description = args.description
    if args.data:
        card.training["data"] = args.data
    if args.license:
        card.license = args.license
    card.license = card.license or inherited_license(card.training.get("init", ""))
    ensemble = isinstance(model, Ensemble) or is_ensemble_name(args.model)
    out = WEIGHTS / (f"{args.name}.json" if ensemble else f"{args.name}.safetensors")

    def write() -> None:
        if ensemble:
            save_ensemble(card, out)
        else:
            save_model(model, out, card)

    card.metrics = {k: v for k, v in card.metrics.items() if k == "validation"}
    write()  # measured under its bundled name, as a user would run it
    measured = measure(out, args.name, args.only, args.shared)
    validation = card.metrics.get("validation")
    card.metrics = {**({"validation": validation} if validation else {}), **measured}
    if args.leave_out:
        left = measure(args.leave_out, "RUN", args.leave_out_sets, args.shared)
        card.metrics["leave_out"] = {
            "model": args.leave_out,
            "sources_left_out": "every FaceForensics++ source"
            if args.leave_out_sets == ["ffpp_faces_dev", "ffpp_c40_videos"]
            else ", ".join(args.leave_out_sets),
            **left,
        }
    write()
    (WEIGHTS / f"{args.name}.md").write_text(markdown_card(card, notes), encoding="utf-8")
    print(json.dumps(measured, indent=2))
    print(f"wrote {out} and its model card {WEIGHTS / (args.name + '.md')}")


def _f(value) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _initialisation(init: str) -> str:
    if not init:
        return "random (seeded), no pretrained weights."
    if init.lower().endswith(".h5"):
        return f"{init} (the authors' Apache-2.0 weights: transfer learning)."
    return f"{init}."


def _calibration_lines(card) -> list[str]:
    c, b = card.calibration, card.verdict_bands
    if not c:
        return ["- Calibration: none (scores are the network's own sigmoid output)."]
    how = (
        f"temperature scaling, T = {c['temperature']:.4f}"
        if c["method"] == "temperature"
        else f"isotonic regression ({len(c['x'])} points)"
    )
    chosen = (
        f"chosen there by the {c['threshold_rule']} rule"
        if c.get("threshold_rule")
        else "the model's own"
    )
    lines = [
        f"- Calibration: {how}, fitted on {c.get('n')} face scores of `{c.get('data')}` "
        f"(`--faces {c.get('faces')}`); expected calibration error there "
        f"{c.get('ece_before', 0):.4f} -> {c.get('ece_after', 0):.4f}, Brier "
        f"{c.get('brier_before', 0):.4f} -> {c.get('brier_after', 0):.4f}. The threshold "
        f"{c.get('raw_threshold', 0.5):.4f} on the uncalibrated score ({chosen}) becomes "
        f"{card.threshold:.4f} (same labels). Command: `{c.get('command', '')}`.",
    ]
    if b:
        lo, hi = b["uncertain"]
        lines.append(
            f"- Verdict: `likely real` below {lo:.4f}, `uncertain` from {lo:.4f} to "
            f"{hi:.4f}, `likely forged` from {hi:.4f} ({b.get('rule', '')}; measured on "
            f"`{b.get('data', '')}`)."
        )
    return lines


def _split_text(split) -> str:
    """The card's split in words: per source (several-source runs) or one line."""
    if not split:
        return "."
    if isinstance(split, dict) and all(isinstance(v, dict) and "val" in v for v in split.values()):

        def counts(c: dict) -> str:
            return f"{c['total']:,} ({c['real']:,} real, {c['fake']:,} fake)"

        parts = [
            f"{name}: {'train ' + counts(v['train']) + ', ' if v['train']['total'] else ''}"
            f"validation {counts(v['val'])}"
            for name, v in split.items()
        ]
        return "; images used: " + "; ".join(parts) + "."
    return f"; split: {split}."


def markdown_card(card, notes: str = "") -> str:
    """The human-readable model card: the same facts as the JSON card in the weights file."""
    t = card.training
    left_out = card.metrics.get("leave_out") or {}
    left_rows = [
        f"| {key} | {m.get('level', 'frame')} | {_f(m.get('n'))} | {_f(m.get('auc'))} | "
        f"{_f(m.get('ap'))} | {_f(m.get('eer'))} | {_f(m.get('accuracy'))} | "
        f"`{m.get('command', '').replace('RUN', str(left_out.get('model')))}` |"
        for key, m in left_out.items()
        if isinstance(m, dict)
    ]
    rows = [
        f"| {key} | {m.get('level', 'frame')} | {_f(m.get('n'))} | {_f(m.get('auc'))} | "
        f"{_f(m.get('ap'))} | {_f(m.get('eer'))} | {_f(m.get('accuracy'))} | "
        f"{_f(m.get('ece'))} | {_f(m.get('brier'))} | `{m.get('command', '')}` |"
        for key, m in card.metrics.items()
        if isinstance(m, dict) and key != "leave_out"
    ]
    if card.members:
        what = [
            "- Ensemble of "
            + ", ".join(f"`{m['model']}` (weight {m['weight']:.3f})" for m in card.members)
            + ": the weighted mean of the members' calibrated logits, then its own "
            f"calibration; label fake when p >= {card.threshold:.4f}.",
        ]
    else:
        command = t.get("command", "")
        what = [
            f"- Architecture: {ARCH_TEXT.get(card.arch, card.arch)}; input "
            f"{card.input_size}x{card.input_size}, resized by the model from the 256 px face "
            f"crop; {card.normalization}; whole images resized with `{card.resize}`.",
            f"- Output: {card.label_convention}; label fake when p >= {card.threshold:.4f}"
            + (
                f" (chosen on the validation split by the `{t['threshold_rule']}` rule)."
                if t.get("threshold_rule")
                else "."
            ),
            f"- Training data: {t.get('data', '')}" + _split_text(t.get("split")),
            *(
                [f"- Initialisation: {_initialisation(t.get('init', ''))}"]
                if "init" in t or command
                else []
            ),
            *(
                [
                    f"- Command: `{command}` (seed {t.get('seed')}, best epoch "
                    f"{t.get('epochs')} of {t.get('max_epochs')})."
                ]
                if command
                else []
            ),
        ]
    return "\n".join(
        [
            f"# Model card: {card.name}",
            "",
            card.description,
            "",
            *what,
            *_calibration_lines(card),
            f"- Licence: {card.license}."
            + (
                f" Weights sha256 (tensors): `{card.weights_sha256}`."
                if card.weights_sha256
                else ""
            ),
            *([f"- Source: {card.source}."] if card.source else []),
            "",
            "## Measured",
            "",
            "| set | level | n | ROC AUC | AP | EER | accuracy | ECE | Brier | command |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            "Validation metrics (when shown) come from training; the others from "
            "`tools/bundle_model.py`, which runs the commands shown on the calibrated model. "
            "ECE: expected calibration error over 15 equal-width probability bins (0 = "
            "calibrated); Brier: mean squared error of the probability. At video level the "
            "score is the most suspicious face track's mean probability, not itself a "
            "calibrated probability.",
            "",
            *(
                [
                    "## Cross-dataset: trained without " + str(left_out.get("sources_left_out")),
                    "",
                    "The same recipe and selection rule, trained without those sources and "
                    "choosing its epoch without them: these sets are data it never saw. The "
                    "figures above, for a model trained with them, are in-domain.",
                    "",
                    "| set | level | n | ROC AUC | AP | EER | accuracy | command |",
                    "| --- | --- | --- | --- | --- | --- | --- | --- |",
                    *left_rows,
                    "",
                ]
                if left_rows
                else []
            ),
            *([notes, ""] if notes else []),
            "## Limitations",
            "",
            SIZE_TEXT.get(
                card.arch, "A 28k-parameter network: it is fast and small, not state of the art"
            )
            + ". Scores are "
            "evidence, not proof; they drop on heavily compressed video and on manipulation "
            "methods unlike its training data. Calibration holds on data like the set it was "
            "fitted on, not elsewhere. Use the threshold and the per-face scores together "
            "with human review.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
