"""How sharp faces are after each degradation of the robustness benchmark: the measurement
behind ``mesonet.judge.MIN_SHARPNESS``.

    python tools/sharpness_table.py ../shared/datasets/dfdc-faces/test \\
        ../shared/datasets/ffpp-faces-dev --per-set 150

For the first ``--per-set`` real crops of each folder (real/), prints percentiles of
:func:`mesonet.judge.sharpness` of the crop as the model sees it, undegraded and after each
image degradation, and the share of crops under the judging limit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mesonet import degradations as D
from mesonet.faces.align import crop_whole
from mesonet.judge import MIN_SHARPNESS, sharpness
from mesonet.media import read_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", type=Path, help="folders holding real/")
    parser.add_argument("--per-set", type=int, default=150)
    parser.add_argument("--limit", type=float, default=MIN_SHARPNESS)
    args = parser.parse_args(argv)
    files = [p for s in args.sets for p in sorted((s / "real").iterdir())[: args.per_set]]
    names = ["none", *D.IMAGE_DEGRADATIONS]
    values: dict[str, list[float]] = {n: [] for n in names}
    for path in files:
        image = read_image(path)
        for name in names:
            degraded = (
                image
                if name == "none"
                else D.degrade_image(image, D.IMAGE_DEGRADATIONS[name], path.name)
            )
            values[name].append(sharpness(crop_whole(degraded, 256)))
    print(f"{len(files)} real crops; sharpness percentiles 5/25/50/75/95, share under {args.limit}")
    for name in names:
        v = np.asarray(values[name])
        pct = " ".join(f"{x:.3f}" for x in np.percentile(v, [5, 25, 50, 75, 95]))
        print(f"{name:12s} {pct}  {np.mean(v < args.limit):6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
