"""End-to-end video analysis time (decode, detect, crop, score), against the serial eager path.

Makes a 30 s 1280 x 720, 30 fps test clip (../shared's youtube__183.mp4, 13 s, looped and
re-encoded with OpenCV's MPEG-4 writer into a temporary folder) unless ``--video`` is given,
then times:

- 32 sampled frames (``mesonet predict clip.mp4``): target at most 1.5 s on 2 cores;
- every frame (``--fps`` at the video's rate): target faster than real time;

each for the serial pipeline as it was before issue 6 (frames decoded, then MTCNN on every
analysed frame, then eager PyTorch, one after the other; the baseline) and for the
``Detector`` now (decoding in a background thread, faces tracked between detections
``redetect_s`` apart, the fastest exact backend).

    python benchmarks/bench_video.py
    python benchmarks/bench_video.py --video my.mp4 --skip-full-baseline
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _speed import SHARED, CpuWatch, load_bench_model, machine_note, ratio, table  # noqa: E402

from mesonet.faces import MTCNNDetector, align_face  # noqa: E402
from mesonet.media import iter_video_frames, probe_video, sample_frame_indices  # noqa: E402
from mesonet.pipeline import Detector, to_batch  # noqa: E402

SOURCE = SHARED / "datasets" / "ffpp-c40-videos" / "real" / "youtube__183.mp4"
TARGET_SAMPLED_S = 1.5


def make_clip(folder: Path, seconds: float = 30.0) -> Path:
    """Loop SOURCE into a ``seconds`` long clip at its own size and rate (MPEG-4 Part 2)."""
    if not SOURCE.is_file():
        raise SystemExit(f"{SOURCE} not found: pass --video")
    probe = cv2.VideoCapture(str(SOURCE))
    fps = probe.get(cv2.CAP_PROP_FPS) or 30.0
    size = (int(probe.get(cv2.CAP_PROP_FRAME_WIDTH)), int(probe.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    probe.release()
    path = folder / "clip-720p-30s.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    wanted, written = round(seconds * fps), 0
    while written < wanted:
        capture = cv2.VideoCapture(str(SOURCE))
        while written < wanted:
            ok, frame = capture.read()
            if not ok:
                break
            writer.write(frame)
            written += 1
        capture.release()
    writer.release()
    return path


def opencv_mtcnn() -> MTCNNDetector:
    """MTCNN as before issue 6: every net on cv2.dnn, frames shrunk to 640 px."""
    from mesonet.faces import mtcnn

    swap = mtcnn._use_openvino
    mtcnn._use_openvino = lambda _: None
    try:
        return MTCNNDetector(min_face_size=40, confidence=0.9, max_side=640)
    finally:
        mtcnn._use_openvino = swap


def serial_baseline(path: Path, model: torch.nn.Module, frames: int, fps: float | None):
    """The pipeline before issue 6: decode -> MTCNN (max side 640) -> eager PyTorch, serially.

    Returns the mean face score (to compare verdicts) and the number of frames analysed.
    """
    detector = opencv_mtcnn()
    model = model.eval().to(memory_format=torch.channels_last)
    info = probe_video(path)
    indices = sample_frame_indices(info, frames, fps)
    scores: list[float] = []
    chunk: list[np.ndarray] = []

    def run(chunk: list[np.ndarray]) -> None:
        crops = [
            align_face(image, face, 256, 1.3)
            for image, faces in zip(chunk, detector.detect(chunk), strict=True)
            for face in faces
        ]
        with torch.inference_mode():
            for start in range(0, len(crops), 64):
                scores.extend(model(to_batch(crops[start : start + 64])).tolist())

    for frame in iter_video_frames(path, indices):
        chunk.append(frame.image)
        if len(chunk) == 8:
            run(chunk)
            chunk = []
    if chunk:
        run(chunk)
    return float(np.mean(scores)) if scores else float("nan"), len(indices)


def timed_runs(fn, repeats: int) -> tuple[float, object]:
    seconds, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), out


def decode_floor(path: Path, indices: list[int]) -> float:
    start = time.perf_counter()
    for _ in iter_video_frames(path, indices):
        pass
    return time.perf_counter() - start


def mean_face_score(result) -> float:
    values = [f.fake_probability for f in result.faces]
    return float(np.mean(values)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, help="default: a 30 s 720p clip made from ../shared")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--model", help="weights (bundled name or .safetensors)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the sampled case")
    parser.add_argument(
        "--skip-full-baseline",
        action="store_true",
        help="skip the serial every-frame baseline (the slowest part, about a minute)",
    )
    args = parser.parse_args()
    print(machine_note())
    watch = CpuWatch()
    model, described = load_bench_model("meso4", args.model)
    with tempfile.TemporaryDirectory(prefix="mesonet-bench-") as tmp:
        path = args.video or make_clip(Path(tmp))
        info = probe_video(path)
        every_fps = info.fps
        detector = Detector(model, frames=args.frames, backend=args.backend)
        dense = Detector(model, fps=every_fps, backend=args.backend)
        detector.predict(path)  # warm up: the backend compiles, MTCNN loads its nets
        serial_baseline(path, model, 2, None)

        sampled = sample_frame_indices(info, args.frames)
        every = sample_frame_indices(info, fps=every_fps)
        floor_sampled = decode_floor(path, sampled)
        floor_every = decode_floor(path, every)
        base_s, (base_score, _) = timed_runs(
            lambda: serial_baseline(path, model, args.frames, None), args.repeats
        )
        new_s, result = timed_runs(lambda: detector.predict(path), args.repeats)
        rows = [
            ("serial eager (before): baseline", base_s, "1.00x", f"{base_score:.4f}", "-"),
            (
                f"Detector, backend {detector.backend}",
                new_s,
                ratio(base_s, new_s),
                f"{mean_face_score(result):.4f}",
                "met" if new_s <= TARGET_SAMPLED_S else "NOT met",
            ),
            ("(decoding alone)", floor_sampled, "-", "-", "-"),
        ]
        print()
        title = (
            f"{path.name}: {info.width}x{info.height}, {info.fps:g} fps, {info.duration_s:.1f} s; "
            f"{len(sampled)} sampled frames (weights: {described})"
        )
        header = ("pipeline", "seconds", "speed-up", "mean face score", "<= 1.5 s")
        print(table(title, header, rows))

        dense_s, dense_result = timed_runs(lambda: dense.predict(path), 1)
        rows = []
        if not args.skip_full_baseline:
            full_s, (full_score, _) = timed_runs(
                lambda: serial_baseline(path, model, 1, every_fps), 1
            )
            realtime = info.duration_s / full_s
            rows.append(
                ("serial eager (before): baseline", full_s, "1.00x", f"{realtime:.2f}x", "-")
            )
            rows[-1] += (f"{full_score:.4f}",)
        else:
            full_s = None
        realtime = info.duration_s / dense_s
        rows.append(
            (
                f"Detector, backend {dense.backend}, redetect {dense.redetect_s:g} s",
                dense_s,
                ratio(full_s, dense_s) if full_s else "-",
                f"{realtime:.2f}x",
                "met" if realtime > 1 else "NOT met",
                f"{mean_face_score(dense_result):.4f}",
            )
        )
        rows.append(("(decoding alone)", floor_every, "-", "-", "-", "-"))
        print()
        title = f"every frame: {len(every)} frames at {every_fps:g} fps"
        header = ("pipeline", "seconds", "speed-up", "x real time", "> 1x", "mean face score")
        print(table(title, header, rows))
    print(watch.note())


if __name__ == "__main__":
    main()
