"""Video-level AUC of models on a labelled video folder, over pipeline settings.

For each crop margin, frame count and aggregation rule given, every model is measured
with ``mesonet evaluate``'s own code (:func:`mesonet.evaluation.runner.evaluate`); face
detections are shared between the runs, so only the first run searches the frames.
One JSON line per run on stdout::

    python tools/video_sweep.py ../shared/datasets/ffpp-c40-videos \
        --model ensemble.dfdc-f2f-paper --model mesoinception4.paper \
        --margin 1.0 --margin 1.3 --aggregate mean --aggregate vote --frames 32

The settings are the Detector's (``margin`` is the crop side as a multiple of the face
box, 1.3 by default). For choosing pipeline settings on a development set; what it says
about one set of 60 videos carries that set's noise (see ``tools/compare_auc.py``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch

from mesonet.aggregate import AGGREGATIONS
from mesonet.evaluation.runner import evaluate
from mesonet.faces.align import DEFAULT_MARGIN
from mesonet.faces.detector import CachingDetector
from mesonet.pipeline import Detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="folder with real/ and fake/ videos")
    parser.add_argument("--model", action="append", required=True, help="name or file")
    parser.add_argument("--margin", action="append", type=float, help="crop margins")
    parser.add_argument("--frames", action="append", type=int, help="frames per video")
    parser.add_argument("--aggregate", action="append", choices=AGGREGATIONS, help="rules")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shared = CachingDetector(Detector(args.model[0], faces="detect").video_face_detector)
    settings = itertools.product(
        args.margin or [DEFAULT_MARGIN], args.frames or [32], args.aggregate or ["mean"]
    )
    for margin, frames, aggregate in settings:
        for model in args.model:
            start = time.perf_counter()
            detector = Detector(
                model,
                faces="detect",
                face_detector=shared,
                margin=margin,
                frames=frames,
                aggregate=aggregate,
            )
            auc = evaluate(detector, args.data)["auc"]
            row = {"model": model, "margin": margin, "frames": frames, "aggregate": aggregate}
            row |= {"auc": round(auc, 4), "seconds": round(time.perf_counter() - start)}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
