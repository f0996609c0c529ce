"""A screenshot of the web page after uploading one file (the README's and docs' picture).

Serves the app (``mesonet serve``'s, with MODEL or the bundled default) on a free loopback
port, opens it in Debian's headless Chromium (``apt-get install chromium chromium-driver``),
uploads FILE, waits for the verdict and saves the whole page as a PNG:

    python tools/page_screenshot.py src/mesonet/samples/df/df01254.jpg docs/images/web-result.png

With ``--explain`` the page's Explain toggle is turned on first and only its panel (the
evidence maps and where they point, in words) is saved:

    python tools/page_screenshot.py src/mesonet/samples/df/df00204.jpg \
        docs/images/web-explain.png --explain
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from mesonet.serve import create_app


def serve(model: str | None, uploads: Path) -> tuple[uvicorn.Server, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    app = create_app(model, tmp_dir=uploads)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    deadline = time.monotonic() + 120
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("the app did not start in 120 s")
        time.sleep(0.1)
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}"


def browser(profile: Path, width: int) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--hide-scrollbars", "--no-first-run", f"--user-data-dir={profile}",
                 f"--window-size={width},900"):  # fmt: skip
        options.add_argument(flag)
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="the image or video to upload")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--model", default=None, help="default: the bundled default")
    parser.add_argument("--width", type=int, default=1100, help="window width, CSS pixels")
    parser.add_argument("--explain", action="store_true", help="the Explain panel only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server, base = serve(args.model, Path(tmp) / "uploads")
        driver = browser(Path(tmp) / "profile", args.width)
        try:
            driver.get(base + "/")
            WebDriverWait(driver, 60).until(
                lambda d: d.find_element(By.ID, "model-name").text not in ("", "…")
            )
            if args.explain:
                driver.find_element(By.ID, "opt-explain").click()
            driver.find_element(By.ID, "file").send_keys(str(args.file.resolve()))
            WebDriverWait(driver, 300).until(
                lambda d: d.find_element(By.ID, "verdict-text").text.strip() != ""
            )
            if args.explain:
                panel = driver.find_element(By.ID, "explain-box")
                WebDriverWait(driver, 60).until(lambda d: panel.is_displayed())
                time.sleep(0.5)  # the maps decode
                args.out.parent.mkdir(parents=True, exist_ok=True)
                panel.screenshot(str(args.out))
                print(f"{args.out}: {driver.find_element(By.ID, 'explain-text').text}")
                return
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(args.width, height + 140)
            time.sleep(0.5)  # the canvas redraws after the resize
            args.out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.out))
            print(f"{args.out}: {driver.find_element(By.ID, 'verdict-text').text}")
        finally:
            driver.quit()
            server.should_exit = True


if __name__ == "__main__":
    main()
