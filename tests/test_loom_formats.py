"""Loom JSON import and export: its own format, and socketteer/loom's, through real files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from myopia.errors import CorruptFileError
from myopia.generation.settings import SamplingSettings
from myopia.loom import formats, weave
from myopia.loom.demo_backend import DemoBackend
from myopia.loom.store import LoomStore, TreeNotEmptyError

SOCKETTEER_FILE = Path(__file__).parent / "data" / "socketteer_loom_tree.json"
IDS = {  # nodes of the hand-written socketteer file
    "root": "0d8a3e5c-2027-11ec-9ac4-dfd5122a3f0d",
    "prompt": "5f1c2a10-2027-11ec-9ac4-dfd5122a3f0d",
    "keeper": "84f21d4a-2027-11ec-9ac4-dfd5122a3f0d",
    "last": "dd4e5ac4-2033-11ec-9ac4-dfd5122a3f0d",
    "ferry": "84f21d4b-2027-11ec-9ac4-dfd5122a3f0d",
    "letter": "3074457352913436538",
    "door": "1900d69c-5158-11eb-bbcc-cb04361d1607",
}


def grown_store(path) -> LoomStore:
    """A tree made in the loom: generated, branched, edited, pruned, bookmarked."""
    store = LoomStore(path)
    root = store.edit_text(store.root_id, 1, "The river")
    request = weave.Request(SamplingSettings(max_new_tokens=5, temperature=1.0, seed=3), n=2)
    a, b = weave.generate_children(store, DemoBackend(), root.id, root.version, request)
    branch, _ = weave.branch_from_alternative(store, DemoBackend(), a.id, a.version, 1, 2)
    store.edit_text(b.id, b.version, " was edited by hand")
    store.set_hidden(branch.id, branch.version, True)
    store.set_bookmarked(a.id, a.version, True)
    return store


def test_own_format_round_trips_everything_through_a_file(tmp_path):
    with grown_store(tmp_path / "a.sqlite") as original:
        exported = formats.export_json_file(original, tmp_path / "tree.loom.json")
        before = formats.export_tree(original)
    with LoomStore(tmp_path / "b.sqlite") as copy:
        formats.import_json_file(copy, exported)
        after = formats.export_tree(copy)
        assert after == before
        assert any(n["history"] for n in after["nodes"])  # edits travel with the tree
        assert any(n["tokens"] for n in after["nodes"])
        assert copy.focus == before["focus"]


def test_socketteer_file_imports_with_its_meaning(tmp_path):
    with LoomStore(tmp_path / "s.sqlite") as store:
        formats.import_json_file(store, SOCKETTEER_FILE)
        node = {key: store.get(i) for key, i in IDS.items()}
        assert store.root_id == IDS["root"] and store.focus == IDS["keeper"]
        assert [c.id for c in store.children(IDS["prompt"])] == [
            IDS["keeper"],
            IDS["ferry"],
            IDS["letter"],
            IDS["door"],
        ]
        assert store.branch_text(IDS["last"]) == (
            "The storm had been building for three days when the lighthouse keeper "
            "climbed the stairs for the last time."
        )
        assert node["prompt"].bookmarked and node["door"].bookmarked
        assert node["ferry"].hidden and not node["keeper"].hidden  # archived = pruned
        assert node["prompt"].author == "person" and node["last"].author == "person"
        assert {node[k].author for k in ("keeper", "ferry", "letter", "door")} == {"model"}
        assert node["prompt"].created == "2021-09-27T11:40:02Z"
        assert node["root"].created is None  # socketteer recorded none
        # Tokens from model_responses, alternatives best first from the counterfactuals.
        keeper = node["keeper"].tokens
        assert "".join(t["text"] for t in keeper) == node["keeper"].text
        assert keeper[1]["text"] == " lighthouse" and keeper[1]["logprob"] == -3.5065578
        assert [a["text"] for a in keeper[1]["alternatives"]] == [" ferry", " storm", " lighthouse"]
        assert node["keeper"].generation == {"backend": "davinci", "finish_reason": "length"}
        # Tokens from an older file's meta.generation (an OpenAI choice).
        letter = node["letter"].tokens
        assert [t["text"] for t in letter] == [" a", " letter", " arrived"]
        assert [a["text"] for a in letter[0]["alternatives"]] == [" the", " a"]
        assert node["door"].tokens == []  # edited ("mixed"): no tokens spell its text
        assert node["last"].extra["text_attributes"] == {"child_preview": "Last time"}
        assert store.extra["chapters"]["02a78654-687b-11eb-9015-25b86b4536cb"]["title"]


def test_socketteer_round_trip_gives_the_file_back(tmp_path):
    original = json.loads(SOCKETTEER_FILE.read_text())
    with LoomStore(tmp_path / "a.sqlite") as first:
        formats.import_json_file(first, SOCKETTEER_FILE)
        exported = formats.export_tree(first, "socketteer")
        assert exported == original  # fields the loom does not model come back too
        out = formats.export_json_file(first, tmp_path / "out.json", "socketteer")
        own = formats.export_tree(first)
    with LoomStore(tmp_path / "b.sqlite") as second:
        formats.import_json_file(second, out)
        assert formats.export_tree(second) == own


def test_socketteer_export_keeps_changes_made_in_the_loom(tmp_path):
    with LoomStore(tmp_path / "a.sqlite") as store:
        formats.import_json_file(store, SOCKETTEER_FILE)
        ferry = store.get(IDS["ferry"])
        store.set_hidden(ferry.id, ferry.version, False)  # unprune
        prompt = store.get(IDS["prompt"])
        store.set_bookmarked(prompt.id, prompt.version, False)
        request = weave.Request(SamplingSettings(max_new_tokens=4), n=1)
        [child] = weave.generate_children(store, DemoBackend(), ferry.id, 2, request)
        exported = formats.export_tree(store, "socketteer")
    root = exported["root"]
    prompt_out = root["children"][0]
    ferry_out = prompt_out["children"][1]
    assert prompt_out["tags"] == [] and ferry_out["tags"] == []
    [new] = ferry_out["children"]
    assert new["text"] == child.text and new["parent_id"] == ferry.id
    assert new["meta"]["source"] == "AI"
    response = exported["model_responses"][new["generation"]["id"]]
    tokens = response["completions"][0]["tokens"]
    assert "".join(t["generatedToken"]["token"] for t in tokens) == child.text
    assert exported["selected_node_id"] == child.id


def test_a_loom_made_tree_survives_socketteer_export_except_history(tmp_path):
    with grown_store(tmp_path / "a.sqlite") as original:
        before = formats.export_tree(original)["nodes"]
        socketteer = formats.export_tree(original, "socketteer")
    with LoomStore(tmp_path / "b.sqlite") as copy:
        copy.load(formats.read_tree(socketteer))
        after = formats.export_tree(copy)["nodes"]
    kept = ("id", "parent", "text", "author", "generation", "tokens", "created", "hidden")
    assert [{k: n[k] for k in (*kept, "bookmarked")} for n in after] == [
        {k: n[k] for k in (*kept, "bookmarked")} for n in before
    ]


def test_bad_files_and_non_empty_trees_are_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with LoomStore(tmp_path / "a.sqlite") as store:
        with pytest.raises(CorruptFileError, match="is not JSON"):
            formats.import_json_file(store, bad)
        bad.write_text('{"hello": 1}')
        with pytest.raises(CorruptFileError, match="not a loom tree"):
            formats.import_json_file(store, bad)
        orphan = {
            "format": "myopia-loom",
            "version": 1,
            "nodes": [
                {"id": "r", "parent": None, "text": "", "author": "person"},
                {"id": "c", "parent": "ghost", "text": "x", "author": "person"},
            ],
        }
        with pytest.raises(CorruptFileError, match="parent ghost"):
            store.load(formats.read_tree(orphan))
        assert store.is_empty()  # nothing half-imported
        formats.import_json_file(store, SOCKETTEER_FILE)
        with pytest.raises(TreeNotEmptyError, match="already holds a tree"):
            formats.import_json_file(store, SOCKETTEER_FILE)


def myopia_loom(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "myopia.cli", "loom", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_cli_imports_and_exports_without_serving(tmp_path):
    done = myopia_loom(
        "new.sqlite",
        "--import-json",
        str(SOCKETTEER_FILE),
        "--export-json",
        "out.json",
        "--export-format",
        "socketteer",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out.json").read_text()) == json.loads(
        SOCKETTEER_FILE.read_text()
    )
    again = myopia_loom("new.sqlite", "--import-json", str(SOCKETTEER_FILE), cwd=tmp_path)
    assert again.returncode == 2 and "already holds a tree" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    missing = myopia_loom("absent.sqlite", "--export-json", "x.json", cwd=tmp_path)
    assert missing.returncode == 2 and "no loom file absent.sqlite" in missing.stderr
    assert not (tmp_path / "absent.sqlite").exists()
    (tmp_path / "bad.json").write_text('{"hello": 1}')
    bad = myopia_loom("fresh.sqlite", "--import-json", "bad.json", cwd=tmp_path)
    assert bad.returncode == 2 and "not a loom tree" in bad.stderr
    assert not list(tmp_path.glob("fresh.sqlite*"))  # a failed import creates no tree file


# ------------------------------------------------------------- depth and validation


def chain_socketteer(depth: int) -> dict:
    """A linear socketteer story ``depth`` nodes deep (two JSON levels per node)."""
    root = node = {"id": "n0", "text": "p0", "children": []}
    for i in range(1, depth):
        child = {"id": f"n{i}", "text": f" p{i}", "children": []}
        node["children"].append(child)
        node = child
    return {"root": root, "selected_node_id": f"n{depth - 1}"}


def random_json(rng, depth=0):
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-(10**12), 10**12)
    if kind == 2:
        return rng.uniform(-1e6, 1e6)
    if kind == 3:
        return "".join(rng.choice('ab"\\\n\u00e9\u6545 ') for _ in range(rng.randrange(6)))
    if kind in (4, 5):
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {f"k{i}\u00e9": random_json(rng, depth + 1) for i in range(rng.randrange(4))}


def test_json_loops_agree_with_json_and_refuse_nan():
    import random

    from myopia.loom import jsontext

    rng = random.Random(0)
    for _ in range(300):
        value = random_json(rng)
        text = json.dumps(value, ensure_ascii=False)
        assert jsontext._loads_iteratively(text) == json.loads(text)
        assert jsontext._dumps_iteratively(value) == jsontext.dumps(value)
    deep = chain_socketteer(5000)
    text = jsontext.dumps(deep)  # 10,000 levels: json itself raises RecursionError
    with pytest.raises(RecursionError):
        json.dumps(deep)
    assert jsontext.dumps(jsontext.loads(text)) == text  # == on values that deep recurses
    for bad in ("[NaN]", '{"a": Infinity}', "[-Infinity]", "[1e999]", "[1,]", '{"a" 1}', "[1] x"):
        with pytest.raises(ValueError):
            jsontext.loads(bad)
        with pytest.raises(ValueError):
            jsontext._loads_iteratively(bad)
    with pytest.raises(ValueError):
        jsontext.dumps({"x": float("nan")})


def test_a_socketteer_story_5000_deep_imports_and_exports_both_ways(tmp_path):
    source = tmp_path / "deep.json"
    source.write_text(formats.jsontext.dumps(chain_socketteer(5000)))
    with LoomStore(tmp_path / "deep.sqlite") as store:
        formats.import_json_file(store, source)
        assert len(store.nodes()) == 5000 and store.focus == "n4999"
        assert store.branch_text("n4999").endswith(" p4998 p4999")
        out = formats.export_json_file(store, tmp_path / "out.json", "socketteer")
        exported = formats.jsontext.loads(out.read_bytes())
        node, ids = exported["root"], []
        while node:  # the chain, walked by a loop
            ids.append(node["id"])
            node = node["children"][0] if node["children"] else None
        assert ids == [f"n{i}" for i in range(5000)]
        own = formats.export_json_file(store, tmp_path / "own.json", "myopia")
    with LoomStore(tmp_path / "again.sqlite") as again:
        formats.import_json_file(again, own)
        assert [n.id for n in again.nodes()][-1] == "n4999"


def own_file(**node_fields):
    node = {"id": "r", "parent": None, "text": "", "author": "person", **node_fields}
    return {"format": "myopia-loom", "version": 1, "nodes": [node]}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (own_file(position="x"), "nodes[0].position"),
        (own_file(extra=[1, 2]), "nodes[0].extra"),
        (own_file(history=[{"x": 1}]), "nodes[0].history[0].version"),
        (own_file(version=-5), "nodes[0].version"),
        (own_file(id="a/b"), "nodes[0].id"),
        (own_file(id=""), "nodes[0].id"),
        (own_file(id=".."), "nodes[0].id"),
        (own_file(tokens="abc"), "nodes[0].tokens"),
        (own_file(tokens=[{"text": "a", "logprob": float("nan")}]), "nodes[0].tokens[0].logprob"),
        (own_file(hidden="yes"), "nodes[0].hidden"),
        (own_file(tags=["two words"]), "nodes[0].tags"),
        ({**own_file(), "focus": [1]}, "focus"),
        ({**own_file(), "extra": "x"}, "tree.extra"),
        ({"root": {"text": "a", "meta": "hi"}}, "root.meta"),  # no id: named by position
        ({"root": {"id": "r", "text": "a", "meta": "hi"}}, "node r.meta"),
        ({"root": {"id": "r", "children": "x"}}, "node r.children"),
        ({"root": {"id": "r", "children": [3]}}, "node r.children[0]"),
        ({"root": {"id": "a b"}}, "root.id"),
        (
            {
                "root": {"id": "r", "text": "x", "generation": {"id": "g", "index": 0}},
                "model_responses": {"g": {"completions": [{"tokens": [{"position": {}}]}]}},
            },
            "model_responses.g.completions[0].tokens[0].generatedToken",
        ),
    ],
)
def test_every_bad_field_is_refused_in_one_line_naming_it(tmp_path, data, field):
    with pytest.raises(CorruptFileError) as refused:
        formats.read_tree(data)
    message = str(refused.value)
    assert field in message and "\n" not in message, message
