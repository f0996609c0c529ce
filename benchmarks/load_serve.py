"""Load check of the web service: N concurrent clients uploading images and videos for T s.

Starts ``mesonet serve`` on a free 127.0.0.1 port (a subprocess, so its memory is measured
alone), measures a one-client baseline, then runs the clients and reports requests served,
errors (target 0), p50/p95 latency (and their ratio to the baseline) and the server's peak
RSS. Only loopback traffic; every loop is bounded by the deadline and a request cap.

With ``--broken-share F`` that share of the requests are broken uploads (a truncated JPEG,
text named .jpg, a file over the upload limit), counted apart: each must get its 4xx (422,
422, 413), and the valid ones around them must all succeed. With ``--rounds N`` the load
runs N times against the same server; its RSS and open descriptors after each round (and
whether the upload folder is empty) show whether memory, descriptors or temporary files leak.

With ``--stalled-clients K``, K more clients each send a video upload's headers and half its
body, then stop sending (keeping the connection open), over and over: each must get its 408
after the server's ``--read-idle-s`` and have its connection closed, while the valid
requests around them all succeed.

    python benchmarks/load_serve.py                       # 8 clients, 60 s
    python benchmarks/load_serve.py --broken-share 0.25 --rounds 2 --max-upload-mb 4
    python benchmarks/load_serve.py --broken-share 0.25 --stalled-clients 8 --read-idle-s 10
    python benchmarks/load_serve.py --clients 4 --duration 20 --model runs/x.safetensors
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import cv2

SHARED = Path(__file__).resolve().parents[2] / "shared"
KERAS = SHARED / "reference" / "mesonet-keras"
VIDEOS = SHARED / "datasets" / "ffpp-c40-videos"
MAX_REQUESTS_PER_CLIENT = 10_000
VALID_KINDS = ("image", "video")
BROKEN_KINDS = {"truncated": 422, "text": 422, "oversized": 413}
"""Broken uploads mixed in by --broken-share, with the status each must get."""
STALLED = "stalled"
STALLED_STATUS = 408


@dataclass
class Sample:
    """One request: what was sent, how it went, how long it took."""

    kind: str
    status: int  # HTTP status, or 0 when the request failed without one
    seconds: float
    detail: str = ""


@dataclass
class Peak:
    """The server's resident memory, sampled while the load runs."""

    max_rss_mb: float = 0.0
    samples: list[float] = field(default_factory=list)
    max_fds: int = 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def open_descriptors(pid: int) -> int:
    """How many file descriptors a process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS = VmHWM) of a process in MiB, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def make_media(folder: Path) -> dict[str, Path]:
    """A face image (the authors' test image) and a 2 s 640x360 clip cut from an FF++ video."""
    image = KERAS / "test_images" / "df" / "df00204.jpg"
    source = sorted((VIDEOS / "fake").glob("*.mp4"))[0]
    clip = folder / "clip.mp4"
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    for _ in range(int(2 * fps)):
        ok, frame = capture.read()
        if not ok:
            break
        frame = cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA)
        if writer is None:
            writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 360))
        writer.write(frame)
    capture.release()
    if writer is None:
        raise SystemExit(f"could not read {source}")
    writer.release()
    return {"image": image, "video": clip}


def choose_model(arg: str | None, folder: Path) -> str:
    """The model to serve: the argument, the bundled default, or the authors' Meso4_DF."""
    from mesonet.models import default_model_name

    if arg:
        return arg
    if default_model_name() is not None:
        return default_model_name()
    from mesonet.keras_import import import_keras

    path = folder / "meso4.authors-df.safetensors"
    import_keras(KERAS / "weights" / "Meso4_DF.h5", path)
    return str(path)


def multipart(path: Path, fields: dict[str, str], data: bytes | None = None) -> tuple[bytes, str]:
    """A multipart body with ``path``'s bytes (or ``data``) as the file ``path.name``."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
        + (path.read_bytes() if data is None else data)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def broken_bodies(media: dict[str, Path], max_upload_mb: float) -> dict[str, tuple[bytes, str]]:
    """Uploads the server must refuse: a cut JPEG, text named .jpg, 1 MiB over the limit."""
    jpeg = media["image"].read_bytes()
    cut = jpeg[: len(jpeg) // 3]
    text = b"this is not a picture\n" * 50
    over = b"\xff\xd8\xff" + bytes(int((max_upload_mb + 1) * 1024 * 1024))
    return {
        "truncated": multipart(Path("truncated.jpg"), {}, cut),
        "text": multipart(Path("text.jpg"), {}, text),
        "oversized": multipart(Path("oversized.jpg"), {}, over),
    }


class Client:
    """One keep-alive connection posting to /api/v1/detect."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port, self.timeout = port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, kind: str, body: bytes, content_type: str) -> Sample:
        if kind == "oversized":
            return self.post_expecting_continue(kind, body, content_type)
        start = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.conn.request(
                "POST", "/api/v1/detect", body=body, headers={"Content-Type": content_type}
            )
            response = self.conn.getresponse()
            payload = response.read()
            status = response.status
            detail = ""
            if status != 200:
                detail = json.loads(payload or b"{}").get("detail", "")
            elif json.loads(payload)["status"] not in ("ok", "no_face"):
                status, detail = 0, "unexpected record status"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            status, detail = 0, f"{type(exc).__name__}: {exc}"
            if self.conn is not None:
                self.conn.close()
            self.conn = None
        return Sample(kind, status, time.perf_counter() - start, detail)

    def post_expecting_continue(self, kind: str, body: bytes, content_type: str) -> Sample:
        """POST with ``Expect: 100-continue`` on a fresh connection, as curl does for big
        files: the body is sent only if the server asks for it, so a 413 sent without
        reading arrives cleanly instead of as a reset connection."""
        start = time.perf_counter()
        head = (
            "POST /api/v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Expect: 100-continue\r\nConnection: close\r\n\r\n"
        ).encode()
        status, detail = 0, ""
        try:
            with socket.create_connection(("127.0.0.1", self.port), self.timeout) as sock:
                sock.sendall(head)
                reader = sock.makefile("rb")
                status_line = reader.readline()
                if status_line.split()[1:2] == [b"100"]:
                    while reader.readline() not in (b"\r\n", b""):
                        pass
                    sock.sendall(body)
                    status_line = reader.readline()
                status = int(status_line.split()[1])
                length = 0
                for line in iter(reader.readline, b"\r\n"):
                    if not line:
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                payload = reader.read(length) if length else b""
                if status != 200:
                    detail = json.loads(payload or b"{}").get("detail", "")
        except (OSError, ValueError, IndexError) as exc:
            status, detail = 0, f"{type(exc).__name__}: {exc}"
        return Sample(kind, status, time.perf_counter() - start, detail)


def post_stalled(port: int, body: bytes, content_type: str, timeout: float) -> Sample:
    """Send the headers and half the body, then nothing: the server's answer (408 after its
    read timeout) and whether it then closed the connection."""
    start = time.perf_counter()
    head = (
        "POST /api/v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    status, detail = 0, ""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout) as sock:
            sock.sendall(head + body[: len(body) // 2])
            answer = b""
            while chunk := sock.recv(65536):  # until the server closes the connection
                answer += chunk
            status = int(answer.split(b" ", 2)[1]) if answer else 0
            if not answer:
                detail = "closed without an answer"
    except (OSError, ValueError, IndexError) as exc:
        status, detail = 0, f"{type(exc).__name__}: {exc}"
    return Sample(STALLED, status, time.perf_counter() - start, detail)


def stalled_burst(
    port: int, pid: int, count: int, body: bytes, content_type: str, upload_dir: Path
) -> dict:
    """Open ``count`` uploads at once that all stop mid-body; the server's descriptors and
    upload files while they hang and once they are answered, and the answers' statuses."""
    head = (
        "POST /api/v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    before = open_descriptors(pid)
    start = time.monotonic()
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), 120)
        sock.sendall(head + body[: len(body) // 2])
        sockets.append(sock)
    time.sleep(2.0)
    holding = {
        "server_fds": open_descriptors(pid),
        "upload_files": len(list(upload_dir.glob("mesonet-uploads-*/*"))),
    }
    statuses: dict[str, int] = {}
    seconds = []
    for sock in sockets:
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
            status = answer.split(b" ", 2)[1].decode() if answer else "closed"
        except (OSError, IndexError) as exc:
            status = type(exc).__name__
        seconds.append(time.monotonic() - start)
        statuses[status] = statuses.get(status, 0) + 1
        sock.close()
    time.sleep(2.0)
    return {
        "connections": count,
        "server_fds_before": before,
        "while_stalled": holding,
        "answers": statuses,
        "all_answered_after_s": round(max(seconds), 1),
        "server_fds_after": open_descriptors(pid),
        "upload_files_after": len(list(upload_dir.glob("mesonet-uploads-*/*"))),
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def wait_until_up(server: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server did not start; see {log_path}")
        time.sleep(0.2)


def load_round(
    args: argparse.Namespace, port: int, pid: int, bodies: dict, round_index: int
) -> tuple[list[Sample], float, float, int]:
    """N clients posting until the deadline: (samples, seconds, peak RSS MiB sampled, peak
    open descriptors sampled)."""
    samples: list[Sample] = []
    lock = threading.Lock()
    peak = Peak()
    stop = threading.Event()
    end = time.monotonic() + args.duration

    def client_loop(index: int) -> None:
        client = Client(port, args.timeout)
        pick = random.Random(1000 * round_index + index)  # the same mix every run
        broken = [k for k in BROKEN_KINDS if k in bodies]
        for n in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() >= end:
                break
            if broken and pick.random() < args.broken_share:
                kind = broken[n % len(broken)]
            else:
                kind = VALID_KINDS[(index + n) % len(VALID_KINDS)]
            sample = client.post(kind, *bodies[kind])
            with lock:
                samples.append(sample)
        if client.conn is not None:
            client.conn.close()

    def stalled_loop() -> None:
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() >= end:
                break
            sample = post_stalled(port, *bodies["video"], args.timeout)
            with lock:
                samples.append(sample)

    def watch_descriptors() -> None:
        while not stop.wait(0.25):
            peak.max_fds = max(peak.max_fds, open_descriptors(pid))

    def watch_memory() -> None:
        while not stop.wait(0.25):
            rss, _ = proc_memory_mb(pid)
            peak.samples.append(rss)
            peak.max_rss_mb = max(peak.max_rss_mb, rss)

    watchers = [
        threading.Thread(target=watch_memory, daemon=True),
        threading.Thread(target=watch_descriptors, daemon=True),
    ]
    for watcher in watchers:
        watcher.start()
    started = time.monotonic()
    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(args.clients)]
    threads += [threading.Thread(target=stalled_loop) for _ in range(args.stalled_clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    stop.set()
    for watcher in watchers:
        watcher.join()
    return samples, elapsed, peak.max_rss_mb, peak.max_fds


def summarise(samples: list[Sample], elapsed: float, baseline: dict) -> dict:
    """Valid requests (must all be 200) and broken ones (must get their 4xx), apart."""
    valid = [s for s in samples if s.kind in VALID_KINDS]
    ok = [s for s in valid if s.status == 200]
    errors: dict[str, int] = {}
    for s in valid:
        if s.status != 200:
            key = f"{s.kind} {s.status} {s.detail}"[:120]
            errors[key] = errors.get(key, 0) + 1
    broken = {}
    for kind, expected in (*BROKEN_KINDS.items(), (STALLED, STALLED_STATUS)):
        mine = [s for s in samples if s.kind == kind]
        if mine:
            wrong = [f"{s.status} {s.detail}"[:100] for s in mine if s.status != expected]
            broken[kind] = {
                "sent": len(mine),
                "expected_status": expected,
                "got_expected": len(mine) - len(wrong),
                "unexpected": sorted(set(wrong))[:5],
                "p95_s": round(percentile([s.seconds for s in mine], 95), 3),
            }
    report = {
        "duration_s": round(elapsed, 1),
        "requests": len(samples),
        "valid_requests": len(valid),
        "served": len(ok),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "throughput_per_s": round(len(ok) / elapsed, 2),
        "broken": broken,
        "broken_unexpected": sum(b["sent"] - b["got_expected"] for b in broken.values()),
        "by_kind": {},
    }
    for kind in VALID_KINDS:
        times = [s.seconds for s in ok if s.kind == kind]
        base = statistics.median(baseline[kind]) if baseline[kind] else float("nan")
        p50, p95 = percentile(times, 50), percentile(times, 95)
        report["by_kind"][kind] = {
            "served": len(times),
            "baseline_p50_s": round(base, 3),
            "p50_s": round(p50, 3),
            "p95_s": round(p95, 3),
            "p50_vs_baseline": round(p50 / base, 2) if base == base and base > 0 else None,
        }
    all_times = [s.seconds for s in ok]
    report["p50_s"] = round(percentile(all_times, 50), 3)
    report["p95_s"] = round(percentile(all_times, 95), 3)
    return report


def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="mesonet-load-"))
    media = make_media(work)
    model = choose_model(args.model, work)
    fields = {"frames": str(args.frames)} if args.frames else {}
    bodies = {kind: multipart(path, fields) for kind, path in media.items()}
    if args.broken_share > 0:
        bodies.update(broken_bodies(media, args.max_upload_mb))
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mesonet.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model",
        model,
        "--max-in-flight",
        str(args.max_in_flight),
        "--max-upload-mb",
        f"{args.max_upload_mb:g}",
    ]
    if args.read_idle_s is not None:
        command += ["--read-idle-s", f"{args.read_idle_s:g}"]
    log = (work / "server.log").open("w")
    server_tmp = work / "tmp"  # the server's upload folder lands here: checked for leftovers
    server_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(server_tmp)}
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    rounds = []
    try:
        wait_until_up(server, port, work / "server.log")
        rss_idle, _ = proc_memory_mb(server.pid)

        # Baseline: one client, one request at a time (after a warm-up of each kind).
        single = Client(port, args.timeout)
        for kind in VALID_KINDS:
            single.post(kind, *bodies[kind])
        baseline: dict[str, list[float]] = {kind: [] for kind in VALID_KINDS}
        for _ in range(args.baseline_runs):
            for kind in VALID_KINDS:
                sample = single.post(kind, *bodies[kind])
                if sample.status == 200:
                    baseline[kind].append(sample.seconds)
        rss_before, _ = proc_memory_mb(server.pid)
        time.sleep(args.settle)
        fds_before = open_descriptors(server.pid)

        burst = None
        if args.stalled_burst:
            burst = stalled_burst(
                port, server.pid, args.stalled_burst, *bodies["video"], server_tmp
            )

        # Load: N clients, alternating image and video (and broken uploads), per round.
        load_before = os.getloadavg()
        for index in range(args.rounds):
            samples, elapsed, peak_sampled, peak_fds = load_round(
                args, port, server.pid, bodies, index
            )
            time.sleep(args.settle)  # let the last responses' buffers and connections go
            rss_after, hwm = proc_memory_mb(server.pid)
            row = summarise(samples, elapsed, baseline)
            row["server_rss_peak_mb"] = round(max(hwm, peak_sampled), 1)
            row["server_rss_after_mb"] = round(rss_after, 1)
            row["server_fds_peak"] = peak_fds
            row["server_fds_after"] = open_descriptors(server.pid)
            row["upload_files_left"] = sorted(
                p.name for p in server_tmp.glob("mesonet-uploads-*/*")
            )
            rounds.append(row)
        load_after = os.getloadavg()
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    report = {
        "clients": args.clients,
        "max_in_flight": args.max_in_flight,
        "max_upload_mb": args.max_upload_mb,
        "broken_share": args.broken_share,
        "stalled_clients": args.stalled_clients,
        "read_idle_s": args.read_idle_s or "default (30)",
        "frames_per_video": args.frames or "default (32)",
        "model": model,
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "server_rss_idle_mb": round(rss_idle, 1),
        "server_rss_before_mb": round(rss_before, 1),
        "server_fds_before": fds_before,
        "stalled_burst": burst,
        "rounds": rounds,
    }
    report.update(rounds[0])  # the first round's figures at the top level, as before
    report["errors"] = sum(r["errors"] for r in rounds)
    report["broken_unexpected"] = sum(r["broken_unexpected"] for r in rounds)
    report["server_rss_peak_mb"] = max(r["server_rss_peak_mb"] for r in rounds)
    report["upload_files_left"] = rounds[-1]["upload_files_left"]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load a round")
    parser.add_argument("--rounds", type=int, default=1, help="load rounds on the same server")
    parser.add_argument(
        "--broken-share", type=float, default=0.0, help="share of broken uploads (0..0.9)"
    )
    parser.add_argument(
        "--stalled-clients", type=int, default=0, help="clients that stop mid-body (each 408)"
    )
    parser.add_argument("--read-idle-s", type=float, help="the server's --read-idle-s")
    parser.add_argument(
        "--stalled-burst", type=int, default=0, help="first, N uploads at once that all stall"
    )
    parser.add_argument("--model", help="bundled name or .safetensors (default: see above)")
    parser.add_argument("--frames", type=int, help="frames per video [server default: 32]")
    parser.add_argument("--max-in-flight", type=int, default=2)
    parser.add_argument("--max-upload-mb", type=float, default=200.0)
    parser.add_argument("--baseline-runs", type=int, default=5)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before RSS after")
    parser.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    if not (KERAS.exists() and VIDEOS.exists()):
        raise SystemExit(f"needs ../shared data beside the project ({SHARED})")
    if not (1 <= args.clients <= 64 and 0 < args.duration <= 3600 and 1 <= args.rounds <= 10):
        raise SystemExit("--clients must be 1..64, --duration 0..3600 s, --rounds 1..10")
    if not (0 <= args.stalled_clients <= 512 and 0 <= args.stalled_burst <= 5000):
        raise SystemExit("--stalled-clients must be 0..512 and --stalled-burst 0..5000")
    if not (0 <= args.broken_share <= 0.9 and 0 < args.max_upload_mb <= 1024):
        raise SystemExit("--broken-share must be 0..0.9 and --max-upload-mb 0..1024")
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{report['clients']} clients x {len(report['rounds'])} rounds of {args.duration:g} s "
        f"against mesonet serve (max {report['max_in_flight']} in flight, "
        f"{report['frames_per_video']} frames a video, broken share {args.broken_share:g}, "
        f"{args.stalled_clients} stalled clients (read idle {report['read_idle_s']} s), "
        f"model {report['model']}; {report['cpus']} CPUs, load average "
        f"{report['loadavg_before'][0]} before, {report['loadavg_after'][0]} after)"
    )
    print(
        f"server RSS: {report['server_rss_idle_mb']} MiB idle, "
        f"{report['server_rss_before_mb']} MiB after the baseline requests; "
        f"{report['server_fds_before']} open descriptors"
    )
    burst = report["stalled_burst"]
    if burst:
        print(
            f"stalled burst: {burst['connections']} uploads stopping mid-body at once; server "
            f"descriptors {burst['server_fds_before']} before, "
            f"{burst['while_stalled']['server_fds']} while they hang "
            f"({burst['while_stalled']['upload_files']} upload files), "
            f"{burst['server_fds_after']} after ({burst['upload_files_after']} files); "
            f"answers {burst['answers']}, all within {burst['all_answered_after_s']} s"
        )
    for number, row in enumerate(report["rounds"], 1):
        print(
            f"round {number}: {row['requests']} requests; valid: served {row['served']} of "
            f"{row['valid_requests']} ({row['throughput_per_s']}/s), errors {row['errors']} "
            f"{row['error_kinds'] or ''}"
        )
        print(f"  latency p50 {row['p50_s']} s, p95 {row['p95_s']} s (valid requests)")
        for kind, k in row["by_kind"].items():
            print(
                f"  {kind:5s}: {k['served']} served, p50 {k['p50_s']} s, p95 {k['p95_s']} s; "
                f"one-client baseline {k['baseline_p50_s']} s (p50 x{k['p50_vs_baseline']})"
            )
        for kind, b in row["broken"].items():
            print(
                f"  broken {kind}: {b['got_expected']} of {b['sent']} got "
                f"{b['expected_status']} (p95 {b['p95_s']} s) {b['unexpected'] or ''}"
            )
        print(
            f"  server RSS peak {row['server_rss_peak_mb']} MiB, after "
            f"{row['server_rss_after_mb']} MiB; descriptors peak {row['server_fds_peak']}, "
            f"after {row['server_fds_after']}; upload files left: "
            f"{len(row['upload_files_left'])}"
        )


if __name__ == "__main__":
    main()
