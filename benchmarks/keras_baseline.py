"""The authors' Keras MesoNet, timed: the "Keras" row of bench_scoring.py.

Runs under a Python with tensorflow-cpu (never the project's venv: mesonet does not depend
on TensorFlow), e.g. ``/work/tfenv/bin/python benchmarks/keras_baseline.py --arch meso4``.
Builds the network as the authors' ``classifiers.py`` (tools/keras_reference.py; speed does
not depend on the weights, so none are loaded) and prints one JSON line: faces per second of
``model.predict`` (their ``Classifier.predict``) on batches of float32 NHWC crops in [0, 1].
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="meso4", choices=("meso4", "mesoinception4"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="0: TensorFlow's default")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from keras_reference import BUILDERS  # noqa: E402 - the authors' architecture

    model = BUILDERS[args.arch](None)
    x = np.random.default_rng(0).random((args.batch, 256, 256, 3), dtype=np.float32)
    for _ in range(2):
        model.predict(x, batch_size=args.batch, verbose=0)
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.predict(x, batch_size=args.batch, verbose=0)
        rates.append(args.batch / (time.perf_counter() - start))
    print(
        json.dumps(
            {
                "faces_per_s": statistics.median(rates),
                "tensorflow": tf.__version__,
                "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
            }
        )
    )


if __name__ == "__main__":
    main()
