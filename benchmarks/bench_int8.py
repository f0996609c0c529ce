"""int8 against fp32 for one model: ROC AUC on the dev sets, speed, and the card's record.

Quantises ``--model`` with NNCF on ``--calibration`` (a folder of validation images, never a
set measured here: refused if it is one of them or inside one), then scores every crop of
the dev-visible image sets (``--faces none``, as the card's metrics were measured) with the
fp32 ``openvino`` backend and with ``openvino-int8``, and reports each set's AUC, the change
and the largest difference in fake probability. ``--videos`` adds ffpp-c40-videos (faces
detected, 32 frames a video: slow). Speed: faces/s of fp32 and int8 (for an ensemble also
its members scored one engine call each, the baseline, and fused into one graph) on the
same batch of crops in the same run, as ratios.

``--out FILE`` writes a copy of the model (``.safetensors`` for one network, ``.json`` for an
ensemble card, its members referenced by path) whose card holds the measured ``int8``
record, and beside it (``int8/<stem>.safetensors``) the quantisation statistics the graph
was made from; ``auto`` then runs that model in int8 only when every change is within 0.005,
from the cached graph or rebuilt from those statistics (``mesonet.backends.int8``).

    python benchmarks/bench_int8.py --model meso4.dfdc
    python benchmarks/bench_int8.py --model ensemble.dfdc-f2f-paper --out /tmp/paper-int8.json
    python benchmarks/bench_int8.py --model meso4.dfdc --limit 200 --no-speed   # a quick look
    python benchmarks/bench_int8.py --model ensemble.lite0-f2f --fp32-member meso4.f2f --videos
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _speed import SHARED, CpuWatch, machine_note, ratio, table, timed  # noqa: E402

from mesonet.backends.int8 import (  # noqa: E402
    AUC_TOLERANCE,
    FORMAT,
    REQUIRED_SETS,
    STATISTICS,
    cached_path,
    calibration_crops,
    image_files,
    quantize,
)
from mesonet.backends.int8_choice import record_passes  # noqa: E402
from mesonet.models import load_model  # noqa: E402
from mesonet.scoring import ModelScorer  # noqa: E402

DATASETS = SHARED / "datasets"
IMAGE_SETS = {  # card metric name: folder (real/ and fake/)
    "dfdc_faces_test": DATASETS / "dfdc-faces" / "test",
    "mesonet_deepfake_val": DATASETS / "mesonet-deepfake-val",
    "ffpp_faces_dev": DATASETS / "ffpp-faces-dev",
}
VIDEO_SET = ("ffpp_c40_videos", DATASETS / "ffpp-c40-videos")
CHUNK = 256


def labelled(folder: Path, limit: int | None) -> list[tuple[Path, int]]:
    """(file, 1 if fake) for every image of ``folder``'s real/ and fake/ (``limit``: evenly
    that many of each class)."""
    items = []
    for label, sub in ((0, "real"), (1, "fake")):
        files = image_files(folder / sub) if (folder / sub).is_dir() else []
        if limit and len(files) > limit:
            files = [files[int(i)] for i in np.linspace(0, len(files) - 1, limit).round()]
        items += [(p, label) for p in files]
    return items


def score_images(items, scorers, resize: str) -> list[np.ndarray]:
    """Each scorer's fake probabilities for ``items``, decoded in chunks by two threads."""
    from mesonet.faces import crop_whole
    from mesonet.media import read_image

    out: list[list[np.ndarray]] = [[] for _ in scorers]
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, len(items), CHUNK):
            paths = [p for p, _ in items[start : start + CHUNK]]
            crops = np.stack(
                list(pool.map(lambda p: crop_whole(read_image(p), 256, resize), paths))
            )
            for i, scorer in enumerate(scorers):
                out[i].append(scorer(crops))
    return [np.concatenate(o) for o in out]


def score_videos(folder: Path, model, backends: list[str], limit: int | None):
    from mesonet import Detector

    items = labelled_videos(folder, limit)
    scores = []
    for backend in backends:
        detector = Detector(model=model, backend=backend)
        values = []
        for path, _ in items:
            record = detector.predict(path)
            values.append(record.fake_probability if record.status == "ok" else np.nan)
        scores.append(np.array(values, dtype=np.float64))
    return items, scores


def labelled_videos(folder: Path, limit: int | None) -> list[tuple[Path, int]]:
    items = []
    for label, sub in ((0, "real"), (1, "fake")):
        files = sorted((folder / sub).glob("*.mp4"))
        if limit:
            files = files[:limit]
        items += [(p, label) for p in files]
    return items


def inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents or path in folder.parents


def speed_table(model, batch: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, size=(batch, 256, 256, 3), dtype=np.uint8)
    ensemble = hasattr(model, "members")
    cases = []
    if ensemble:
        cases.append(("fp32, one engine call per member (before)", "openvino", False))
    cases.append(("fp32" + (", fused into one graph" if ensemble else ""), "openvino", True))
    cases.append(("int8" + (", fused into one graph" if ensemble else ""), "openvino-int8", True))
    rates = []
    for label, backend, fuse in cases:
        scorer = ModelScorer(model, backend, batch, fuse=fuse)  # int8: the record's graph
        rates.append((label, timed(lambda s=scorer: s(crops), batch, repeats=repeats)))
    base = rates[0][1]
    print()
    print(
        table(
            f"{model.card.name}: faces/s, batch {batch}, uint8 crops, same run",
            ("engine", "faces/s", "vs first row"),
            [(label, rate, ratio(rate, base)) for label, rate in rates],
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ensemble.dfdc-f2f-paper")
    parser.add_argument(
        "--calibration",
        default=str(DATASETS / "dfdc-faces" / "val"),
        help="validation images to quantise on (default: dfdc-faces/val)",
    )
    parser.add_argument("-n", type=int, default=300, help="calibration crops")
    parser.add_argument("--limit", type=int, help="at most this many files per class and set")
    parser.add_argument("--videos", action="store_true", help="also ffpp-c40-videos (slow)")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed table")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="write a copy of the model whose card holds the record")
    parser.add_argument(
        "--fp32-member",
        action="append",
        default=[],
        metavar="NAME",
        help="an ensemble member kept whole in fp32 (repeatable; recorded in the card)",
    )
    args = parser.parse_args()
    from sklearn.metrics import roc_auc_score

    calibration = Path(args.calibration)
    measured = dict(IMAGE_SETS, **({VIDEO_SET[0]: VIDEO_SET[1]} if args.videos else {}))
    for name, folder in measured.items():
        if inside(calibration, folder):
            parser.error(f"--calibration {calibration} is the measured set {name}: use another")
    if args.out and args.limit:
        parser.error("--out records full sets: drop --limit")
    print(machine_note())
    watch = CpuWatch()
    model = load_model(args.model)
    crops = calibration_crops(calibration, args.n)
    data = f"{calibration.parent.name}/{calibration.name}"
    start = time.perf_counter()
    kept = sorted(set(args.fp32_member))
    _, record = quantize(model, crops, data, fp32_members=kept)
    print(f"quantised on {record['n']} crops of {data} in {time.perf_counter() - start:.1f} s")
    # the graph just made is the one the record names: every int8 scorer below runs it
    model.card.int8 = {"calibration": record, "fp32_members": kept}
    fp32 = ModelScorer(model, "openvino")
    int8 = ModelScorer(model, "openvino-int8")
    rows, changes, aucs = [], {}, {}
    for name, folder in IMAGE_SETS.items():
        if not folder.is_dir():
            print(f"({folder} not present: skipped)")
            continue
        items = labelled(folder, args.limit)
        labels = np.array([y for _, y in items])
        a, b = score_images(items, [fp32, int8], model.card.resize)
        auc_a, auc_b = roc_auc_score(labels, a), roc_auc_score(labels, b)
        changes[name] = round(float(auc_b - auc_a), 6)
        aucs[name] = {"n": len(items), "fp32": round(auc_a, 6), "int8": round(auc_b, 6)}
        rows.append((name, len(items), auc_a, auc_b, changes[name], np.abs(a - b).max()))
    if args.videos and VIDEO_SET[1].is_dir():
        items, (a, b) = score_videos(VIDEO_SET[1], model, ["openvino", "openvino-int8"], None)
        labels = np.array([y for _, y in items])
        ok = ~(np.isnan(a) | np.isnan(b))
        auc_a, auc_b = roc_auc_score(labels[ok], a[ok]), roc_auc_score(labels[ok], b[ok])
        name = VIDEO_SET[0]
        changes[name] = round(float(auc_b - auc_a), 6)
        aucs[name] = {"n": int(ok.sum()), "fp32": round(auc_a, 6), "int8": round(auc_b, 6)}
        rows.append((name, int(ok.sum()), auc_a, auc_b, changes[name], np.abs(a - b)[ok].max()))
    print()
    print(
        table(
            f"{model.card.name}: ROC AUC, fp32 (openvino) against int8 (openvino-int8, "
            f"calibrated on {record['n']} crops of {data})",
            ("set", "n", "fp32", "int8", "change", "max |p diff|"),
            [
                (r[0], r[1], f"{r[2]:.5f}", f"{r[3]:.5f}", f"{r[4]:+.5f}", f"{r[5]:.4f}")
                for r in rows
            ],
        )
    )
    import nncf
    import openvino as ov

    entry = {
        "calibration": record,
        "auc_change": changes,
        "auc": aucs,
        "recipe": "nncf post-training quantisation, preset MIXED, fast bias correction; dense "
        "heads (MatMul), an ensemble's sum and each network's first int8_fp32_convs "
        f"convolutions in fp32 (format {FORMAT})",
        "nncf": nncf.__version__,
        "openvino": ov.__version__,
        "command": "python benchmarks/bench_int8.py " + shlex.join(sys.argv[1:]),
    }
    if kept:
        entry["fp32_members"] = kept
    from mesonet.models.card import ModelCard

    passes = record_passes(ModelCard(name="x", arch="x", int8=entry))
    print(
        f"auto would {'pick' if passes else 'NOT pick'} int8 for this model with this record "
        f"(every set measured, {', '.join(REQUIRED_SETS)} at least, within {AUC_TOLERANCE}: "
        f"{passes})"
    )
    if not args.no_speed:
        speed_table(model, args.batch, args.repeats)
    if args.out:
        write_copy(model, entry, Path(args.out))
    print(watch.note())


def write_copy(model, entry: dict, out: Path) -> None:
    """A copy of ``model`` at ``out`` whose card holds ``entry`` as its ``int8`` record, and
    the statistics the int8 graph was made from in ``int8/<out's stem>.safetensors`` beside
    it (named in the record: ``auto`` rebuilds the graph from them where it is not cached)."""
    import dataclasses
    import hashlib
    import shutil

    from mesonet.models.registry import save_ensemble, save_model

    made = cached_path(model, entry["calibration"]["sha256"], entry.get("fp32_members", []))
    if made is None:
        sys.exit("the int8 graph measured is not in the cache: cannot ship its statistics")
    statistics = out.parent / "int8" / f"{out.stem}.safetensors"
    statistics.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(made.parent / STATISTICS, statistics)
    digest = hashlib.sha256(statistics.read_bytes()).hexdigest()
    entry = dict(entry, statistics={"file": f"int8/{statistics.name}", "sha256": digest})
    card = dataclasses.replace(model.card, int8=entry)
    card.check()
    if hasattr(model, "members"):
        save_ensemble(card, out)
    else:
        save_model(model, out, card)
    print(f"wrote {out} (its card records the int8 AUC change)")


if __name__ == "__main__":
    main()
