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
