"""The loom in a real headless Chromium, against a real server process on a free port.

Needs Chromium (Debian: ``apt-get install -y chromium``; elsewhere set MYOPIA_CHROMIUM to
a Chromium or Chrome binary) and the ``playwright`` package (in the ``test`` extra). A
missing browser fails the test with that instruction rather than skipping it.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from myopia.loom.store import LoomStore

SERVER = textwrap.dedent(
    """
    import sys
    from myopia.loom.demo_backend import DemoBackend
    from myopia.loom.server import serve

    serve(sys.argv[1], DemoBackend(), port=int(sys.argv[2]))
    """
)
INSTALL = (
    "the loom's browser test needs Chromium: install it with `apt-get install -y chromium` "
    "(Debian/Ubuntu) or point MYOPIA_CHROMIUM at a Chromium/Chrome binary, and install "
    "playwright with `pip install -e '.[test]'`"
)


def chromium() -> str:
    for candidate in (
        os.environ.get("MYOPIA_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(INSTALL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """(url, tree file) of a real loom server process, polled until it answers."""
    path = tmp_path / "browser.sqlite"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(path), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                if httpx.get(url + "api/tree", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the loom server did not answer in 30 s"
                time.sleep(0.1)
        yield url, path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def browser():
    executable = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(INSTALL)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


def open_loom(browser, url):
    # The page's CSP forbids eval; Playwright's wait_for_function evaluates its predicate
    # with eval, so the test's own scripts are let through (the page's are not changed).
    page = browser.new_page(bypass_csp=True)
    page.set_default_timeout(15_000)
    page.goto(url)
    page.wait_for_selector("body.ready")
    return page


def rows(page):
    return page.locator("#tree .row").count()


def focused_text(page):
    return page.locator("#focus-text").inner_text()


def save_edit(page, text):
    page.keyboard.press("e")
    page.fill("#editor-text", text)
    page.keyboard.press("Control+Enter")
    page.wait_for_function("t => document.getElementById('focus-text').textContent === t", arg=text)


def test_grow_branch_edit_prune_then_reload_finds_everything(server, browser):
    url, path = server
    page = open_loom(browser, url)
    assert "press e to write a prompt" in focused_text(page)

    # Create the tree: write the prompt, generate two children.
    save_edit(page, "The old loom")
    page.fill("#n", "2")
    page.fill("#max-tokens", "6")
    page.click("#node-info")  # out of the input: keys typed there are not shortcuts
    page.keyboard.press("g")
    page.wait_for_function("document.querySelectorAll('#tree .row').length === 3")
    tokens = page.locator("#focus-text .token")
    assert tokens.count() == 6  # the first child is focused, shown token by token
    first_child_text = focused_text(page)

    # Branch from an alternative of the third token, without generating on.
    tokens.nth(2).click()
    assert page.locator("#alternatives").is_visible()
    page.uncheck("#branch-generate")
    alternatives = page.locator("#alternatives-list tr")
    pick = next(
        i for i in range(alternatives.count()) if "chosen" not in alternatives.nth(i).inner_text()
    )
    alternative_text = alternatives.nth(pick).locator("td").first.inner_text()
    prefix = "".join(tokens.nth(i).inner_text() for i in range(2))
    expected_branch = prefix + json.loads(alternative_text)
    alternatives.nth(pick).locator("button.branch").click()
    page.wait_for_function("document.querySelectorAll('#tree .row').length === 4")
    assert focused_text(page) == expected_branch
    assert page.locator("#focus-text .token").count() == 3

    # Edit the branch by hand; its old text goes to its history.
    save_edit(page, " woven by hand")
    assert page.locator("#history-count").inner_text() == "1"

    # Keyboard: up to the root, down to the first child, next sibling, prune it.
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("document.getElementById('focus-text').textContent === 'The old loom'")
    page.keyboard.press("l")
    page.keyboard.press("j")
    page.wait_for_function("document.querySelector('#tree .row.focused') !== null")
    second_child_text = focused_text(page)
    assert second_child_text not in (first_child_text, " woven by hand")
    page.keyboard.press("b")
    page.wait_for_selector("#tree .row.focused.bookmarked")
    page.keyboard.press("p")
    page.wait_for_function("document.querySelectorAll('#tree .row').length === 3")
    assert focused_text(page) == "The old loom"  # pruning moved the focus to the parent

    # Reload: everything is in the file, the pruned node behind the toggle.
    page.reload()
    page.wait_for_selector("body.ready")
    labels = page.locator("#tree .row").all_inner_texts()
    assert len(labels) == 3 and labels[0] == "The old loom ✎"  # edited from empty
    assert any("woven by hand" in label for label in labels)
    page.check("#show-pruned")
    assert rows(page) == 4
    pruned = page.locator("#tree .row.pruned")
    assert pruned.count() == 1 and "★" in pruned.inner_text()
    with LoomStore(path) as store:
        texts = {n.text for n in store.nodes()}
        assert {"The old loom", first_child_text, " woven by hand", second_child_text} <= texts
        assert sum(n.hidden for n in store.nodes()) == 1


def test_a_second_tab_writing_a_changed_node_is_told_to_reload(server, browser):
    url, _ = server
    first = open_loom(browser, url)
    second = open_loom(browser, url)
    save_edit(first, "Written in the first tab")
    second.keyboard.press("e")
    second.fill("#editor-text", "Written in the second tab")
    second.keyboard.press("Control+Enter")
    message = second.locator("#message")
    message.wait_for(state="visible")
    assert "changed in another tab" in message.inner_text()
    assert "Reload the page" in message.inner_text()
    assert second.locator("#reload").is_visible()
    second.click("#reload")
    second.wait_for_selector("body.ready")
    assert focused_text(second) == "Written in the first tab"  # nothing silently lost
