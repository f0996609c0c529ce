"""Where the time goes: decode, faces, scoring and output, for an image folder and a video.

Runs the Detector as ``mesonet predict`` does (JSONL records written to a file) with each
stage's entry point wrapped by a timer, and reports per stage the seconds it was busy
(summed over the threads it runs in) and its share of the summed busy time, beside the wall
time of the whole run. Stages overlap (images decode in worker threads a batch ahead of
scoring; video frames decode in a thread ahead of face detection), so the busy times add up
to more than the wall time; their ratio is the overlap. The stages:

- decode: ``read_image`` (images), each decoded frame of ``iter_video_frames`` (videos);
- faces: the face detector (MTCNN) and cutting the aligned crops;
- scoring: the model scorer (every member's engine, calibration);
- output: building and writing each JSONL record.

Cases: ``folder``: --n dfdc-faces test crops with faces detected (the default); ``crops``:
the same files with ``--faces none``; ``video``: the 30 s 720p clip of bench_video.py, 32
sampled frames. Every case first runs once untimed (engines compiled, caches warm).

    python benchmarks/bench_stages.py
    python benchmarks/bench_stages.py --model meso4.dfdc --n 500
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _speed import DFDC, CpuWatch, machine_note, table  # noqa: E402

STAGES = ("decode", "faces", "scoring", "output")


class StageClock:
    """Busy seconds per stage, from any thread (a stage re-entered inside itself counts once)."""

    def __init__(self) -> None:
        self.busy: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        self._depth = threading.local()

    def timed(self, stage: str, func):
        @functools.wraps(func)
        def call(*args, **kwargs):
            depth = getattr(self._depth, stage, 0)
            setattr(self._depth, stage, depth + 1)
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                setattr(self._depth, stage, depth)
                if depth == 0:
                    with self._lock:
                        self.busy[stage] += time.perf_counter() - start

        return call

    def timed_iter(self, stage: str, func):
        """``func`` returning an iterator whose every ``next`` is timed."""

        @functools.wraps(func)
        def call(*args, **kwargs):
            iterator = iter(func(*args, **kwargs))
            while True:
                start = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                finally:
                    with self._lock:
                        self.busy[stage] += time.perf_counter() - start
                yield item

        return call


def instrument(clock: StageClock) -> None:
    """Wrap each stage's entry point (module attributes the pipeline looks up at call time)."""
    from mesonet.faces import mtcnn
    from mesonet.pipeline import faces, read
    from mesonet.scoring import ModelScorer

    read.read_image = clock.timed("decode", read.read_image)
    read.iter_video_frames = clock.timed_iter("decode", read.iter_video_frames)
    mtcnn.MTCNNDetector.detect = clock.timed("faces", mtcnn.MTCNNDetector.detect)
    faces.FaceFinder.crops = clock.timed("faces", faces.FaceFinder.crops)
    ModelScorer.__call__ = clock.timed("scoring", ModelScorer.__call__)


def run_case(detector, paths: list[Path], clock: StageClock, out: Path) -> tuple[float, int]:
    """Wall seconds and faces scored (a face per analysed frame) for one pass over
    ``paths``, the records written to ``out``."""
    write = clock.timed("output", lambda f, r: f.write(json.dumps(r.to_dict()) + "\n"))
    faces = 0
    start = time.perf_counter()
    with out.open("w") as f:
        for result in detector.predict_many(paths):
            write(f, result)
            faces += len(result.faces)
    return time.perf_counter() - start, faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="default: the bundled default")
    parser.add_argument("--n", type=int, default=300, help="image files per folder case")
    parser.add_argument("--cases", nargs="*", default=["folder", "crops", "video"])
    parser.add_argument("--video", type=Path, help="default: bench_video.py's 30 s 720p clip")
    args = parser.parse_args()

    from mesonet.pipeline import Detector

    clock = StageClock()
    instrument(clock)
    files = sorted((DFDC / "test").rglob("*.jpg"))[: args.n]
    print(machine_note())
    watch = CpuWatch()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            if case == "video":
                if args.video is None:
                    from bench_video import make_clip

                    args.video = make_clip(Path(tmp))
                paths, faces_mode, what = [args.video], "detect", "30 s 720p clip, 32 frames"
            else:
                if not files:
                    raise SystemExit(f"no crops under {DFDC / 'test'}")
                faces_mode = "detect" if case == "folder" else "none"
                paths, what = files, f"{len(files)} crops, --faces {faces_mode}"
            detector = Detector(args.model, faces=faces_mode)
            run_case(detector, paths[:2], clock, Path(tmp) / "warm.jsonl")  # untimed warm-up
            clock.busy.clear()
            wall, faces = run_case(detector, paths, clock, Path(tmp) / f"{case}.jsonl")
            busy = {s: clock.busy.get(s, 0.0) for s in STAGES}
            total = sum(busy.values())
            shares = [f"{busy[s]:.2f} s ({busy[s] / total:.0%})" for s in STAGES]
            rate = f"{faces / wall:.0f} faces/s"
            rows.append([what, *shares, f"{wall:.2f} s", rate, f"{total / wall:.2f}x"])
            model = detector.model_name
    header = ["case", *STAGES, "wall", "rate", "busy / wall"]
    print(table(f"Busy time per stage, model {model}", header, rows))
    print(watch.note())


if __name__ == "__main__":
    main()
