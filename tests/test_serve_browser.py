"""The page end to end in headless Chromium: upload an image and a video, see the verdict.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and Selenium;
skipped cleanly without them. Set ``MESONET_SHOTS=/some/folder`` to keep the screenshots.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from mesonet.serve import create_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="chromium and chromium-driver are not installed (apt-get install chromium "
    "chromium-driver)",
)
webdriver = pytest.importorskip("selenium.webdriver")
uvicorn = pytest.importorskip("uvicorn")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

PHONE = (375, 812)
DESKTOP = (1280, 900)


@pytest.fixture(scope="module")
def server(served_model, tmp_path_factory):
    """The app under uvicorn on a free loopback port, in a background thread."""
    uploads = tmp_path_factory.mktemp("browser-uploads")
    app = create_app(served_model, tmp_dir=uploads)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()
    assert list(uploads.iterdir()) == []


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium driven through Debian's chromedriver (no downloads)."""
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("MESONET_SHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("shots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def upload(driver, base: str, path: Path, size: tuple[int, int]) -> None:
    """Open the page at ``size``, pick ``path`` and wait for a verdict."""
    driver.set_window_size(*size)
    driver.get(base + "/")
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: d.find_element(By.ID, "model-name").text not in ("", "…"))
    driver.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(driver, 180).until(
        lambda d: d.find_element(By.ID, "verdict-text").text.strip() != ""
    )


def wait_for_boxes(driver) -> int:
    """Wait until the canvas is drawn; the number of face boxes on it."""
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.ID, "canvas").get_attribute("data-drawn") == "1"
    )
    return int(driver.find_element(By.ID, "box-count").text)


def screenshot(driver, folder: Path, name: str) -> Path:
    """The whole page: the window is stretched to the document's height first."""
    width = driver.execute_script("return window.innerWidth")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(driver.get_window_size()["width"], max(height + 140, 400))
    time.sleep(0.3)  # let the timeline redraw after the resize
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 1000 and width > 0
    return path


def csp_violations(driver) -> list[str]:
    """Console messages of the page that say the Content-Security-Policy blocked something."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]


def verdict(driver) -> str:
    return driver.find_element(By.ID, "verdict-text").text


def no_horizontal_scroll(driver) -> bool:
    return driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1"
    )


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_image_upload_shows_verdict_and_boxes(browser, server, face_media, shots, size):
    upload(browser, server, face_media["image"], size)
    assert "fake probability" in verdict(browser)
    assert verdict(browser).startswith(("Likely forged", "Likely real", "Uncertain"))
    assert wait_for_boxes(browser) == 1
    assert browser.find_element(By.ID, "canvas").get_attribute("data-source") == "upload"
    assert browser.find_element(By.ID, "timeline-box").get_attribute("hidden") is not None
    assert len(browser.find_elements(By.CSS_SELECTOR, "#gallery img")) == 1
    assert no_horizontal_scroll(browser)
    assert csp_violations(browser) == []
    name = "desktop" if size == DESKTOP else "phone"
    screenshot(browser, shots, f"image-{name}")


@pytest.mark.parametrize(
    ("size", "key"), [(DESKTOP, "webm"), (PHONE, "webm"), (DESKTOP, "video")], ids=str
)
def test_video_upload_shows_frame_timeline_and_gallery(
    browser, server, face_media, shots, size, key
):
    upload(browser, server, face_media[key], size)
    assert "fake probability" in verdict(browser)
    assert wait_for_boxes(browser) >= 1  # the most suspicious frame, decoded or the server's
    caption = browser.find_element(By.ID, "view-caption").text
    assert caption.startswith("Frame at")
    source = browser.find_element(By.ID, "canvas").get_attribute("data-source")
    if key == "webm":  # VP8 plays in Chromium: the frame comes from the upload itself
        assert source == "upload"
    else:  # mp4v (MPEG-4 part 2) may not: then the server's JPEG of that frame is shown
        assert source in ("upload", "server")
    svg = browser.find_element(By.CSS_SELECTOR, "#timeline svg")
    assert len(svg.find_elements(By.CSS_SELECTOR, "polyline.track.decisive")) == 1
    assert "decides" in browser.find_element(By.ID, "timeline-legend").text
    assert "decides" in browser.find_element(By.ID, "verdict-sub").text
    assert len(svg.find_elements(By.CSS_SELECTOR, "circle.point")) >= 10  # 15 frames, 1 face
    assert svg.find_elements(By.CSS_SELECTOR, "line.threshold")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#gallery img")) >= 10
    assert no_horizontal_scroll(browser)
    assert csp_violations(browser) == []  # the page lives within its own policy
    if key == "webm":
        name = "desktop" if size == DESKTOP else "phone"
        screenshot(browser, shots, f"video-{name}")


def test_the_model_picker_changes_the_answer(browser, server, face_media):
    """The picker lists the bundled models, the served one first and preselected; picking
    another re-analyses the file with it, and the verdict is that model's."""
    from selenium.webdriver.support.ui import Select

    from mesonet.models import bundled_models
    from mesonet.pipeline import Detector
    from mesonet.pipeline.temporal import bundled_video_models

    upload(browser, server, face_media["image"], DESKTOP)
    picker = Select(browser.find_element(By.ID, "opt-model"))
    names = [o.get_attribute("value") for o in picker.options]
    assert set(names) == set(bundled_models()) - set(bundled_video_models())  # frame models
    served = picker.first_selected_option.get_attribute("value")
    assert served == names[0] == browser.find_element(By.ID, "model-name").text
    box = browser.find_element(By.ID, "verdict")
    first = (box.get_attribute("data-model"), verdict(browser))
    # the bundled model whose score differs most from the served one's
    scores = {n: Detector(n).predict(face_media["image"]).fake_probability for n in names}
    other = max(names, key=lambda n: abs(scores[n] - scores[served]))
    assert abs(scores[other] - scores[served]) > 0.01
    picker.select_by_value(other)
    WebDriverWait(browser, 120).until(
        lambda d: d.find_element(By.ID, "verdict").get_attribute("data-model") == other
    )
    second = verdict(browser)
    assert first[0] == served and second != first[1]
    assert f"{round(scores[other] * 100)}% fake probability" in second
    assert browser.find_element(By.ID, "model-about").text.startswith("ROC AUC")
    # the models auto runs in int8 say so beside their (fp32) figures
    for name, int8 in (("ensemble.lite0-f2f", True), ("meso4.dfdc", False)):
        picker.select_by_value(name)
        WebDriverWait(browser, 120).until(
            lambda d, n=name: d.find_element(By.ID, "verdict").get_attribute("data-model") == n
        )
        about = browser.find_element(By.ID, "model-about").text
        assert ("scored in int8 (AUC within 0.005 of these)" in about) is int8, about


def test_not_media_shows_the_error(browser, server, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a picture")
    upload(browser, server, path, DESKTOP)
    assert verdict(browser) == "Could not analyse this file"
    assert "not an image or video" in browser.find_element(By.ID, "verdict-sub").text


def test_idle_page_shows_no_empty_result_and_has_a_favicon(browser, server):
    browser.set_window_size(*DESKTOP)
    browser.get(server + "/")
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.ID, "model-name").text not in ("", "…")
    )
    for hidden in ("result", "status", "timeline-box", "view-box"):
        element = browser.find_element(By.ID, hidden)
        assert not element.is_displayed(), hidden
        assert element.value_of_css_property("display") == "none", hidden
    assert browser.find_element(By.ID, "file").is_enabled()
    icon = browser.find_element(By.CSS_SELECTOR, "link[rel=icon]").get_attribute("href")
    loaded = browser.execute_async_script(
        "const done = arguments[1]; const img = new Image();"
        "img.onload = () => done(img.naturalWidth); img.onerror = () => done(0);"
        "img.src = arguments[0];",
        icon,
    )
    assert loaded > 0


def test_annotated_video_plays_in_the_browser(browser, annotated_video, tmp_path):
    """The annotated MP4 loads in a <video> element: Chromium can decode its frames."""
    page = tmp_path / "player.html"
    page.write_text(f'<video id="v" src="{annotated_video.as_uri()}" preload="auto" muted></video>')
    browser.get(page.as_uri())
    state = "return [v.readyState, v.error ? v.error.message : null, v.videoWidth]"
    script = "const v = document.getElementById('v'); " + state
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script(script)[0] >= 2 or d.execute_script(script)[1]
    )
    ready, error, width = browser.execute_script(script)
    assert error is None and ready >= 2 and width > 0


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_explain_toggle_shows_each_faces_map_and_says_where(
    browser, server, face_media, shots, size
):
    """With Explain on, the answer carries each face's evidence map (explain=true): the page
    shows it over the face crop and says in words where the evidence is; off again, the file
    is analysed again without maps."""
    browser.set_window_size(*size)
    browser.get(server + "/")
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.ID, "model-name").text not in ("", "…")
    )
    toggle = browser.find_element(By.ID, "opt-explain")
    assert toggle.is_displayed() and not toggle.is_selected()
    toggle.click()
    browser.find_element(By.ID, "file").send_keys(str(face_media["image"]))
    WebDriverWait(browser, 180).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#explain img"))
    (img,) = browser.find_elements(By.CSS_SELECTOR, "#explain img")
    assert img.get_attribute("src").startswith("data:image/png;base64,")
    WebDriverWait(browser, 10).until(
        lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
    )
    assert browser.find_element(By.ID, "explain-box").is_displayed()
    text = browser.find_element(By.ID, "explain-text").text
    assert "lowers the score by" in text, text
    real = browser.find_element(By.ID, "verdict-text").text.startswith("Likely real")
    assert ("looks real, what evidence of forgery there is lies mostly" in text) is real, text
    caption = browser.find_element(By.CSS_SELECTOR, "#explain figcaption").text
    assert caption.split(" · ")[0] in text  # the region named in words, under the map too
    assert no_horizontal_scroll(browser)
    assert csp_violations(browser) == []
    screenshot(browser, shots, "explain-" + ("desktop" if size == DESKTOP else "phone"))
    browser.find_element(By.ID, "opt-explain").click()  # off: analysed again, no maps
    WebDriverWait(browser, 180).until(
        lambda d: (
            not d.find_element(By.ID, "explain-box").is_displayed()
            and d.find_element(By.ID, "verdict-text").text.strip() != ""
        )
    )
    assert browser.find_elements(By.CSS_SELECTOR, "#explain img") == []
