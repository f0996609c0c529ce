"""The web service's API: records identical to the CLI's, every error as JSON, no leftovers."""

from __future__ import annotations

import asyncio
import base64
import re
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mesonet.pipeline import Detector
from mesonet.results import MediaResult
from mesonet.serve import create_app
from mesonet.serve.upload import UploadError, display_name, receive_upload

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx`:DeprecationWarning")
TestClient = pytest.importorskip("fastapi.testclient").TestClient
DETECT = "/api/v1/detect"


@pytest.fixture(scope="module")
def uploads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def client(served_model, uploads):
    with TestClient(create_app(served_model, tmp_dir=uploads)) as client:
        yield client


@pytest.fixture(autouse=True)
def no_leftovers(request):
    """Every test that uploads leaves the upload folder empty."""
    yield
    if "uploads" in request.fixturenames:
        folder = request.getfixturevalue("uploads")
        assert list(folder.iterdir()) == [], "temporary upload files were left behind"


def post(client, path: Path, name: str | None = None, data=None, query: str = ""):
    with path.open("rb") as fh:
        return client.post(DETECT + query, files={"file": (name or path.name, fh)}, data=data)


def assert_error(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str) and body["detail"]
    for word in words:
        assert word in body["detail"], body["detail"]
    return body["detail"]


# --------------------------------------------------------------------------- success


def test_image_record_is_exactly_the_predict_record(client, served_model, face_media, uploads):
    response = post(client, face_media["image"], name="holiday photo.jpg")
    assert response.status_code == 200
    expected = Detector(served_model).predict(face_media["image"]).to_dict()
    expected["path"] = "holiday photo.jpg"
    assert response.json() == expected
    assert expected["status"] == "ok" and len(expected["faces"]) == 1


def test_video_with_form_options(client, served_model, face_media, uploads):
    data = {"frames": "4", "threshold": "0.25", "aggregate": "vote", "track_share": "0.5"}
    response = post(client, face_media["video"], data=data)
    assert response.status_code == 200
    record = response.json()
    detector = Detector(served_model, frames=4, threshold=0.25, aggregate="vote", track_share=0.5)
    expected = detector.predict(face_media["video"]).to_dict()
    expected["path"] = "clip.mp4"
    assert record == expected
    assert record["kind"] == "video" and record["frames_analyzed"] == 4
    assert record["aggregation"] == "vote" and "annotated" not in record
    assert [t["decisive"] for t in record["tracks"]] == [True]


def test_include_crops_adds_the_gallery_and_frame(client, face_media, uploads):
    for key in ("image", "video"):
        response = post(client, face_media[key], data={"frames": "3"}, query="?include=crops")
        assert response.status_code == 200
        record = response.json()
        extra = record["annotated"]
        assert extra["threshold"] == pytest.approx(0.5, abs=0.5)
        assert len(extra["crops"]) == len(record["faces"]) > 0
        for crop in extra["crops"]:
            assert base64.b64decode(crop["jpeg"])[:3] == b"\xff\xd8\xff"
            assert 0 <= crop["face"] < len(record["faces"])
        frame = extra["frame"]
        assert (frame["width"], frame["height"]) == (480, 360)
        top = max(record["faces"], key=lambda f: f["fake_probability"])
        assert record["faces"][frame["face"]] == top


def test_no_face_is_200_with_the_record(client, tmp_path, uploads):
    import cv2
    import numpy as np

    noise = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    path = tmp_path / "noise.png"
    cv2.imwrite(str(path), noise)
    response = post(client, path)
    assert response.status_code == 200
    assert response.json()["status"] == "no_face" and response.json()["label"] is None


def test_uploaded_name_loses_its_folders(client, face_media, uploads):
    response = post(client, face_media["image"], name="../../etc/evil.jpg")
    assert response.json()["path"] == "evil.jpg"
    assert display_name("C:\\Users\\me\\x.png") == "x.png" and display_name("") == "upload"


def test_models_healthz_docs_and_page(client):
    models = client.get("/api/v1/models").json()
    assert models["serving"]["name"] and "bundled" in models and "default" in models
    assert models["serving"]["backend"] == client.app.state.service.pools.first.backend
    assert models["int8"] == ["ensemble.lite0-f2f"]  # the bundled models auto runs in int8
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["max_upload_mb"] == 200
    spec = client.get("/openapi.json").json()
    assert {"/api/v1/detect", "/api/v1/models", "/healthz"} <= set(spec["paths"])
    body = spec["paths"]["/api/v1/detect"]["post"]["requestBody"]["content"]
    assert "file" in body["multipart/form-data"]["schema"]["properties"]
    for page in ("/", "/docs", "/static/app.js", "/static/style.css", "/static/docs.js"):
        response = client.get(page)
        assert response.status_code == 200, page
        # nothing from a CDN: no script, style or image from another host
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", response.text), page
        assert "url(http" not in response.text and "import(" not in response.text
    assert client.get("/redoc").status_code == 404


def test_models_lists_the_bundled_models_and_a_request_picks_one(client, face_media, uploads):
    from mesonet.models import bundled_models

    models = client.get("/api/v1/models").json()
    assert {card["name"] for card in models["bundled"]} == set(bundled_models())
    assert models["default"] in bundled_models()
    served = models["serving"]["name"]
    single = {n: p for n, p in bundled_models().items() if p.suffix == ".safetensors"}
    # the served model may itself be an ensemble (the default is), which cannot be a member
    other, third = [name for name in single if name != served][:2]
    ensembles = [name for name, path in bundled_models().items() if path.suffix == ".json"]
    for model in (other, f"{other}+{third}", *ensembles):
        response = post(client, face_media["image"], data={"model": model})
        assert response.status_code == 200, response.text
        expected = Detector(model).predict(face_media["image"]).to_dict()
        expected["path"] = face_media["image"].name
        assert response.json() == expected and expected["model"] == model
        assert expected["verdict"] in ("likely real", "uncertain", "likely forged")
    # the served model again, from its own pool
    assert post(client, face_media["image"]).json()["model"] == served


# --------------------------------------------------------------------------- errors


def test_too_large_is_413(served_model, face_media, tmp_path):
    folder = tmp_path / "up"
    with TestClient(create_app(served_model, max_upload_mb=0.01, tmp_dir=folder)) as client:
        assert_error(post(client, face_media["video"]), 413, "too large", "10.2 KB")
        # small enough for the Content-Length check, too big once counted
        small = tmp_path / "big.jpg"
        small.write_bytes(b"\xff\xd8\xff" + bytes(20_000))
        assert_error(post(client, small), 413)
    assert list(folder.iterdir()) == []


def test_not_media_is_415(client, tmp_path, uploads):
    path = tmp_path / "notes.txt"
    path.write_text("just some text\n")
    assert_error(post(client, path), 415, "notes.txt", "not an image or video")
    assert_error(client.post(DETECT, content=b"raw bytes"), 415, "multipart/form-data")
    assert_error(client.post(DETECT, data={"frames": "3"}), 415)


def test_corrupt_media_is_422_with_the_record_error(client, face_media, tmp_path, uploads):
    jpeg = face_media["image"].read_bytes()
    cases = {
        "truncated.jpg": jpeg[:200] + bytes(range(256)) * 4,
        "text.jpg": b"I am not a picture\n",
        "empty.jpg": b"",
        "noframes.mp4": b"\x00\x00\x00\x18ftypmp42" + bytes(3000),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        detail = assert_error(post(client, path), 422, name)
        assert "\n" not in detail and str(tmp_path) not in detail
    assert "file is empty" in assert_error(post(client, tmp_path / "empty.jpg"), 422)


@pytest.mark.parametrize(
    ("field", "value", "word"),
    [
        ("frames", "0", "frames"),
        ("frames", "many", "frames"),
        ("frames", "100000", "frames"),
        ("threshold", "2", "threshold"),
        ("threshold", "nan", "threshold"),
        ("threshold", "-0.1", "threshold"),
        ("aggregate", "max", "aggregate"),
        ("track_share", "1.5", "track_share"),
        ("model", "/etc/passwd.safetensors", "bundled model"),
        ("model", "meso4.nope", "bundled model"),
        # issue 25: only ASCII digits and plain decimals
        ("frames", "\u0663\u0662", "frames"),
        ("frames", "1_0", "frames"),
        ("frames", "+3", "frames"),
        ("threshold", "1_0", "threshold"),
        ("threshold", "\u0660.\u0665", "threshold"),
        ("threshold", "inf", "threshold"),
        ("threshold", "1e-400", "too small to be told from 0"),
        ("track_share", "1e-400", "too small to be told from 0"),
        ("model", "+".join(["meso4.df"] * 9), "up to 8 bundled names"),
    ],
)
def test_bad_form_values_are_422(client, face_media, uploads, field, value, word):
    assert_error(post(client, face_media["image"], data={field: value}), 422, word, value)


def test_an_ensemble_inside_an_ensemble_is_422(client, face_media, uploads):
    from mesonet.models import bundled_models

    ensembles = [name for name, path in bundled_models().items() if path.suffix == ".json"]
    if not ensembles:
        pytest.skip("no bundled ensemble card")
    value = f"meso4.df+{ensembles[0]}"
    detail = assert_error(post(client, face_media["image"], data={"model": value}), 422, value)
    assert "cannot be a member of another ensemble" in detail


def test_plain_numbers_in_form_fields_are_read_exactly():
    from mesonet.serve.options import parse_options

    options = parse_options({"frames": "32", "threshold": "0e5", "track_share": ".25"})
    assert (options.frames, options.threshold, options.track_share) == (32, 0.0, 0.25)
    assert parse_options({"threshold": "-0"}).threshold == 0.0
    assert parse_options({"threshold": "1e-300"}).threshold == 1e-300


def test_a_request_naming_a_model_keeps_the_service_limits(served_model, face_media, tmp_path):
    from mesonet.budget import AnalysisLimits

    limits = AnalysisLimits(max_frame_pixels=100_000)  # the clip's frames are 480 x 360
    folder = tmp_path / "up"
    with TestClient(create_app(served_model, tmp_dir=folder, limits=limits)) as client:
        default = assert_error(post(client, face_media["video"]), 422, "over the 0.1 MP limit")
        picked = post(client, face_media["video"], data={"model": "meso4.df"})
        assert assert_error(picked, 422) == default
        assert post(client, face_media["image"], data={"model": "meso4.df"}).status_code == 200
    assert list(folder.iterdir()) == []


def test_a_served_cards_members_are_named_without_server_paths(tmp_path):
    import json

    from mesonet.models import ModelCard, create_model, save_model

    save_model(create_model("meso4"), tmp_path / "c1.safetensors", ModelCard("m.c1", "meso4"))
    card = {"name": "mine", "arch": "ensemble", "members": [{"model": "c1.safetensors"}]}
    (tmp_path / "mine.json").write_text(json.dumps(card))
    with TestClient(create_app(tmp_path / "mine.json", tmp_dir=tmp_path / "up")) as client:
        served = client.get("/api/v1/models").json()["serving"]["card"]
    assert served["members"] == [{"model": "c1.safetensors"}]
    assert str(tmp_path) not in json.dumps(served)


def test_bad_requests_are_json(client, face_media, uploads):
    assert_error(post(client, face_media["image"], query="?include=everything"), 422, "include")
    boundary = "XyZ"
    part = 'Content-Disposition: form-data; name="frames"\r\n\r\n3\r\n'
    body = f"--{boundary}\r\n{part}--{boundary}--\r\n"
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    assert_error(client.post(DETECT, content=body, headers=headers), 422, "no file")
    truncated = body.replace(f"--{boundary}--\r\n", "")
    assert_error(client.post(DETECT, content=truncated, headers=headers), 400)
    assert_error(client.get("/no/such/page"), 404)
    assert_error(client.get(DETECT), 405)


class BlockingDetector:
    """A stand-in detector whose predict waits until released (for the busy test)."""

    def __init__(self, started: threading.Event, release: threading.Event) -> None:
        self.model_name, self.threshold, self.frames, self.aggregate = "stub", 0.5, 32, "mean"
        self.faces = "none"
        self.started, self.release = started, release

    def predict(self, path, kind=None) -> MediaResult:
        self.started.set()
        assert self.release.wait(10), "never released"
        return MediaResult(path=str(path), kind=kind, status="no_face", model="stub")


def test_saturated_server_answers_503_then_recovers(face_media, tmp_path):
    started, release = threading.Event(), threading.Event()
    folder = tmp_path / "up"
    app = create_app(
        max_in_flight=1,
        queue_timeout_s=0.3,
        detector_factory=lambda: BlockingDetector(started, release),
        tmp_dir=folder,
    )
    with TestClient(app) as client:
        first: dict = {}
        thread = threading.Thread(target=lambda: first.update(r=post(client, face_media["image"])))
        thread.start()
        try:
            assert started.wait(10)
            assert client.get("/healthz").json()["in_flight"] == 1
            t0 = time.monotonic()
            busy = post(client, face_media["image"])
            assert time.monotonic() - t0 < 5
            assert_error(busy, 503, "busy")
            assert busy.headers["retry-after"]
        finally:
            release.set()
            thread.join(10)
        assert first["r"].status_code == 200 and first["r"].json()["model"] == "stub"
        assert post(client, face_media["image"]).status_code == 200  # the slot came back
        assert client.get("/healthz").json()["in_flight"] == 0
    assert list(folder.iterdir()) == []


# --------------------------------------------------------------------------- streaming


def multipart(name: str, data: bytes, boundary: str = "b0undary") -> tuple[bytes, dict]:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def asgi_scope(headers: dict) -> dict:
    """An HTTP POST to the detect endpoint, as an ASGI server hands it to the app."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": DETECT,
        "raw_path": DETECT.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }


def run_asgi(app, body: bytes, headers: dict, chunk: int = 4096, disconnect_after=None):
    """Call the ASGI app directly, feeding the body in chunks; count the chunks it read."""
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    read = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal read
        if disconnect_after is not None and read >= disconnect_after:
            return {"type": "http.disconnect"}
        read += 1
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = asgi_scope(headers)
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, read, len(chunks)


def test_upload_stops_reading_at_the_limit(served_model, tmp_path):
    folder = tmp_path / "up"
    app = create_app(served_model, max_upload_mb=0.05, tmp_dir=folder)  # 51 KB
    body, headers = multipart("big.mp4", bytes(2_000_000))  # no Content-Length: must count
    status, read, total = run_asgi(app, body, headers)
    assert status == 413 and read < 20 < total  # stopped right after ~51 KB, not 2 MB
    assert list(folder.iterdir()) == []


def test_client_disconnect_leaves_no_file(served_model, tmp_path):
    folder = tmp_path / "up"
    app = create_app(served_model, tmp_dir=folder)
    body, headers = multipart("clip.mp4", bytes(100_000))
    status, read, total = run_asgi(app, body, headers, disconnect_after=5)
    assert status == 400 and read == 5 < total
    assert list(folder.iterdir()) == []


def test_receive_upload_collects_fields_and_refuses_a_second_file(tmp_path):
    from starlette.requests import Request

    def request_for(body: bytes, headers: dict) -> Request:
        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {
            "type": "http",
            "method": "POST",
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        }
        return Request(scope, receive)

    body, headers = multipart("a.jpg", b"\xff\xd8\xffdata")
    fields = b'--b0undary\r\nContent-Disposition: form-data; name="frames"\r\n\r\n7\r\n'
    upload = asyncio.run(receive_upload(request_for(fields + body, headers), tmp_path, 1000))
    assert upload.fields == {"frames": "7"} and upload.filename == "a.jpg"
    assert upload.path.read_bytes() == b"\xff\xd8\xffdata" and upload.size == 7
    upload.path.unlink()
    twice = body.replace(b"--b0undary--\r\n", b"") + body
    with pytest.raises(UploadError) as err:
        asyncio.run(receive_upload(request_for(twice, headers), tmp_path, 1000))
    assert err.value.status_code == 422
    assert list(tmp_path.iterdir()) == []


def test_cli_serve_rejects_bad_options():
    from mesonet.cli import app

    result = CliRunner().invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == 2
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "--max-upload-mb" in result.output


# --------------------------------------------------------------------------- hostile clients


def run_asgi_stalling(app, chunks: list[bytes], headers: dict, pause_s: float | None):
    """Call the ASGI app with a body sent as ``chunks``, then nothing (``pause_s`` None) or
    one more empty chunk every ``pause_s``: the status and the seconds it took."""
    sent: list[dict] = []
    read = 0

    async def receive() -> dict:
        nonlocal read
        read += 1
        if read <= len(chunks):
            return {"type": "http.request", "body": chunks[read - 1], "more_body": True}
        if pause_s is None:
            await asyncio.sleep(3600)  # a client that stopped mid-body
        await asyncio.sleep(pause_s)
        return {"type": "http.request", "body": b"x", "more_body": True}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = asgi_scope(headers)
    start = time.monotonic()
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 30))
    start_message = next(m for m in sent if m["type"] == "http.response.start")
    return start_message, time.monotonic() - start


def test_stalled_upload_gets_408_after_the_idle_timeout(served_model, tmp_path):
    folder = tmp_path / "up"
    app = create_app(served_model, tmp_dir=folder, read_idle_s=0.5)
    body, headers = multipart("clip.mp4", bytes(100_000))
    message, seconds = run_asgi_stalling(app, [body[:5000]], headers, pause_s=None)
    assert message["status"] == 408 and 0.4 < seconds < 5
    assert (b"connection", b"close") in message["headers"]
    assert list(folder.iterdir()) == []


def test_trickling_upload_gets_408_after_the_total_timeout(served_model, tmp_path):
    folder = tmp_path / "up"
    app = create_app(served_model, tmp_dir=folder, read_idle_s=0.5, read_total_s=1.0)
    body, headers = multipart("clip.mp4", bytes(100_000))
    message, seconds = run_asgi_stalling(app, [body[:5000]], headers, pause_s=0.05)
    assert message["status"] == 408 and 0.9 < seconds < 5
    assert list(folder.iterdir()) == []


def test_uploads_over_the_cap_get_503_at_once(served_model, tmp_path):
    folder = tmp_path / "up"
    app = create_app(served_model, tmp_dir=folder, read_idle_s=1.0, max_uploads=2)
    body, headers = multipart("clip.mp4", bytes(100_000))

    async def both() -> list[tuple[int, float]]:
        results = []

        async def one(delay: float) -> None:
            await asyncio.sleep(delay)
            start = time.monotonic()
            sent: list[dict] = []
            first = True

            async def receive() -> dict:
                nonlocal first
                if first:
                    first = False
                    return {"type": "http.request", "body": body[:5000], "more_body": True}
                await asyncio.sleep(3600)

            async def send(message: dict) -> None:
                sent.append(message)

            await app(asgi_scope(headers), receive, send)
            status = next(m["status"] for m in sent if m["type"] == "http.response.start")
            results.append((status, time.monotonic() - start))

        await asyncio.gather(one(0), one(0), one(0.2))
        return results

    results = asyncio.run(asyncio.wait_for(both(), 30))
    assert sorted(status for status, _ in results) == [408, 408, 503]
    assert next(seconds for status, seconds in results if status == 503) < 0.5
    assert list(folder.iterdir()) == []


def test_stalled_client_on_a_real_socket_is_answered_and_disconnected(served_model, tmp_path):
    """Through uvicorn: the stalled connection is answered 408 and closed by the server."""
    import socket

    import uvicorn

    app = create_app(served_model, tmp_dir=tmp_path / "up", read_idle_s=0.5)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        body, headers = multipart("clip.mp4", bytes(100_000))
        head = (
            f"POST {DETECT} HTTP/1.1\r\nHost: x\r\nContent-Type: {headers['content-type']}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(head + body[:5000])
            start = time.monotonic()
            answer = b""
            while chunk := sock.recv(65536):  # ends when the server closes the connection
                answer += chunk
            assert time.monotonic() - start < 5
        assert answer.startswith(b"HTTP/1.1 408") and b"stalled" in answer
        assert list((tmp_path / "up").iterdir()) == []
    finally:
        server.should_exit = True
        thread.join(10)


def test_long_boundary_is_400_without_a_server_error(served_model, tmp_path, caplog):
    app = create_app(served_model, tmp_dir=tmp_path / "up")
    body, headers = multipart("a.png", b"\x89PNG\r\n\x1a\n", boundary="b" * 300)
    with caplog.at_level("ERROR"), TestClient(app) as client:
        response = client.post(DETECT, content=body, headers=headers)
    assert_error(response, 400, "boundary")
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_repeated_fields_are_counted_and_reading_stops(served_model, tmp_path):
    folder = tmp_path / "up"
    app = create_app(served_model, tmp_dir=folder)
    part = b'--b0undary\r\nContent-Disposition: form-data; name="frames"\r\n\r\n7\r\n'
    body = part * 300_000 + b"--b0undary--\r\n"  # ~19 MB, under the upload limit
    headers = {"content-type": "multipart/form-data; boundary=b0undary"}
    status, read, total = run_asgi(app, body, headers)
    assert status == 422 and read < 5 < total
    assert list(folder.iterdir()) == []


def test_security_headers_on_page_and_api(client):
    for path in ("/", "/docs", "/static/app.js", "/healthz", "/api/v1/models"):
        headers = client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        policy = headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'self'" in policy, path
        assert "unsafe-inline" not in policy
    assert client.post(DETECT).headers["x-frame-options"] == "DENY"


def test_cli_serve_on_a_port_in_use_says_so_in_one_line(capsys, monkeypatch):
    """Exit code 2 and one line, before the banner and before loading the model."""
    import socket

    from mesonet.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setattr("sys.argv", ["mesonet", "serve", "--port", str(port)])
        with pytest.raises(SystemExit) as exit_:
            main()
    captured = capsys.readouterr()
    assert exit_.value.code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and "already in use" in captured.err
    assert "serving" not in captured.err
