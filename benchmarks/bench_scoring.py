"""Face scoring throughput of every backend, against eager PyTorch and the authors' Keras.

Each row scores the same batch of uint8 RGB 256 x 256 crops (what the face cropper makes;
the conversion to float is part of the timed work) and reports the median faces per second
of ``--repeats`` runs, its ratio to eager PyTorch and to Keras measured in the same run, and
the largest difference from eager PyTorch's probabilities. ``--auc`` also scores the 2,000
crops of dfdc-faces/test with each backend and reports ROC AUC (the gate for reduced
precision: it must move by less than 0.002).

    python benchmarks/bench_scoring.py                      # Meso-4, batch 64
    python benchmarks/bench_scoring.py --arch both --auc --compile
    python benchmarks/bench_scoring.py --arch all --no-keras    # with meso4w and efficientnet_lite0
    python benchmarks/bench_scoring.py --arch all --no-keras --input-size 160
    python benchmarks/bench_scoring.py --ensemble meso4.dfdc+mesoinception4.df --no-keras

With several architectures, a last table puts each one's fastest exact engine (fp32) and its
bf16 engine beside Meso-4's fastest, measured in the same run.

``--ensemble A+B`` adds a table: the ensemble's faces/s against each member alone, all on
``--backend`` (default auto) through the scorer the Detector uses (calibration included),
measured in the same run; on an OpenVINO backend also the ensemble with one engine call per
member (``fuse=False``, as before ensembles were fused) and, with ``--int8-calibration``,
its int8 graph.

``--int8-calibration FOLDER`` (validation images, never a reported set; needs NNCF) adds a
``backend openvino-int8`` row to each architecture's table, quantised on ``-n`` crops of
it (not exact: its max |diff| is shown, its AUC with ``--auc``; see bench_int8.py for the
AUC change on every dev set).

The Keras row runs the authors' architecture under a separate Python with tensorflow-cpu
(``MESONET_TF_PYTHON``, default /work/tfenv/bin/python); it is skipped when that is absent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _speed import (  # noqa: E402
    DFDC,
    KERAS_FILES,
    REPO,
    TF_PYTHON,
    CpuWatch,
    load_bench_model,
    machine_note,
    ratio,
    table,
    timed,
)

from mesonet.backends import (  # noqa: E402
    EXACT_BACKENDS,
    OPENVINO_BACKENDS,
    available_backends,
    create_scorer,
    resolve_backend,
)
from mesonet.models import load_model  # noqa: E402
from mesonet.scoring import create_model_scorer  # noqa: E402

TARGET = 400.0  # faces/s for Meso-4 on 2 cores (issue 6)


def keras_rate(arch: str, batch: int, repeats: int) -> float | None:
    """Faces/s of the authors' Keras model (a subprocess), or None without TensorFlow."""
    if not TF_PYTHON.is_file():
        return None
    command = [str(TF_PYTHON), str(REPO / "benchmarks" / "keras_baseline.py"), "--arch", arch]
    command += ["--batch", str(batch), "--repeats", str(repeats)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
        return float(json.loads(done.stdout.strip().splitlines()[-1])["faces_per_s"])
    except (subprocess.SubprocessError, OSError, ValueError, KeyError, IndexError) as exc:
        print(f"(Keras baseline failed: {exc})", file=sys.stderr)
        return None


def eager_fn(model: torch.nn.Module, crops: np.ndarray, channels_last: bool):
    """Eager PyTorch on uint8 crops: NCHW as written, or channels-last (the old Detector)."""
    model = model.eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    def run() -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(255.0)
            x = x.contiguous(
                memory_format=torch.channels_last if channels_last else torch.contiguous_format
            )
            return model(x).numpy()

    return run


def compiled_fn(model: torch.nn.Module, crops: np.ndarray):
    from mesonet.backends import fold_batchnorm

    folded = fold_batchnorm(model).to(memory_format=torch.channels_last)
    compiled = torch.compile(folded)

    def run() -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(255.0)
            return compiled(x.contiguous(memory_format=torch.channels_last)).numpy()

    return run


def dfdc_test() -> tuple[np.ndarray, np.ndarray] | None:
    """(uint8 crops, labels) of dfdc-faces/test, as ``--faces none`` prepares them."""
    folder = DFDC / "test"
    if not folder.is_dir():
        return None
    from mesonet.faces import crop_whole
    from mesonet.media import read_image

    paths = [(p, 0) for p in sorted((folder / "real").glob("*.jpg"))]
    paths += [(p, 1) for p in sorted((folder / "fake").glob("*.jpg"))]
    crops = np.stack([crop_whole(read_image(p), 256, "auto") for p, _ in paths])
    return crops, np.array([label for _, label in paths])


def bench_arch(arch: str, args: argparse.Namespace) -> dict[str, tuple[str, float]]:
    """One architecture's table; returns its fastest exact and bf16 rows: {kind: (engine, rate)}."""
    model, described = load_bench_model(
        arch, args.model if arch == args.model_arch else None, args.input_size
    )
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, size=(args.batch, 256, 256, 3), dtype=np.uint8)
    reference = eager_fn(model, crops, channels_last=False)()

    runs: list[tuple[str, object, bool]] = [
        ("eager PyTorch (NCHW): baseline", eager_fn(model, crops, False), True),
        ("eager PyTorch, channels-last (Detector before)", eager_fn(model, crops, True), True),
    ]
    setup: dict[str, float] = {}
    if args.compile:
        start = time.perf_counter()
        fn = compiled_fn(model, crops)
        fn()
        setup["torch.compile (folded, channels-last)"] = time.perf_counter() - start
        runs.append(("torch.compile (folded, channels-last)", fn, True))
    scorers = {}
    backends = available_backends()
    if args.int8_crops is not None:
        backends.append("openvino-int8")
    for backend in backends:
        start = time.perf_counter()
        calibration = args.int8_crops if backend == "openvino-int8" else None
        scorer = create_scorer(
            model, backend, batch_size=args.batch, threads=args.threads, calibration=calibration
        )
        scorer(crops)
        exact = backend in EXACT_BACKENDS
        label = f"backend {backend}" + ("" if exact else " (not exact)")
        setup[label] = time.perf_counter() - start
        scorers[backend] = scorer
        runs.append((label, lambda s=scorer: s(crops), exact))

    in_keras = arch in KERAS_FILES  # the authors' code has no meso4w
    keras = keras_rate(arch, args.batch, args.repeats) if in_keras and not args.no_keras else None
    results = []
    for label, fn, exact in runs:
        rate = timed(fn, args.batch, repeats=args.repeats)
        diff = float(np.abs(fn() - reference).max())
        results.append((label, rate, diff, exact))
    base = results[0][1]
    rows = []
    if keras is not None:
        rows.append(("Keras (authors' code, TensorFlow)", keras, ratio(keras, base), "1.00x", "-"))
    for label, rate, diff, _ in results:
        extra = f" [setup {setup[label]:.1f} s]" if label in setup else ""
        rows.append((label + extra, rate, ratio(rate, base), ratio(rate, keras), f"{diff:.1e}"))
    print()
    print(
        table(
            f"{arch}: faces/s, batch {args.batch}, uint8 crops in (weights: {described})",
            ("engine", "faces/s", "vs eager", "vs Keras", "max |diff|"),
            rows,
        )
    )
    best = max((r for r in results if r[3]), key=lambda r: r[1])
    if arch == "meso4":
        verdict = "met" if best[1] >= TARGET else "NOT met"
        print(
            f"target 1 ({TARGET:.0f} faces/s, Meso-4): {verdict} by {best[0]} "
            f"({best[1]:.0f} faces/s, {best[1] / TARGET:.2f}x target)"
        )
    if args.auc:
        auc_table(model, scorers, described, arch)
    fastest = {"fp32": (best[0], best[1])}
    for kind in ("bf16", "int8"):
        rows_of_kind = [r for r in results if r[0].startswith("backend") and kind in r[0]]
        if rows_of_kind:
            fastest[kind] = (rows_of_kind[0][0], rows_of_kind[0][1])
    return fastest


def summary_table(fastest: dict[str, dict[str, tuple[str, float]]], batch: int) -> str:
    """Each architecture's fastest fp32 and bf16 engines against Meso-4's fastest fp32."""
    base = fastest.get("meso4", {}).get("fp32", ("", 0.0))[1] or None
    rows = []
    for arch, kinds in fastest.items():
        for kind, (engine, rate) in kinds.items():
            rows.append((f"{arch} {kind}", engine, rate, ratio(rate, base)))
    return table(
        f"architectures side by side: faces/s, batch {batch}, same run",
        ("model", "engine", "faces/s", "vs Meso-4 fp32"),
        rows,
    )


def auc_table(model: torch.nn.Module, scorers: dict, described: str, arch: str) -> None:
    from sklearn.metrics import roc_auc_score

    data = dfdc_test()
    if data is None:
        print("(dfdc-faces/test not present: AUC check skipped)")
        return
    crops, labels = data
    reference = eager_fn(model, crops, channels_last=False)()
    base_auc = roc_auc_score(labels, reference)
    rows = [("eager PyTorch fp32", base_auc, "0", "-")]
    for name, scorer in scorers.items():
        scores = scorer(crops)
        auc = roc_auc_score(labels, scores)
        diff = float(np.abs(scores - reference).max())
        rows.append((f"backend {name}", auc, f"{auc - base_auc:+.5f}", f"{diff:.1e}"))
    print(
        table(
            f"{arch}: dfdc-faces/test ROC AUC ({len(labels)} crops; weights: {described})",
            ("engine", "AUC", "delta", "max |diff|"),
            [(r[0], f"{r[1]:.5f}", r[2], r[3]) for r in rows],
        )
    )


def bench_ensemble(names: str, args: argparse.Namespace) -> None:
    """An ensemble's cost against each of its members alone, same crops, same engine."""
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, size=(args.batch, 256, 256, 3), dtype=np.uint8)
    if "+" in names:
        members = names.split("+")
    else:  # an ensemble card: its members are named in it
        members = [m.card.name for m in getattr(load_model(names), "members", [])] or [names]
    rows, rates = [], {}
    for name in [*members, names]:
        scorer = create_model_scorer(load_model(name), args.backend, args.batch, args.threads)
        scorer(crops)
        rates[name] = timed(lambda s=scorer: s(crops), args.batch, repeats=args.repeats)
        if name == names:
            label = f"{names} ({scorer.name}{', fused: one call' if scorer.fused else ''})"
    base = rates[members[0]]
    alone = 1.0 / sum(1.0 / rates[m] for m in members)  # members run one after the other
    for name in members:
        rows.append((name, rates[name], ratio(rates[name], base), ratio(rates[name], alone)))
    extra = []
    ensemble = load_model(names)
    resolved = resolve_backend(ensemble, args.backend)
    if resolved == "openvino-int8":  # auto runs it in int8: its fp32 graph beside it
        extra.append((f"{names} (openvino, fused: one call)", "openvino", True, None))
    if resolved in OPENVINO_BACKENDS:
        each = "openvino" if resolved == "openvino-int8" else resolved  # members have no int8
        extra.append((f"{names} ({each}, one call per member)", each, False, None))
    if args.int8_crops is not None:
        extra.append((f"{names} (openvino-int8, fused: one call)", "openvino-int8", True, True))
    for row_label, backend, fuse, int8 in extra:
        calibration = args.int8_crops if int8 else None
        scorer = create_model_scorer(
            ensemble, backend, args.batch, args.threads, fuse=fuse, calibration=calibration
        )
        scorer(crops)
        rate = timed(lambda s=scorer: s(crops), args.batch, repeats=args.repeats)
        rows.append((row_label, rate, ratio(rate, base), ratio(rate, alone)))
    rows.insert(
        len(members), (label, rates[names], ratio(rates[names], base), ratio(rates[names], alone))
    )
    print()
    print(
        table(
            f"ensemble {names}: faces/s, batch {args.batch}, uint8 crops, backend "
            f"{args.backend}; 'vs members in turn' = against scoring each member separately",
            ("model", "faces/s", f"vs {members[0]}", "vs members in turn"),
            rows,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--arch",
        default="meso4",
        choices=("meso4", "mesoinception4", "meso4w", "efficientnet_lite0", "both", "all"),
        help="both: the paper's two; all: also meso4w and efficientnet_lite0 (no Keras row)",
    )
    parser.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="efficientnet_lite0's input side without --model (default: its 224; 160 to 320)",
    )
    parser.add_argument("--model", help="weights to use (bundled name or .safetensors)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="default: every core")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile row (slow)")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras baseline")
    parser.add_argument("--auc", action="store_true", help="AUC of each backend on dfdc test")
    parser.add_argument("--ensemble", help="also time this ensemble (a+b) against its members")
    parser.add_argument("--backend", default="auto", help="engine for the ensemble table")
    parser.add_argument("--only-ensemble", action="store_true", help="skip the per-backend tables")
    parser.add_argument(
        "--int8-calibration",
        metavar="FOLDER",
        help="add openvino-int8 rows, quantised on validation images from FOLDER",
    )
    parser.add_argument("-n", type=int, default=300, help="int8 calibration crops")
    args = parser.parse_args()
    args.int8_crops = None
    if args.int8_calibration:
        from mesonet.backends.int8 import calibration_crops

        args.int8_crops = calibration_crops(args.int8_calibration, args.n)
    args.model_arch = None
    if args.model:
        from mesonet.models.registry import read_card, resolve_model_path

        args.model_arch = read_card(resolve_model_path(args.model)).arch
    print(machine_note())
    watch = CpuWatch()
    archs = {
        "both": ("meso4", "mesoinception4"),
        "all": ("meso4", "mesoinception4", "meso4w", "efficientnet_lite0"),
    }.get(args.arch, (args.arch,))
    fastest = {}
    for arch in archs if not args.only_ensemble else ():
        fastest[arch] = bench_arch(arch, args)
    if len(fastest) > 1:
        print()
        print(summary_table(fastest, args.batch))
    if args.ensemble:
        bench_ensemble(args.ensemble, args)
    print(watch.note())


if __name__ == "__main__":
    main()
