"""Is one model's ROC AUC really above another's? A paired bootstrap over the same files.

    mesonet predict DATA -r --format jsonl --model A > a.jsonl
    mesonet predict DATA -r --format jsonl --model B > b.jsonl
    python tools/compare_auc.py a.jsonl b.jsonl

Each file's label comes from its folder (``fake``/``df`` = forged, ``real`` = real), as in
``mesonet evaluate``; the records of both runs are matched by path. The files are resampled
with replacement (both models' scores together), and the difference AUC(B) - AUC(A) is
reported with its 95% interval and the share of resamples where B is not better. Resampling
files treats them as independent: frames of one video are not, so on face crops cut from
videos (two per video in dfdc-faces) the interval is somewhat too narrow.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path, PurePath

import numpy as np
from sklearn.metrics import roc_auc_score

from mesonet.evaluation.runner import CLASS_FOLDERS


def read_scores(path: Path) -> dict[str, float]:
    """path -> fake_probability of every analysed record of a ``predict --format jsonl`` run."""
    scores = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("fake_probability") is not None:
            scores[record["path"]] = float(record["fake_probability"])
    return scores


def label_of(path: str) -> int | None:
    """The label ``mesonet evaluate`` gives a file: that of its innermost class folder
    (real/ = 0, fake/ or df/ = 1), None outside them."""
    for part in reversed(PurePath(path).parts[:-1]):
        if part.lower() in CLASS_FOLDERS:
            return CLASS_FOLDERS[part.lower()]
    return None


def paired_bootstrap(
    y: np.ndarray, a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0
) -> np.ndarray:
    """AUC(b) - AUC(a) on ``n`` resamples of the items (resamples with one class skipped)."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        i = rng.integers(0, y.size, y.size)
        if 0 < y[i].sum() < y.size:
            diffs.append(roc_auc_score(y[i], b[i]) - roc_auc_score(y[i], a[i]))
    return np.asarray(diffs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", type=Path, help="JSON lines of model A (the baseline)")
    parser.add_argument("b", type=Path, help="JSON lines of model B")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    a, b = read_scores(args.a), read_scores(args.b)
    paths = sorted(p for p in a.keys() & b.keys() if label_of(p) is not None)
    if not paths:
        parser.error("no labelled file (under real/ or fake/) scored in both runs")
    y = np.array([label_of(p) for p in paths])
    if not 0 < y.sum() < y.size:
        parser.error("both classes are needed")
    sa, sb = np.array([a[p] for p in paths]), np.array([b[p] for p in paths])
    diffs = paired_bootstrap(y, sa, sb, args.resamples, args.seed)
    low, high = np.percentile(diffs, [2.5, 97.5])
    print(
        f"{y.size} files ({int(y.sum())} fake): AUC A {roc_auc_score(y, sa):.4f}, "
        f"B {roc_auc_score(y, sb):.4f}; B - A {roc_auc_score(y, sb) - roc_auc_score(y, sa):+.4f}, "
        f"95% interval {low:+.4f} to {high:+.4f} ({diffs.size} resamples); "
        f"B not better in {(diffs <= 0).mean():.1%} of them"
    )


if __name__ == "__main__":
    main()
