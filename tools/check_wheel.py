"""Build the wheel, install it into a fresh virtual environment and use it as a user would.

    python tools/check_wheel.py            # what `make check-wheel` and .ci/run run

Checks that the wheel alone (no editable install, no source tree on the path, the working
folder outside the project, and no PyTorch: the prediction install) carries what mesonet
needs at run time: the bundled weights and their OpenVINO graphs, the sample images with
their LICENSE and NOTICE, and the web page's static files. It runs ``mesonet predict
--samples``, a video, ``mesonet scan`` and ``mesonet serve`` with one upload and one page
request, says how big the install is, and fails on any deprecation warning printed while
building or installing.

Dependencies come from pip's usual sources and cache.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], log: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run ``cmd``; its output joins ``log`` (checked for warnings); fail loudly."""
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    log.append(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(cmd)}\n{result.stdout}{result.stderr}")
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def multipart(path: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"'
            "\r\nContent-Type: image/jpeg\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def check_serve(mesonet: Path, env: dict, cwd: Path, sample: Path) -> dict:
    """Start ``mesonet serve``, upload ``sample`` once, fetch the page; the detect answer."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(mesonet), "serve", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=5) as answer:
                    json.load(answer)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"mesonet serve did not start:\n{server.stdout.read()}")
                time.sleep(0.5)
        body, kind = multipart(sample)
        request = urllib.request.Request(
            f"{base}/api/v1/detect", data=body, headers={"Content-Type": kind}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=120) as answer:
            record = json.load(answer)
        with urllib.request.urlopen(f"{base}/", timeout=10) as answer:
            page = answer.read().decode()
        with urllib.request.urlopen(f"{base}/static/favicon.svg", timeout=10) as answer:
            assert answer.status == 200
        assert "<title>mesonet" in page, page[:200]
        return record
    finally:
        server.terminate()  # the server this function started, by its handle
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


def make_clip(python: Path, face: Path, path: Path, env: dict) -> Path:
    """A 3 s video of ``face`` moving over a grey frame, written by the installed OpenCV."""
    code = (
        "import sys, cv2, numpy as np\n"
        "face = cv2.resize(cv2.imread(sys.argv[1]), (160, 160))\n"
        "w = cv2.VideoWriter(sys.argv[2], cv2.VideoWriter_fourcc(*'mp4v'), 10, (480, 360))\n"
        "for i in range(30):\n"
        "    frame = np.full((360, 480, 3), 120, np.uint8)\n"
        "    frame[100:260, 100 + 3 * i : 260 + 3 * i] = face\n"
        "    w.write(frame)\n"
        "w.release()\n"
    )
    subprocess.run([str(python), "-c", code, str(face), str(path)], check=True, env=env)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="mesonet-wheel-"))
    work.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    started = time.monotonic()

    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(work / "dist"), str(REPO)], log)
    wheel = next((work / "dist").glob("mesonet-*.whl"))
    names = set(run([sys.executable, "-m", "zipfile", "-l", str(wheel)], log).stdout.split())
    for needed in (
        "mesonet/samples/LICENSE",
        "mesonet/samples/NOTICE",
        "mesonet/serve/static/index.html",
        "mesonet/serve/static/favicon.svg",
        "mesonet/models/weights/int8/ensemble.lite0-f2f.safetensors",
        "mesonet/models/graphs/ensemble.lite0-f2f.int8.xml",
        "mesonet/models/graphs/ensemble.lite0-f2f.int8.bin",
        "mesonet/models/graphs/efficientnet_lite0.noffpp.graph.json",
        "mesonet/models/graphs/temporal_conv.lite0-ffpp.bin",
    ):
        assert needed in names, f"{needed} is not in {wheel.name}"
    assert any(
        n.startswith("mesonet/models/weights/") and n.endswith(".safetensors") for n in names
    )
    assert sum(n.startswith("mesonet/samples/") and n.endswith(".jpg") for n in names) == 4

    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], log)
    python, mesonet = venv / "bin" / "python", venv / "bin" / "mesonet"
    run([str(python), "-m", "pip", "install", "-q", str(wheel)], log)
    for heavy in ("torch", "nncf", "sklearn"):  # the prediction install has no train extra
        found = run(
            [str(python), "-c", f"import importlib.util as u; print(u.find_spec({heavy!r}))"], log
        )
        assert found.stdout.strip() == "None", f"{heavy} is installed by the wheel alone"
    size_mb = int(
        subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True).stdout.split()[0]
    )

    # the user's view: a folder outside the project, nothing of ours on the path
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["MESONET_CACHE"] = str(work / "cache")  # a new user's empty cache
    home = work / "elsewhere"
    home.mkdir(exist_ok=True)
    where = run(
        [str(python), "-c", "import mesonet; print(mesonet.__file__)"], log, env=env, cwd=home
    )
    site = Path(where.stdout.strip()).resolve()
    assert venv.resolve() in site.parents and REPO not in site.parents, site
    assert not list(venv.glob("lib/python*/site-packages/__editable__*")), "editable install"

    predicted = run([str(mesonet), "predict", "--samples", "-f", "json"], log, env=env, cwd=home)
    records = json.loads(predicted.stdout)
    assert len(records) == 4, records
    for record in records:
        assert record["status"] == "ok", record
        assert venv.resolve() in Path(record["path"]).resolve().parents, record["path"]
    # the default runs in int8, its graph prebuilt in the wheel
    engine = run(
        [str(python), "-c", "from mesonet import Detector; print(Detector().backend)"],
        log,
        env=env,
        cwd=home,
    ).stdout.strip()
    assert engine == "openvino-int8", f"the default runs on {engine}, not openvino-int8"
    sample = Path(records[0]["path"])
    video = make_clip(python, sample, work / "clip.mp4", env)
    clip = run([str(mesonet), "predict", str(video), "-f", "jsonl"], log, env=env, cwd=home)
    clip_record = json.loads(clip.stdout.splitlines()[0])
    assert clip_record["status"] == "ok" and clip_record["kind"] == "video", clip_record
    scanned = work / "scan.jsonl"
    run([str(mesonet), "scan", str(sample.parent), "-o", str(scanned)], log, env=env, cwd=home)
    assert len(scanned.read_text().splitlines()) == 2, scanned.read_text()
    answer = check_serve(mesonet, env, home, sample)
    assert answer["status"] == "ok" and answer["path"] == sample.name, answer

    warnings = [line for text in log for line in text.splitlines() if "deprecat" in line.lower()]
    assert not warnings, "deprecation warnings while building or installing:\n" + "\n".join(
        warnings
    )
    verdicts = ", ".join(f"{Path(r['path']).name} {r['label']}" for r in records)
    print(
        f"wheel check passed in {time.monotonic() - started:.0f} s: {wheel.name} installed in "
        f"a fresh venv ({site.parent}, {size_mb} MB, no PyTorch); the default on {engine}; "
        f"predict --samples: {verdicts}; a video: {clip_record['label']}; scan: 2 records; "
        f"serve: one upload answered {answer['label']}"
    )


if __name__ == "__main__":
    main()
