"""Screenshots of the loom's views for the README, taken in headless Chromium.

Serves a tree grown with the demo backend (no model) from a real server process, drives
the page with Playwright by keyboard, and writes small PNGs to ``docs/loom/``:

    python bench/loom_screenshots.py            # needs chromium (or MYOPIA_CHROMIUM)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from myopia.loom import jsontext

OUT = Path(__file__).resolve().parent.parent / "docs" / "loom"
SERVER = (
    "import sys\n"
    "from myopia.loom.demo_backend import DemoBackend\n"
    "from myopia.loom.server import serve\n"
    "serve(sys.argv[1], DemoBackend(delay_s=0.05), port=int(sys.argv[2]))\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(path), str(port)])
    url = f"http://127.0.0.1:{port}/"
    for _ in range(300):
        try:
            if httpx.get(url + "api/view", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the loom server did not start")


def wait_idle(page) -> None:
    page.wait_for_function("!document.body.classList.contains('busy')")
    page.wait_for_timeout(300)


def shoot(page, name: str) -> None:
    page.screenshot(path=str(OUT / f"{name}.png"))
    print(OUT / f"{name}.png")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="loom-shots-"))
    proc, url = start(folder / "story.sqlite")
    chromium = os.environ.get("MYOPIA_CHROMIUM", "/usr/bin/chromium")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True)
            page = browser.new_page(viewport={"width": 1100, "height": 640}, bypass_csp=True)
            page.goto(url)
            page.wait_for_selector("body.ready")
            page.keyboard.press("e")
            page.fill("#editor-text", "The weaver said to the river")
            page.keyboard.press("Control+Enter")
            wait_idle(page)
            page.fill("#n", "3")
            page.fill("#max-tokens", "12")
            page.keyboard.press("Escape")
            page.keyboard.press("g")
            page.wait_for_function("document.querySelectorAll('#stream .token').length >= 8")
            shoot(page, "streaming")
            page.wait_for_function("document.querySelectorAll('#tree .row').length === 4")
            wait_idle(page)
            page.keyboard.press("b")
            wait_idle(page)
            for _ in range(3):
                page.keyboard.press("]")
            wait_idle(page)
            shoot(page, "alternatives")
            page.keyboard.press("2")
            page.wait_for_function("document.querySelectorAll('#tree .row').length >= 6")
            wait_idle(page)
            page.keyboard.press("h")
            wait_idle(page)
            page.keyboard.press("v")
            page.wait_for_selector("#compare:not([hidden])")
            wait_idle(page)
            shoot(page, "compare")
            page.keyboard.press("v")
            page.keyboard.press("?")
            shoot(page, "help")
            page.keyboard.press("Escape")

            other = browser.new_page(viewport={"width": 1100, "height": 640}, bypass_csp=True)
            other.goto(url)
            other.wait_for_selector("body.ready")
            other.keyboard.press("e")
            other.fill("#editor-text", "Changed in another tab.")
            other.keyboard.press("Control+Enter")
            wait_idle(other)
            page.keyboard.press("e")
            page.fill("#editor-text", "My own long edit, typed before the other tab saved.")
            page.keyboard.press("Control+Enter")
            page.wait_for_selector("#conflict:not([hidden])")
            shoot(page, "conflict")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    # A linear story 5,000 paragraphs deep, imported: the outline window and depths.
    root = node = {"id": "p0", "text": "Chapter one.", "children": []}
    for i in range(1, 5000):
        node["children"].append({"id": f"p{i}", "text": f" Paragraph {i}.", "children": []})
        node = node["children"][0]
    story = folder / "deep.json"
    story.write_text(jsontext.dumps({"root": root, "selected_node_id": "p4999"}))
    proc, url = start(folder / "deep.sqlite")
    try:
        body = story.read_bytes()
        httpx.post(url + "api/import", content=body, headers={"Content-Type": "application/json"})
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True)
            page = browser.new_page(viewport={"width": 1100, "height": 640}, bypass_csp=True)
            page.goto(url)
            page.wait_for_selector("body.ready")
            page.keyboard.press("r")
            wait_idle(page)
            shoot(page, "deep-story")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
