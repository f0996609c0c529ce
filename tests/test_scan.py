"""mesonet scan: folder and manifest sources, JSONL and Parquet output, resuming, Ray engine.

The media are a few dfdc-faces test crops and two short clips cut from ffpp-c40-videos
(../shared, skipped without it); the Ray tests start a 2-CPU local cluster (skipped when Ray
is not installed) and compare its records with the local engine's.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from mesonet.cli import app
from mesonet.errors import MesonetError
from mesonet.scan import read_records, scan
from mesonet.scan.writers import journal_path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CROPS = SHARED / "dfdc-faces" / "test"
VIDEOS = SHARED / "ffpp-c40-videos"
OPTIONS = {"frames": 4}  # detect faces, 4 frames a video: a few seconds a scan
RAY_DEADLINE_S = 240


# --------------------------------------------------------------------------- data


def _clip(src: Path, dst: Path, frames: int = 12, scale: float = 0.5) -> Path:
    """The first ``frames`` frames of ``src``, scaled, as an MP4 (small and quick to scan)."""
    capture = cv2.VideoCapture(str(src))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    for _ in range(frames):
        ok, frame = capture.read()
        if not ok:
            break
        frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if writer is None:
            size = (frame.shape[1], frame.shape[0])
            writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        writer.write(frame)
    capture.release()
    assert writer is not None, f"could not read {src}"
    writer.release()
    return dst


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """5 face crops (one named in Latin-1, not UTF-8), 2 clips (in a sub-folder) and one
    broken 'image': 8 inputs."""
    if not (CROPS.exists() and VIDEOS.exists()):
        pytest.skip("../shared dfdc-faces and ffpp-c40-videos are needed")
    folder = tmp_path_factory.mktemp("collection")
    for label in ("fake", "real"):
        for src in sorted((CROPS / label).glob("*.jpg"))[:2]:
            shutil.copy(src, folder / f"{label}_{src.name}")
    (folder / "clips").mkdir()
    _clip(sorted((VIDEOS / "fake").glob("*.mp4"))[0], folder / "clips" / "fake.mp4")
    _clip(sorted((VIDEOS / "real").glob("*.mp4"))[0], folder / "clips" / "real.mp4")
    shutil.copy(sorted((CROPS / "real").glob("*.jpg"))[2], folder / os.fsdecode(b"caf\xe9.jpg"))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


@pytest.fixture(scope="module")
def baseline(collection, served_model, tmp_path_factory) -> list[dict]:
    """The local engine's records for the collection (scanned once)."""
    out = tmp_path_factory.mktemp("baseline") / "local.jsonl"
    summary = scan(collection, out, model=served_model, recursive=True, **OPTIONS)
    assert summary.written == summary.listed == 8 and not summary.lost
    return list(read_records(out))


def _by_path(records: list[dict]) -> dict[str, dict]:
    paths = [r["path"] for r in records]
    assert len(paths) == len(set(paths)), "duplicate records"
    return {r["path"]: r for r in records}


def _assert_same(records: list[dict], expected: list[dict]) -> None:
    got, want = _by_path(records), _by_path(expected)
    assert got.keys() == want.keys()
    for path, record in want.items():
        other = got[path]
        assert (other["status"], other["label"], other["kind"]) == (
            record["status"],
            record["label"],
            record["kind"],
        ), path
        if record["fake_probability"] is None:
            assert other["fake_probability"] is None
        else:
            assert math.isclose(other["fake_probability"], record["fake_probability"], abs_tol=1e-5)


def _interrupt(out: Path, keep: int) -> None:
    """Leave ``out`` as a kill mid-write would: ``keep`` whole lines and half of the next."""
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:keep]) + lines[keep][: len(lines[keep]) // 2])


def _run(*args: str) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


# --------------------------------------------------------------------------- local engine


def test_scan_writes_one_record_per_input(baseline, collection):
    statuses = {Path(r["path"]).name: r["status"] for r in baseline}
    assert statuses["broken.jpg"] == "error"
    assert statuses["fake.mp4"] == statuses["real.mp4"] == "ok"
    assert all(Path(r["path"]).is_absolute() for r in baseline)
    video = next(r for r in baseline if r["kind"] == "video")
    assert video["frames_analyzed"] == 4 and "segments" in video
    error = next(r for r in baseline if r["status"] == "error")
    assert error["error"] and error["fake_probability"] is None


def test_scan_records_match_predict(baseline, collection, served_model):
    from mesonet.pipeline import Detector

    detector = Detector(served_model, **OPTIONS)
    expected = [r.to_dict() for r in detector.predict_many([collection], recursive=True)]
    for record in expected:
        record["path"] = str(Path(record["path"]).absolute())
    _assert_same(baseline, expected)


def test_cli_scan_exit_code_and_rerun_skips_everything(collection, served_model, tmp_path):
    out = tmp_path / "out.jsonl"
    args = ("scan", collection, "-o", out, "-r", "-m", served_model, "--faces", "none")
    first = _run(*args)
    assert first.exit_code == 1, first.output  # the broken file's record is an error
    assert "8 of 8 inputs analysed" in first.output
    before = out.read_bytes()
    again = _run(*args)
    assert again.exit_code == 1 and "0 of 8 inputs analysed (8 already in" in again.output
    assert out.read_bytes() == before  # nothing appended


def test_rerun_after_interruption_completes_without_duplicates(
    baseline, collection, served_model, tmp_path
):
    out = tmp_path / "out.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in baseline))
    _interrupt(out, keep=3)
    assert len(list(read_records(out))) == 3  # the half line is not a record
    summary = scan(collection, out, model=served_model, recursive=True, **OPTIONS)
    assert (summary.skipped, summary.written) == (3, 5)
    _assert_same(list(read_records(out)), baseline)
    assert all(json.loads(line) for line in out.read_text().splitlines())  # no torn line left


def test_manifests_txt_and_csv(collection, served_model, tmp_path):
    files = sorted(p for p in collection.rglob("*") if p.is_file())
    rel = [p.relative_to(collection).as_posix() for p in files]
    txt = tmp_path / "list.txt"
    lines = "# the collection\n\n" + "\n".join(rel) + "\nmissing.jpg\n" + rel[0] + "\n"
    txt.write_text(lines, errors="surrogateescape")  # the Latin-1 name as its bytes
    table = tmp_path / "list.csv"
    with table.open("w", newline="", errors="surrogateescape") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label", "path"])
        writer.writerows([["x", p] for p in rel])
    common = {"model": served_model, "faces": "none"}
    from_txt = scan(txt, tmp_path / "txt.jsonl", root=collection, **common)
    assert from_txt.listed == 9  # the duplicate line counted once, the missing file kept
    records = _by_path(list(read_records(tmp_path / "txt.jsonl")))
    missing = records[str(collection / "missing.jpg")]
    assert missing["status"] == "error" and "not found" in missing["error"]
    from_csv = scan(table, tmp_path / "csv.jsonl", root=collection, **common)
    assert from_csv.listed == 8
    csv_records = list(read_records(tmp_path / "csv.jsonl"))
    _assert_same(csv_records, [r for p, r in records.items() if not p.endswith("missing.jpg")])
    # without --root, paths start from the manifest's folder: not found there, error records
    result = _run("scan", table, "-o", tmp_path / "x.jsonl", "-m", served_model, "--faces", "none")
    assert result.exit_code == 1 and ": 8 error" in result.output


def test_parquet_round_trip_and_resume(baseline, collection, served_model, tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "out.parquet"
    summary = scan(collection, out, model=served_model, recursive=True, **OPTIONS)
    assert summary.written == 8 and not journal_path(out).exists()
    records = list(read_records(out))
    _assert_same(records, baseline)
    assert sorted(records, key=lambda r: r["path"]) == sorted(baseline, key=lambda r: r["path"])
    # a killed scan leaves its journal (whole lines and a torn one): the rerun merges it
    out.unlink()
    journal = journal_path(out)
    journal.write_text("".join(json.dumps(r) + "\n" for r in baseline))
    _interrupt(journal, keep=5)
    rerun = scan(collection, out, model=served_model, recursive=True, **OPTIONS)
    assert (rerun.skipped, rerun.written) == (5, 3) and not journal.exists()
    _assert_same(list(read_records(out)), baseline)


def test_usage_errors_exit_2(collection, served_model, tmp_path):
    image = next(collection.glob("*.jpg"))
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("file,label\na.jpg,real\n")
    out = tmp_path / "a.jsonl"
    cases = [
        (tmp_path / "nowhere", "-o", out),
        (image, "-o", out),  # a media file is not a source
        (bad_csv, "-o", out),  # no path column
        (collection, "-o", tmp_path / "a.csv"),  # unknown output format
        (collection, "-o", out, "--workers", "2"),  # for the ray engine only
        (collection, "-o", out, "--engine", "spark"),
        (collection, "-o", out, "--faces", "maybe"),
    ]
    for args in cases:
        result = _run("scan", *args, "-m", served_model)
        # usage errors exit 2; library errors reach main(), which prints them and exits 2
        assert result.exit_code == 2 or isinstance(result.exception, MesonetError), args
        assert not out.exists() or out.stat().st_size == 0, args
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mesonet.cli",
            "scan",
            str(image),
            "-o",
            str(out),
            "-m",
            str(served_model),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "media file" in proc.stderr and "Traceback" not in proc.stderr


def test_output_of_another_model_is_refused(collection, served_model, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"path": "/x.jpg", "status": "ok", "model": "other.model"}) + "\n")
    with pytest.raises(MesonetError, match="other.model"):
        scan(collection, out, model=served_model, faces="none")


def test_one_scan_writes_an_output_at_a_time(tmp_path):
    from mesonet.scan.writers import JsonlWriter

    with JsonlWriter(tmp_path / "o.jsonl") as writer:
        writer.write([{"path": "/a.jpg", "status": "ok"}])
        with pytest.raises(MesonetError, match="another scan"):
            JsonlWriter(tmp_path / "o.jsonl")
    assert list(read_records(tmp_path / "o.jsonl")) == [{"path": "/a.jpg", "status": "ok"}]


FORKED_CHILD = """
import os, signal, sys, time
from mesonet.scan.writers import JsonlWriter
from mesonet.scan.writers.jsonl import read_jsonl

out = sys.argv[1]
with JsonlWriter(out) as writer:
    writer.write([{"path": "/a.jpg", "status": "ok"}])
    child = os.fork()
    if child == 0:
        time.sleep(60)
        os._exit(0)
try:
    with JsonlWriter(out) as again:  # the child still lives
        again.write([{"path": "/b.jpg", "status": "ok"}])
finally:
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
from pathlib import Path
print(*[r["path"] for r in read_jsonl(Path(out))])
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_keep_a_scan_output_locked(tmp_path):
    """A process forked while a scan writes (another library's worker pool) once kept the
    output's lock for its whole life, and the next scan of it was refused. (In its own
    process: a fork inside a test worker would copy the worker's channel too.)"""
    import subprocess
    import sys

    out = tmp_path / "o.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", FORKED_CHILD, str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["/a.jpg", "/b.jpg"]


def test_local_engine_does_not_import_ray(collection, served_model, tmp_path):
    code = (
        "import sys; from mesonet.scan import scan; "
        f"scan({str(collection)!r}, {str(tmp_path / 'o.jsonl')!r}, model={str(served_model)!r},"
        " faces='none'); assert 'ray' not in sys.modules, 'ray imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- Ray engine


@contextlib.contextmanager
def _deadline(seconds: int):
    """Fail (instead of hanging) when the block runs longer than ``seconds``."""

    def expire(signum, frame):
        raise TimeoutError(f"Ray scan still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def ray_cluster():
    """A 2-CPU Ray instance for this module, shut down after it."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_engine_matches_local(ray_cluster, baseline, collection, served_model, tmp_path):
    out = tmp_path / "ray.jsonl"
    args = ["scan", collection, "-o", out, "-r", "-m", served_model, "--frames", "4"]
    with _deadline(RAY_DEADLINE_S):
        result = _run(*args, "--engine", "ray", "--workers", "2")
    assert result.exit_code == 1, result.output  # the broken file
    assert "8 of 8 inputs analysed" in result.output
    _assert_same(list(read_records(out)), baseline)


def test_ray_engine_resumes_after_interruption(
    ray_cluster, baseline, collection, served_model, tmp_path
):
    out = tmp_path / "ray.parquet"
    journal = journal_path(out)
    journal.write_text("".join(json.dumps(r) + "\n" for r in baseline))
    _interrupt(journal, keep=2)
    with _deadline(RAY_DEADLINE_S):
        summary = scan(
            collection, out, engine="ray", workers=2, model=served_model, recursive=True, **OPTIONS
        )
    assert (summary.skipped, summary.written, summary.lost) == (2, 6, [])
    _assert_same(list(read_records(out)), baseline)


# --------------------------------------------------------------------------- Parquet merge


@pytest.fixture
def pngs(tmp_path) -> Path:
    """Twelve small PNGs made here (no ../shared needed), split in two folders."""
    import numpy as np

    for n in range(12):
        folder = tmp_path / "media" / ("a" if n < 6 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        image = np.random.default_rng(n).integers(0, 255, (40, 40, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{n}.png"), image)
    return tmp_path / "media"


def test_parquet_merge_is_idempotent_after_a_kill_before_the_journal_is_removed(
    pngs, served_model, tmp_path, monkeypatch
):
    pytest.importorskip("pyarrow")
    out = tmp_path / "out.parquet"
    journal = journal_path(out)
    real_unlink = Path.unlink

    def killed_before_unlink(self, *args, **kwargs):  # the merge's rename done, then SIGKILL
        if self == journal:
            return None
        return real_unlink(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "unlink", killed_before_unlink)
        first = scan(pngs, out, model=served_model, recursive=True, faces="none")
    assert first.written == 12 and journal.exists()
    rerun = scan(pngs, out, model=served_model, recursive=True, faces="none")
    assert rerun.written == 0 and not journal.exists()
    records = list(read_records(out))
    assert len(records) == 12 and len(_by_path(records)) == 12
    again = scan(pngs, out, model=served_model, recursive=True, faces="none")
    assert again.written == 0 and len(list(read_records(out))) == 12


def test_parquet_scan_started_during_a_merge_loses_nothing(
    pngs, served_model, tmp_path, monkeypatch
):
    """A second scan while the first merges: refused, or its records reach the file."""
    pytest.importorskip("pyarrow")
    out = tmp_path / "out.parquet"
    real_replace = os.replace
    second: list[object] = []
    started: list[bool] = []

    def replace_during_second_scan(src, dst, *args, **kwargs):
        if Path(dst) == out and not started:
            started.append(True)
            try:
                second.append(scan(pngs / "b", out, model=served_model, faces="none"))
            except MesonetError as exc:
                second.append(exc)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace_during_second_scan)
    first = scan(pngs / "a", out, model=served_model, faces="none")
    assert first.written == 6 and len(second) == 1
    paths = {r["path"] for r in read_records(out)}
    if isinstance(second[0], MesonetError):
        assert "another scan" in str(second[0])
        assert len(paths) == 6
    else:
        assert second[0].written == 6 and len(paths) == 12, "the second scan's records were lost"
    assert not journal_path(out).exists()
