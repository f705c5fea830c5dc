"""The loom in a real headless Chromium, against a real server process on a free port.

Needs Chromium (Debian: ``apt-get install -y chromium``; elsewhere set MYOPIA_CHROMIUM to
a Chromium or Chrome binary) and the ``playwright`` package (in the ``test`` extra). A
missing browser fails the test with that instruction rather than skipping it.
"""

import contextlib
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
    import json, sys
    from myopia.loom.demo_backend import VOCABULARY, DemoBackend
    from myopia.loom.server import serve

    vocabulary = tuple(json.loads(sys.argv[4])) if len(sys.argv) > 4 else VOCABULARY
    backend = DemoBackend(delay_s=float(sys.argv[3]), vocabulary=vocabulary)
    serve(sys.argv[1], backend, port=int(sys.argv[2]))
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


@contextlib.contextmanager
def running_server(tmp_path, vocabulary=None):
    """(url, tree file) of a real loom server process, polled until it answers."""
    path = tmp_path / "browser.sqlite"
    port = free_port()
    extra = [json.dumps(vocabulary)] if vocabulary is not None else []
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(path), str(port), "0.01", *extra],  # 10 ms/token
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
def server(tmp_path):
    with running_server(tmp_path) as answer:
        yield answer


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
    return page.locator("#tree .row:not(.more)").count()


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
    alternative_text = alternatives.nth(pick).locator("td").nth(1).inner_text()
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
    page.wait_for_function(
        "t => !['The old loom', t].includes(document.getElementById('focus-text').textContent)",
        arg=first_child_text,
    )
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
    labels = page.locator("#tree .row .label").all_inner_texts()
    assert len(labels) == 3 and labels[0] == "The old loom ✎"  # edited from empty
    assert any("woven by hand" in label for label in labels)
    page.check("#show-pruned")
    page.wait_for_function("document.querySelectorAll('#tree .row').length === 4")
    pruned = page.locator("#tree .row.pruned")
    assert pruned.count() == 1 and "★" in pruned.inner_text()
    with LoomStore(path) as store:
        texts = {n.text for n in store.nodes()}
        assert {"The old loom", first_child_text, " woven by hand", second_child_text} <= texts
        assert sum(n.hidden for n in store.nodes()) == 1


def test_tokens_with_nothing_to_see_can_still_be_clicked(tmp_path, browser):
    # A bare line break or an empty string has no width of its own; without a marker
    # Chromium reports such a span as invisible and no click reaches it.
    with running_server(tmp_path, vocabulary=["\n", "", "\n\n"]) as (url, path):
        page = open_loom(browser, url)
        save_edit(page, "Blank")
        page.fill("#n", "1")
        page.fill("#max-tokens", "8")
        page.click("#node-info")
        page.keyboard.press("g")
        page.wait_for_function("document.querySelectorAll('#tree .row').length === 2")
        tokens = page.locator("#focus-text .token")
        assert tokens.count() == 8
        with LoomStore(path) as store:
            generated = next(n for n in store.nodes() if n.parent is not None)
        # The markers are drawn outside the text: the spans still spell the node.
        assert page.locator("#focus-text").text_content() == generated.text
        for i in range(tokens.count()):
            tokens.nth(i).click()
            assert page.locator(f'#focus-text .token.selected[data-index="{i}"]').count() == 1
            assert page.locator("#alternatives").is_visible()


def test_a_409_keeps_the_draft_beside_the_newer_version(server, browser):
    url, _ = server
    first = open_loom(browser, url)
    second = open_loom(browser, url)
    save_edit(first, "Written in the first tab")
    second.keyboard.press("e")
    second.fill("#editor-text", "Written in the second tab")
    second.keyboard.press("Control+Enter")
    second.locator("#conflict").wait_for(state="visible")
    # Nothing typed is lost: the editor stays open with the draft, the newer text beside.
    assert second.locator("#editor-text").input_value() == "Written in the second tab"
    assert second.locator("#conflict-text").inner_text() == "Written in the first tab"
    assert "version 2" in second.locator("#conflict-title").inner_text()
    # A reload keeps the draft too (localStorage), and e reopens it.
    second.reload()
    second.wait_for_selector("body.ready")
    second.keyboard.press("e")
    assert second.locator("#editor-text").input_value() == "Written in the second tab"
    assert "draft" in second.locator("#editor-title").inner_text()
    second.fill("#editor-text", "Both tabs: first, then second")
    second.keyboard.press("Control+Enter")
    second.wait_for_function(
        "document.getElementById('focus-text').textContent === 'Both tabs: first, then second'"
    )
    # The first tab follows the change without a reload (it polls what changed).
    first.wait_for_function(
        "document.getElementById('focus-text').textContent === 'Both tabs: first, then second'"
    )

    # Split at the editor's caret (Alt+S), merge back (m), restore an older version.
    second.keyboard.press("e")
    second.evaluate("document.getElementById('editor-text').setSelectionRange(10, 10)")
    second.keyboard.press("Alt+s")
    second.wait_for_function("document.querySelectorAll('#tree .row').length === 2")
    assert focused_text(second) == "Both tabs:"
    second.keyboard.press("m")
    second.wait_for_function("document.querySelectorAll('#tree .row').length === 1")
    assert focused_text(second) == "Both tabs: first, then second"
    second.keyboard.press("y")
    second.locator("#history-list li", has_text="version 2,").locator("button.restore").click()
    second.wait_for_function(
        "document.getElementById('focus-text').textContent === 'Written in the first tab'"
    )


def test_keyboard_only_stream_cancel_branch_collapse_hoist_search_help(server, browser):
    url, path = server
    page = open_loom(browser, url)
    save_edit(page, "Keys only")
    page.fill("#n", "2")
    page.fill("#max-tokens", "400")
    page.keyboard.press("Escape")  # leaves the input: keys are shortcuts again
    assert page.evaluate("document.activeElement === document.body")
    page.keyboard.press("g")
    page.wait_for_function("document.querySelectorAll('#stream .token').length >= 5")
    page.keyboard.press("Escape")  # cancel: what was streamed is kept, marked
    page.wait_for_function(
        "document.getElementById('message-text').textContent.includes('cancelled')"
    )
    page.wait_for_function(
        "document.getElementById('node-info').textContent.includes('cancelled while generating')"
    )
    with LoomStore(path) as store:
        [child] = store.children(store.root_id)  # the second row was never begun
        assert child.generation["finish_reason"] == "cancelled" and 5 <= len(child.tokens) < 400

    # Branch from an alternative with the keyboard: ] ] ] selects token 3, a digit branches
    # (and generates on, 2 children of 3 tokens).
    page.fill("#max-tokens", "3")
    page.keyboard.press("Escape")
    for _ in range(3):
        page.keyboard.press("]")
    page.wait_for_selector("#focus-text .token.selected[data-index='2']")
    alternatives = page.locator("#alternatives-list tr")
    pick = next(
        i for i in range(alternatives.count()) if "chosen" not in alternatives.nth(i).inner_text()
    )
    page.keyboard.press(str(pick + 1))
    page.wait_for_function("document.querySelectorAll('#tree .row').length === 5")
    with LoomStore(path) as store:
        [_, branch] = store.children(store.root_id)
        assert len(branch.tokens) == 3 and branch.tokens[:2] == child.tokens[:2]
        assert branch.generation["branched_from"]["alternative"] == pick
        generated = store.children(branch.id)

    # Compare the two generated siblings (v): side by side with their log-probabilities.
    page.keyboard.press("v")
    page.wait_for_selector("#compare:not([hidden]) .compare-column")
    heads = page.locator("#compare .compare-head").all_inner_texts()
    totals = [sum(t["logprob"] for t in g.tokens) for g in generated]
    assert [h.split(" (")[0] for h in heads] == [f"log p = {t:.2f}" for t in totals]
    page.keyboard.press("v")

    # Collapse the root (c): its subtree leaves the outline; hoist (H) at the branch.
    page.keyboard.press("h")
    page.keyboard.press("h")
    page.wait_for_function(
        "document.querySelector('#tree .row.focused .depth').textContent === '0'"
    )
    page.keyboard.press("c")
    page.wait_for_function("document.querySelectorAll('#tree .row').length === 1")
    page.keyboard.press("c")
    page.wait_for_function("document.querySelectorAll('#tree .row').length === 5")
    page.keyboard.press("l")
    page.wait_for_function(
        "document.querySelector('#tree .row.focused .depth').textContent === '1'"
    )
    page.keyboard.press("H")
    page.wait_for_function("document.querySelectorAll('#tree .row').length === 3")
    assert page.locator("#hoist-info").is_visible()
    page.keyboard.press("H")
    page.wait_for_function("document.querySelectorAll('#tree .row').length === 5")

    # Search: / focuses the box, Enter searches, Tab reaches a result, Enter jumps there.
    page.keyboard.press("/")
    page.keyboard.type("Keys")
    page.keyboard.press("Enter")
    page.wait_for_selector("#search-results button.jump")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('focus-text').textContent === 'Keys only'")

    # The help overlay lists every key.
    page.keyboard.press("Escape")
    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    listed = page.locator("#help-list").inner_text()
    for key in ("g", "H", "/", "[", "v", "r", "d", "s", "m", "t", "x", "i"):
        assert f"{key}\t" in listed or f"{key} " in listed, key
    page.keyboard.press("Escape")
    assert not page.locator("#help").is_visible()


def test_a_5000_deep_story_imported_from_the_page_is_navigable(server, browser, tmp_path):
    url, _ = server
    root = node = {"id": "n0", "text": "Chapter one.", "children": []}
    for i in range(1, 5000):
        node["children"].append({"id": f"n{i}", "text": f" Paragraph {i}.", "children": []})
        node = node["children"][0]
    source = tmp_path / "story.json"
    from myopia.loom import jsontext

    source.write_text(jsontext.dumps({"root": root, "selected_node_id": "n4999"}))
    page = open_loom(browser, url)
    page.keyboard.press("i")  # the file chooser, by keyboard
    page.set_input_files("#import-file", str(source))
    page.wait_for_function(
        "document.querySelector('#tree .row.focused .depth')?.textContent === '4999'"
    )
    assert rows(page) <= 100  # a window of the outline, not 5,000 rows
    assert page.locator("#tree .row.more").count() == 1  # "more above"
    indents = page.eval_on_selector_all(
        "#tree .row .twisty", "spans => spans.map(s => parseFloat(s.style.marginLeft))"
    )
    assert max(indents) <= 0.7 * 8  # indentation is capped; the number shows depth
    assert focused_text(page) == " Paragraph 4999."
    assert page.locator("#branch-text .segment").count() == 5000
    page.keyboard.press("h")
    page.wait_for_function(
        "document.querySelector('#tree .row.focused .depth').textContent === '4998'"
    )
    page.keyboard.press("PageUp")
    page.wait_for_function(
        "Number(document.querySelector('#tree .row.focused .depth').textContent) < 4990"
    )


ROW_DEPTHS = (
    "[...document.querySelectorAll('#tree .row:not(.more) .depth')].map(d => +d.textContent)"
)
TO_BOTTOM = "const p = document.getElementById('tree-pane'); p.scrollTop = p.scrollHeight"


def test_scrolling_the_outline_loads_more_rows_without_moving_the_focus(server, browser):
    url, _ = server
    root = node = {"id": "n0", "text": "Chapter one.", "children": []}
    for i in range(1, 5000):
        node["children"].append({"id": f"n{i}", "text": f" Paragraph {i}.", "children": []})
        node = node["children"][0]
    from myopia.loom import jsontext

    body = jsontext.dumps({"root": root, "selected_node_id": "n0"})
    imported = httpx.post(url + "api/import", content=body, timeout=60,
                          headers={"Content-Type": "application/json"})  # fmt: skip
    assert imported.status_code == 200, imported.text
    page = open_loom(browser, url)
    views = []
    page.on("request", lambda r: views.append(r.url) if "/api/view" in r.url else None)
    assert page.evaluate(ROW_DEPTHS) == list(range(61))  # the focus (the root), 60 below

    # The wheel at the bottom of the pane loads the next rows, again and again.
    page.hover("#tree .row.focused")
    for expected in (121, 181):
        page.mouse.wheel(0, 20_000)
        page.wait_for_function(f"{ROW_DEPTHS}.length === {expected}")
    assert page.evaluate(ROW_DEPTHS) == list(range(181))
    # Scrolling (the scrollbar, the keyboard in the pane) does too; the window is capped
    # at 600 rows, the far end dropped and marked "more above".
    for _ in range(10):
        last = page.evaluate(ROW_DEPTHS)[-1]
        page.evaluate(TO_BOTTOM)
        page.wait_for_function(f"{ROW_DEPTHS}.pop() > {last}")
    shown = page.evaluate(ROW_DEPTHS)
    assert shown == list(range(181, 781))
    assert page.locator("#tree .row.more").first.inner_text().startswith("… more above")
    # Back up: the rows above come back, and the row that was at the top stays in place
    # (the pane scrolls down by the 60 rows put above it).
    page.evaluate("document.getElementById('tree-pane').scrollTop = 0")
    page.wait_for_function(f"{ROW_DEPTHS}[0] < 181")
    assert page.evaluate(ROW_DEPTHS) == list(range(121, 721))
    row_height = page.locator("#tree .row[data-id='n181']").bounding_box()["height"]
    scrolled = page.evaluate("document.getElementById('tree-pane').scrollTop")
    assert 59 * row_height <= scrolled <= 62 * row_height
    # None of this moved the focus or reloaded the view.
    assert views == [] and focused_text(page) == "Chapter one."
    assert page.locator("#tree .row.focused").count() == 0  # the root is out of the window
