"""The loom's HTTP API: FastAPI's TestClient, and a real server process killed mid-generation."""

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from myopia.errors import MyopiaError
from myopia.loom.app import LOOPBACK_HOSTS, MAX_BODY_BYTES, create_app
from myopia.loom.demo_backend import DemoBackend
from myopia.loom.store import MAX_TEXT_CHARS, LoomStore


@pytest.fixture
def store(tmp_path):
    with LoomStore(tmp_path / "tree.sqlite") as s:
        yield s


@pytest.fixture
def client(store):
    return TestClient(create_app(store, DemoBackend()))


def tree(client):
    return client.get("/api/tree").json()


def node(client, node_id):
    response = client.get(f"/api/nodes/{node_id}")
    assert response.status_code == 200, response.text
    return response.json()


def start_tree(client, text="Once upon a time"):
    root = tree(client)["nodes"][0]
    response = client.put(f"/api/nodes/{root['id']}/text", json={"version": 1, "text": text})
    assert response.status_code == 200, response.text
    return response.json()


def generate(client, node_id, version, **settings):
    body = {"version": version, "n": 3, "max_tokens": 6, "seed": 1, **settings}
    response = client.post(f"/api/nodes/{node_id}/generate", json=body)
    assert response.status_code == 201, response.text
    return response.json()["children"]


def test_create_and_generate_children_with_tokens(client):
    root = start_tree(client)
    children = generate(client, root["id"], root["version"], temperature=1.0)
    assert len(children) == 3 and len({c["text"] for c in children}) > 1
    for child in children:
        assert child["parent"] == root["id"] and child["author"] == "model"
        assert len(child["tokens"]) == 6
        assert "".join(t["text"] for t in child["tokens"]) == child["text"]
        for token in child["tokens"]:
            assert token["logprob"] <= 0 and len(token["alternatives"]) == 5
            logprobs = [a["logprob"] for a in token["alternatives"]]
            assert logprobs == sorted(logprobs, reverse=True)
        assert child["generation"]["seed"] == 1 and child["generation"]["backend"] == "demo"
    current = tree(client)
    assert current["focus"] == children[0]["id"]
    assert [n["id"] for n in current["nodes"]][1:] == [c["id"] for c in children]
    again = generate(client, root["id"], root["version"], temperature=1.0)
    assert [c["text"] for c in again] == [c["text"] for c in children]  # same seed
    greedy = generate(client, root["id"], root["version"], temperature=0.0)
    assert len({c["text"] for c in greedy}) == 1
    assert node(client, children[0]["id"])["ancestry"] == [root["id"], children[0]["id"]]


def test_branch_from_an_alternative_token_makes_a_sibling_and_generates_on(client):
    root = start_tree(client)
    [child] = generate(client, root["id"], root["version"], n=1)
    tokens = child["tokens"]
    alternative = next(a for a in tokens[2]["alternatives"] if a["text"] != tokens[2]["text"])
    index = tokens[2]["alternatives"].index(alternative)
    body = {
        "version": child["version"],
        "token": 2,
        "alternative": index,
        "generate": {"n": 2, "max_tokens": 3},
    }
    response = client.post(f"/api/nodes/{child['id']}/branch", json=body)
    assert response.status_code == 201, response.text
    branch, grandchildren = response.json()["node"], response.json()["children"]
    assert branch["parent"] == root["id"]  # a sibling of the node branched from
    assert branch["text"] == tokens[0]["text"] + tokens[1]["text"] + alternative["text"]
    assert branch["tokens"][:2] == tokens[:2] and branch["tokens"][2]["text"] == alternative["text"]
    assert branch["generation"]["branched_from"] == {
        "node": child["id"],
        "token": 2,
        "alternative": index,
    }
    assert len(grandchildren) == 2 and all(g["parent"] == branch["id"] for g in grandchildren)
    assert tree(client)["focus"] == grandchildren[0]["id"]
    assert node(client, child["id"])["text"] == child["text"]  # the original is untouched


def test_child_by_hand_edit_history_prune_and_bookmark(client):
    root = start_tree(client)
    response = client.post(
        f"/api/nodes/{root['id']}/children", json={"version": root["version"], "text": " there"}
    )
    assert response.status_code == 201
    child = response.json()
    assert child["author"] == "person" and tree(client)["focus"] == child["id"]
    edited = client.put(
        f"/api/nodes/{child['id']}/text", json={"version": 1, "text": " here"}
    ).json()
    assert edited["text"] == " here" and edited["version"] == 2
    history = client.get(f"/api/nodes/{child['id']}/history").json()
    assert [(h["version"], h["text"]) for h in history] == [(1, " there")]
    pruned = client.put(f"/api/nodes/{child['id']}/hidden", json={"version": 2, "hidden": True})
    assert pruned.json()["hidden"] is True
    restored = client.put(f"/api/nodes/{child['id']}/hidden", json={"version": 3, "hidden": False})
    assert restored.json()["hidden"] is False
    marked = client.put(
        f"/api/nodes/{child['id']}/bookmarked", json={"version": 4, "bookmarked": True}
    )
    assert marked.json()["bookmarked"] is True
    summary = next(n for n in tree(client)["nodes"] if n["id"] == child["id"])
    assert (summary["edits"], summary["bookmarked"], summary["version"]) == (1, True, 5)
    assert client.put("/api/focus", json={"node": root["id"]}).json() == {"focus": root["id"]}
    assert tree(client)["focus"] == root["id"]


def test_refusals_are_4xx_with_clear_messages(client):
    root = start_tree(client)
    rid = root["id"]

    missing = client.get("/api/nodes/nope")
    assert missing.status_code == 404 and missing.json()["detail"] == "no node 'nope' in this tree"
    assert client.post("/api/nodes/nope/generate", json={"version": 1}).status_code == 404
    assert client.put("/api/focus", json={"node": "nope"}).status_code == 404

    stale = client.put(f"/api/nodes/{rid}/text", json={"version": 1, "text": "lost"})
    assert stale.status_code == 409
    assert "changed elsewhere" in stale.json()["detail"] and "reload" in stale.json()["detail"]
    stale_generation = client.post(f"/api/nodes/{rid}/generate", json={"version": 1})
    assert stale_generation.status_code == 409

    huge = client.put(
        f"/api/nodes/{rid}/text", json={"version": 2, "text": "x" * (MAX_TEXT_CHARS + 1)}
    )
    assert huge.status_code == 413 and "over the limit" in huge.json()["detail"]
    too_big = client.post(
        "/api/import",
        content=b"{}",
        headers={"Content-Type": "application/json", "Content-Length": str(MAX_BODY_BYTES + 1)},
    )
    assert too_big.status_code == 413 and "request body" in too_big.json()["detail"]

    for settings, field in [
        ({"n": 0}, "n"),
        ({"n": 100}, "n"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": [""]}, "stop"),
        ({"seed": -5}, "seed"),
    ]:
        bad = client.post(f"/api/nodes/{rid}/generate", json={"version": 2, **settings})
        assert bad.status_code == 422, settings
        assert bad.json()["detail"].startswith(f"invalid request: {field}"), bad.json()
    no_version = client.put(f"/api/nodes/{rid}/text", json={"text": "x"})
    assert no_version.status_code == 422 and "version" in no_version.json()["detail"]
    not_json = client.put(
        f"/api/nodes/{rid}/text",
        content=b'{"version": 2, "text": "x"}',
        headers={"Content-Type": "text/plain"},  # what a cross-site form could send
    )
    assert not_json.status_code == 422

    branch_root = client.post(
        f"/api/nodes/{rid}/branch", json={"version": 2, "token": 0, "alternative": 0}
    )
    assert branch_root.status_code == 400 and "root" in branch_root.json()["detail"]
    [child] = generate(client, rid, 2, n=1)
    out_of_range = client.post(
        f"/api/nodes/{child['id']}/branch", json={"version": 1, "token": 99, "alternative": 0}
    )
    assert out_of_range.status_code == 400 and "out of range" in out_of_range.json()["detail"]
    prune_root = client.put(f"/api/nodes/{rid}/hidden", json={"version": 2, "hidden": True})
    assert prune_root.status_code == 400
    assert tree(client)["nodes"][0]["text"] == "Once upon a time"  # nothing refused was written


def test_export_then_import_through_the_api(client, tmp_path):
    root = start_tree(client)
    generate(client, root["id"], root["version"])
    exported = client.get("/api/export")
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    assert client.post("/api/import", json=exported.json()).status_code == 409  # not empty
    assert client.post("/api/import", json={"nonsense": True}).status_code == 400
    with LoomStore(tmp_path / "copy.sqlite") as copy:
        other = TestClient(create_app(copy, DemoBackend()))
        response = other.post("/api/import", json=exported.json())
        assert response.status_code == 200, response.text
        assert other.get("/api/export").json() == exported.json()
        socketteer = client.get("/api/export", params={"format": "socketteer"}).json()
        assert socketteer["root"]["id"] == root["id"]
    assert client.get("/api/export", params={"format": "yaml"}).status_code == 422


def test_openapi_lists_the_endpoints_and_the_page_is_served(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path, method in [
        ("/api/tree", "get"),
        ("/api/nodes/{node_id}", "get"),
        ("/api/nodes/{node_id}/history", "get"),
        ("/api/nodes/{node_id}/children", "post"),
        ("/api/nodes/{node_id}/generate", "post"),
        ("/api/nodes/{node_id}/branch", "post"),
        ("/api/nodes/{node_id}/text", "put"),
        ("/api/nodes/{node_id}/hidden", "put"),
        ("/api/nodes/{node_id}/bookmarked", "put"),
        ("/api/focus", "put"),
        ("/api/export", "get"),
        ("/api/import", "post"),
    ]:
        assert method in paths[path], (path, method)
    page = client.get("/")
    assert page.status_code == 200 and "/static/loom.js" in page.text
    for asset in ("loom.js", "loom.css"):
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200
        assert "://" not in response.text  # nothing fetched from elsewhere: works offline
    assert "://" not in page.text


def test_a_loopback_server_refuses_foreign_host_headers(store):
    guarded = TestClient(create_app(store, DemoBackend(), allowed_hosts=LOOPBACK_HOSTS))
    assert guarded.get("/api/tree", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    assert guarded.get("/api/tree", headers={"Host": "evil.example:8000"}).status_code == 400


class BrokenBackend:
    name = "broken"

    def complete(self, prompt, settings, n=1, alternatives=5):
        raise MyopiaError("cannot reach the completions server at http://127.0.0.1:9/v1")


def test_a_failing_backend_is_reported_and_writes_nothing(store):
    client = TestClient(create_app(store, BrokenBackend()))
    root = start_tree(client)
    response = client.post(f"/api/nodes/{root['id']}/generate", json={"version": 2})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("the backend broken failed: cannot reach")
    assert len(tree(client)["nodes"]) == 1


def test_the_local_engine_over_a_tiny_model_plugs_in(store):
    from myopia.generation.engine import LocalEngine
    from myopia.generation.settings import SamplingSettings
    from myopia.models.loading import load_model

    model, tokenizer = load_model("fresh-gpt2:d_model=32,n_layers=2,n_heads=4,d_mlp=64")
    client = TestClient(create_app(store, LocalEngine(model, tokenizer, name="tiny")))
    root = start_tree(client, "Hello")
    children = generate(client, root["id"], root["version"], n=2, max_tokens=5)
    for child in children:
        assert child["generation"]["backend"] == "tiny" and len(child["tokens"]) == 5
        assert "".join(t["text"] for t in child["tokens"]) == child["text"]
    body = {"version": 1, "token": 1, "alternative": 1, "generate": {"max_tokens": 2}}
    branched = client.post(f"/api/nodes/{children[0]['id']}/branch", json=body)
    assert branched.status_code == 201, branched.text
    assert len(branched.json()["children"]) == 1
    # Streamed: the tokens shown as they come are the tokens written; a cancel keeps them.
    body = {"version": root["version"], "n": 2, "max_tokens": 6, "seed": 3, "temperature": 1}
    events = list(
        read_events(
            client.post(f"/api/nodes/{root['id']}/generate/stream", json=body).text.splitlines()
        )
    )
    done = events[-1][1]
    for row, child in enumerate(done["children"]):
        streamed = [d["text"] for e, d in events if e == "token" and d["row"] == row]
        assert streamed == [t["text"] for t in child["tokens"]]
    same = generate(client, root["id"], root["version"], n=2, max_tokens=6, temperature=1, seed=3)
    assert [c["text"] for c in same] == [c["text"] for c in done["children"]]

    seen = []

    def stop_after_three(row, token):
        seen.append(token)
        return len(seen) < 3

    engine = LocalEngine(model, tokenizer, name="tiny")
    [partial] = engine.complete_streaming("Hello", SamplingSettings(max_new_tokens=20), 1, 3,
                                          stop_after_three)  # fmt: skip
    assert len(partial.tokens) == 3 and partial.finish_reason == "length"
    assert [t.chosen.text for t in partial.tokens] == [t.chosen.text for t in seen]


# ------------------------------------------------------------- a real server process

SERVER = textwrap.dedent(
    """
    import sys
    from myopia.loom.demo_backend import DemoBackend
    from myopia.loom.server import serve

    serve(sys.argv[1], DemoBackend(delay_s=float(sys.argv[3])), port=int(sys.argv[2]))
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(path, delay_s=0.0):
    """A real loom server process on a free port, polled until it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(path), str(port), str(delay_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {proc.stdout.read().decode()}")
        try:
            if httpx.get(f"{url}/api/tree", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the server did not answer within 30 s")


def test_kill_9_during_generation_then_restart_finds_the_tree_intact(tmp_path):
    path = tmp_path / "served.sqlite"
    proc, url = start_server(path, delay_s=0.05)
    try:
        root = httpx.get(f"{url}/api/tree").json()["nodes"][0]
        root = httpx.put(
            f"{url}/api/nodes/{root['id']}/text", json={"version": 1, "text": "The night"}
        ).json()
        quick = {"version": root["version"], "n": 2, "max_tokens": 3}
        kept = httpx.post(f"{url}/api/nodes/{root['id']}/generate", json=quick, timeout=30)
        assert kept.status_code == 201, kept.text
        before = httpx.get(f"{url}/api/export").json()

        slow = {"version": root["version"], "n": 4, "max_tokens": 400}  # 80 s of tokens
        failures = []

        def generate_slowly():
            try:
                httpx.post(f"{url}/api/nodes/{root['id']}/generate", json=slow, timeout=120)
            except httpx.TransportError as err:
                failures.append(err)

        thread = threading.Thread(target=generate_slowly)
        thread.start()
        time.sleep(1.0)  # well inside the generation
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        thread.join(timeout=10)
        assert failures, "the generation should have died with the server"
    finally:
        proc.kill()
        proc.wait(timeout=10)

    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    proc, url = start_server(path)
    try:
        assert httpx.get(f"{url}/api/export").json() == before  # nothing lost, nothing partial
        again = httpx.post(
            f"{url}/api/nodes/{root['id']}/generate",
            json={"version": root["version"], "n": 1, "max_tokens": 2},
        )
        assert again.status_code == 201 and len(httpx.get(f"{url}/api/tree").json()["nodes"]) == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


# ------------------------------------------------------- robustness and new routes


def test_headers_refuse_framing_and_docs_load_nothing_from_elsewhere(client):
    page = client.get("/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert client.get("/api/view").headers["x-frame-options"] == "DENY"
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    assert "cdn" not in page.text.lower()


def test_a_chunked_body_over_the_limit_is_refused_without_reading_it_all(client):
    import anyio

    from myopia.loom.app import BodyLimit

    received, sent = [], []

    async def receive():  # a chunked upload: no Content-Length, 64 KiB at a time, 10 MiB
        received.append(1)
        return {"type": "http.request", "body": b" " * 65536, "more_body": len(received) < 160}

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        raise AssertionError("the app must not run")

    limit = BodyLimit(app, limit=2**20)
    scope = {"type": "http", "method": "POST", "path": "/api/import", "headers": []}
    anyio.run(limit, scope, receive, send)
    assert sent[0]["status"] == 413 and b"over the limit" in sent[1]["body"]
    assert len(received) == 17  # read up to the first chunk past 1 MiB, not the 10 MiB
    refused = client.post(
        "/api/import",
        content=iter([b" " * 65536] * 1100),  # through the app: 72 MB chunked
        headers={"Content-Type": "application/json"},
    )
    assert refused.status_code == 413 and "over the limit" in refused.json()["detail"]


def test_export_of_a_tree_with_a_non_latin_1_name(tmp_path):
    with LoomStore(tmp_path / "故事.sqlite") as store:
        response = TestClient(create_app(store, DemoBackend())).get("/api/export")
    assert response.status_code == 200
    disposition = response.headers["content-disposition"]
    assert "filename*=UTF-8''%E6%95%85%E4%BA%8B.loom.json" in disposition


def deep_socketteer(depth):
    root = node = {"id": "n0", "text": "p0", "children": []}
    for i in range(1, depth):
        node["children"].append({"id": f"n{i}", "text": f" p{i}", "children": []})
        node = node["children"][0]
    return {"root": root}


def test_a_5000_deep_story_imports_exports_and_is_viewed_through_the_api(client):
    from myopia.loom import jsontext

    body = jsontext.dumps(deep_socketteer(5000)).encode()
    done = client.post("/api/import", content=body, headers={"Content-Type": "application/json"})
    assert done.status_code == 200, done.text
    exported = client.get("/api/export?format=socketteer")
    assert exported.status_code == 200 and exported.text.count('"children"') == 5000
    shown = client.get("/api/view", params={"focus": "n4999"}).json()
    assert len(shown["ancestry"]) == 5000 and shown["outline"]["rows"][-1]["depth"] == 4999
    assert client.get("/api/nodes/n4999/branch.txt").text.endswith(" p4998 p4999")


def test_nan_and_bad_fields_in_an_import_are_400s_naming_the_field(client):
    for body, field in [
        (b'{"format": "myopia-loom", "version": 1, "nodes": [NaN]}', "NaN"),
        (b'{"root": {"id": "r", "meta": "hi"}}', "node r.meta"),
        (b"[1, 2", "not JSON"),
    ]:
        answer = client.post(
            "/api/import", content=body, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 400 and field in answer.json()["detail"], answer.text


def read_events(lines):
    event = None
    for line in lines:
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, json.loads(line[6:])


def test_streamed_generation_shows_tokens_and_a_cancel_keeps_them(tmp_path):
    with LoomStore(tmp_path / "s.sqlite") as store:
        client = TestClient(create_app(store, DemoBackend(delay_s=0.02)))
        root = start_tree(client)
        body = {"version": root["version"], "n": 2, "max_tokens": 200, "seed": 1}
        seen = []
        with client.stream("POST", f"/api/nodes/{root['id']}/generate/stream", json=body) as s:
            assert s.status_code == 200
            for event, data in read_events(s.iter_lines()):
                seen.append(event)
                if event == "start":
                    stream = data["stream"]
                if event == "token" and seen.count("token") == 5:
                    cancel = client.post(f"/api/streams/{stream}/cancel")
                    assert cancel.json() == {"cancelled": True}
                if event == "done":
                    done = data
        assert done["cancelled"] and seen.count("token") < 200
        [child] = done["children"]  # the second row was never begun
        assert child["generation"]["finish_reason"] == "cancelled"
        assert 5 <= len(child["tokens"]) < 200
        assert "".join(t["text"] for t in child["tokens"]) == child["text"]
        whole = client.post(
            f"/api/nodes/{root['id']}/generate/stream", json={**body, "max_tokens": 3}
        )
        events = list(read_events(whole.text.splitlines()))
        assert [e for e, _ in events].count("token") == 6
        assert [len(c["tokens"]) for c in events[-1][1]["children"]] == [3, 3]
        stale = client.post(f"/api/nodes/{root['id']}/generate/stream", json={"version": 99})
        assert stale.status_code == 409


def test_features_through_the_api(client):
    root = start_tree(client)
    [a, b] = generate(client, root["id"], root["version"], n=2)
    tags = client.put(f"/api/nodes/{a['id']}/tags", json={"version": 1, "tags": ["keep"]})
    assert tags.json()["tags"] == ["keep"]
    found = client.get("/api/search", params={"q": "#keep"}).json()
    assert [n["id"] for n in found] == [a["id"]]
    assert client.get("/api/search", params={"q": b["text"][:6]}).json()[0]["id"] in (
        a["id"],
        b["id"],
    )
    marked = client.put(f"/api/nodes/{b['id']}/bookmarked", json={"version": 1, "bookmarked": True})
    assert marked.status_code == 200
    assert [n["id"] for n in client.get("/api/bookmarks").json()["bookmarks"]] == [b["id"]]
    settings = {"n": 2, "temperature": 0.7, "top_p": 0.9, "max_tokens": 9, "stop": ["\n"]}
    assert client.put("/api/settings", json={**settings, "seed": 4}).status_code == 200
    assert client.get("/api/settings").json()["temperature"] == 0.7
    compared = client.get(f"/api/nodes/{a['id']}/compare").json()
    assert [x["id"] for x in compared["branches"]] == [a["id"], b["id"]]
    for branch in compared["branches"]:
        assert branch["logprob"] == pytest.approx(sum(t["logprob"] for t in branch["tokens"]))
    best = max(compared["branches"], key=lambda x: x["logprob"])
    assert compared["likeliest"] == best["id"]
    split = client.post(f"/api/nodes/{b['id']}/split", json={"version": 2, "at": 3}).json()
    merged = client.post(f"/api/nodes/{b['id']}/merge", json={"version": 3})
    assert merged.json()["text"] == b["text"] and split["child"]["parent"] == b["id"]
    gone = client.post(f"/api/nodes/{a['id']}/delete", json={"version": 2}).json()
    assert gone["removed"] == [a["id"]]
    assert client.get(f"/api/nodes/{a['id']}").status_code == 404
    changes = client.get("/api/changes", params={"since": 0}).json()
    assert a["id"] in changes["removed"] and b["id"] in changes["changed"]


def test_a_hand_written_branch_is_scored_by_the_model(store):
    # A person's branch beside a generated one: the model reads it, token by token, and
    # its total equals the slow reference of the continuation scores (one plain pass).
    import torch

    from myopia.faithfulness.continuation_scores import score_continuations_reference
    from myopia.generation import LocalEngine
    from myopia.models.loading import load_model

    torch.manual_seed(0)
    model, tokenizer = load_model("fresh-llama:d_model=32,n_layers=2,n_heads=4")
    client = TestClient(create_app(store, LocalEngine(model, tokenizer, name="t")))
    root = start_tree(client, "The cat")
    [made] = generate(client, root["id"], root["version"], n=1)
    written = " sat on the mat."
    typed = client.post(f"/api/nodes/{root['id']}/children", json={"text": written, "version": 2})
    assert typed.status_code == 201, typed.text
    compared = client.get(f"/api/nodes/{made['id']}/compare").json()
    by_source = {b["tokens_from"]: b for b in compared["branches"]}
    assert set(by_source) == {"generated", "scored"}
    scored = by_source["scored"]
    assert "".join(t["text"] for t in scored["tokens"]) == written
    [reference] = score_continuations_reference(model, tokenizer, "The cat", [written])
    assert scored["logprob"] == pytest.approx(reference, abs=1e-4)
    # A backend that cannot score leaves a written branch unscored, as before.
    demo = TestClient(create_app(store, DemoBackend())).get(f"/api/nodes/{made['id']}/compare")
    assert {b["tokens_from"] for b in demo.json()["branches"]} == {"generated", "none"}


class CountingScorer(DemoBackend):
    """The demo model, able to score text: each token of a branch a fixed -1, counted;
    a text holding "unreadable" fails as a too-long branch does."""

    def __init__(self, name):
        super().__init__()
        self.name, self.calls = name, []

    def score(self, prompt, text):
        from myopia.generation.types import TokenChoice

        self.calls.append((prompt, text))
        if "unreadable" in text:
            raise MyopiaError("the branch has 9999 tokens, more than the model's context")
        return tuple(TokenChoice(word, -1.0) for word in text.split(" ") if word)


def test_unscored_branches_say_why_and_scores_are_kept(store, tmp_path):
    from myopia.loom import weave

    scorer = CountingScorer(f"counting-{tmp_path.name}")
    client = TestClient(create_app(store, scorer))
    root = start_tree(client, "Once")
    [made] = generate(client, root["id"], root["version"], n=1)
    for text in ("a b c", "too unreadable"):
        typed = client.post(f"/api/nodes/{root['id']}/children", json={"text": text, "version": 2})
        assert typed.status_code == 201, typed.text

    def compared():
        response = client.get(f"/api/nodes/{made['id']}/compare")
        assert response.status_code == 200, response.text  # one bad branch fails no other
        return {b["text"]: b for b in response.json()["branches"]}

    first = compared()
    assert first["a b c"]["tokens_from"] == "scored" and first["a b c"]["logprob"] == -3.0
    assert first["a b c"]["unscored"] is None
    bad = first["too unreadable"]
    assert bad["logprob"] is None and "more than the model's context" in bad["unscored"]
    assert first[made["text"]]["tokens_from"] == "generated"
    # Drawn again (every key press with the view open): the score is remembered; only the
    # branch that failed is asked again.
    calls = len(scorer.calls)
    assert compared()["a b c"]["logprob"] == -3.0
    assert scorer.calls[calls:] == [("Once", "too unreadable")]
    # An edit of the prefix is a new question for the model.
    client.put(f"/api/nodes/{root['id']}/text", json={"version": 2, "text": "Twice"})
    assert compared()["a b c"]["logprob"] == -3.0
    assert ("Twice", "a b c") in scorer.calls
    # While a generation holds the model, the view does not wait for it: it says so.
    with weave._backend_lock:
        client.put(f"/api/nodes/{root['id']}/text", json={"version": 3, "text": "Thrice"})
        busy = compared()["a b c"]
    assert busy["logprob"] is None and "the model is generating" in busy["unscored"]
    assert compared()["a b c"]["logprob"] == -3.0
    # A backend that cannot score says so, by name.
    demo = TestClient(create_app(store, DemoBackend())).get(f"/api/nodes/{made['id']}/compare")
    [written, _] = [b for b in demo.json()["branches"] if b["author"] == "person"]
    assert written["unscored"].startswith("not scored: demo cannot score text it did not write")


def test_more_outline_rows_through_the_api(client):
    root = start_tree(client)
    children = generate(client, root["id"], root["version"], n=3)
    got = client.get("/api/outline", params={"edge": root["id"], "depth": 0, "count": 2})
    assert got.status_code == 200, got.text
    assert [r["id"] for r in got.json()["rows"]] == [c["id"] for c in children[:2]]
    assert got.json()["more"] is True
    up = client.get(
        "/api/outline", params={"edge": children[2]["id"], "depth": 1, "direction": "up"}
    ).json()
    assert [r["id"] for r in up["rows"]] == [root["id"], children[0]["id"], children[1]["id"]]
    assert up["more"] is False
    gone = client.get("/api/outline", params={"edge": "nope", "depth": 1})
    assert gone.status_code == 404 and gone.json()["detail"] == "no node 'nope' in this tree"
    assert client.get("/api/outline", params={"edge": root["id"], "depth": -1}).status_code == 422
