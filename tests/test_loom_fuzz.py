"""Malformed imports, generated at random: every answer is a 4xx with a one-line detail,
never a 500, and the file stays a sound SQLite database holding an untouched tree."""

import random
import sqlite3

from fastapi.testclient import TestClient

from myopia.loom import jsontext
from myopia.loom.app import create_app
from myopia.loom.demo_backend import DemoBackend
from myopia.loom.store import LoomStore

FIELDS = {  # every field an import reads, in either format
    "own": ["id", "parent", "position", "text", "author", "generation", "tokens", "created",
            "hidden", "bookmarked", "version", "extra", "history", "tags", "collapsed"],
    "socketteer": ["id", "text", "children", "tags", "meta", "generation", "bookmark",
                   "archived"],
}  # fmt: skip


def junk(rng: random.Random, depth: int = 0):
    """A value of a random JSON type: sometimes deep, sometimes huge."""
    kind = rng.randrange(10)
    if kind == 0:
        return rng.choice([None, True, False, 0, -1, 2**70, 1.5, -1e308])
    if kind == 1:
        return rng.choice(["", "a/b", "..", "x" * 70, "ok-id", "\u6545\u4e8b", "\x00"])
    if kind == 2:
        return "y" * rng.choice([10, 1_000_001])  # over the per-node text limit
    if kind == 3 and depth < 3:
        return [junk(rng, depth + 1) for _ in range(rng.randrange(3))]
    if kind == 4 and depth < 3:
        return {rng.choice(["text", "logprob", "x", "version"]): junk(rng, depth + 1)}
    if kind == 5:
        deep = inner = []
        for _ in range(rng.choice([50, 3000])):
            inner.append([])
            inner = inner[0]
        return deep
    if kind == 6:
        return [{"text": "a", "logprob": rng.choice([-1.0, "x", None]), "alternatives": "z"}]
    return rng.choice([{}, [], "text", 3])


def own_file(rng):
    nodes = [{"id": "root", "parent": None, "text": "", "author": "person"},
             {"id": "kid", "parent": "root", "text": "a", "author": "model"}]  # fmt: skip
    node = rng.choice(nodes)
    for _ in range(rng.randrange(1, 4)):
        node[rng.choice(FIELDS["own"])] = junk(rng)
    data = {"format": "myopia-loom", "version": 1, "nodes": nodes}
    if rng.random() < 0.3:
        data[rng.choice(["focus", "extra", "version", "nodes"])] = junk(rng)
    return data


def socketteer_file(rng):
    child = {"id": "c", "text": " b", "children": []}
    root = {"id": "r", "text": "a", "children": [child]}
    node = rng.choice([root, child])
    for _ in range(rng.randrange(1, 4)):
        node[rng.choice(FIELDS["socketteer"])] = junk(rng)
    data = {"root": root}
    if rng.random() < 0.4:
        data["model_responses"] = {"g": {"completions": [{"tokens": [junk(rng)]}]}}
        node["generation"] = {"id": "g", "index": rng.choice([0, 1, "x"])}
    if rng.random() < 0.2:
        data["selected_node_id"] = junk(rng)
    return data


def nested(depth: int) -> str:
    return '{"root": ' + '{"id": "r", "children": [' * depth + "{}" + "]}" * depth + "}"


def test_malformed_imports_get_4xx_never_500_and_the_file_stays_sound(tmp_path):
    rng = random.Random(20261201)
    path = tmp_path / "fuzz.sqlite"
    statuses = []
    with LoomStore(path) as store:
        client = TestClient(create_app(store, DemoBackend()))
        bodies = [nested(d).encode() for d in (1200, 5000)]  # deep and repeated ids
        bodies += [b"", b"{", b"[]", b'"x"', b"NaN", b'{"root": NaN}', b"\xff\xfe"]
        for _ in range(150):
            data = own_file(rng) if rng.random() < 0.5 else socketteer_file(rng)
            text = jsontext.dumps(data)  # json.dumps recurses on the deep junk
            bodies.append(text.encode())
        for body in bodies:
            answer = client.post(
                "/api/import", content=body, headers={"Content-Type": "application/json"}
            )
            statuses.append(answer.status_code)
            if answer.status_code == 200:  # a valid file got through: start afresh
                store.close()
                path.unlink()
                store.__init__(path)
                continue
            assert 400 <= answer.status_code < 500, (answer.status_code, body[:300])
            detail = answer.json()["detail"]
            assert isinstance(detail, str) and "\n" not in detail and len(detail) < 400
            assert store.is_empty()
    assert statuses.count(200) < len(statuses) // 2  # the generator mostly makes bad files
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
