"""The loom's SQLite store: a real file, real transactions, a real process killed mid-write."""

import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from myopia.errors import CorruptFileError, MyopiaError
from myopia.loom.store import (
    MAX_TEXT_CHARS,
    SCHEMA_VERSION,
    LoomStore,
    NewNode,
    NodeNotFoundError,
    StaleVersionError,
    TextTooLargeError,
)

TOKENS = [
    {"text": " once", "logprob": -0.5, "token_id": 7, "alternatives": []},
    {"text": " more", "logprob": -1.5, "token_id": 9, "alternatives": []},
]


@pytest.fixture
def store(tmp_path):
    with LoomStore(tmp_path / "tree.sqlite") as s:
        yield s


def grow(store):
    """root 'Once' -> a ' upon', b ' more' (model, with tokens); a -> c ' a time'."""
    root = store.edit_text(store.root_id, 1, "Once")
    a, b = store.add_children(
        root.id,
        [NewNode(" upon"), NewNode(" once more", "model", {"backend": "x"}, TOKENS)],
        {root.id: root.version},
    )
    [c] = store.add_children(a.id, [NewNode(" a time")], {a.id: a.version})
    return root, a, b, c


def test_new_file_has_an_empty_root_in_wal_mode_with_a_schema_version(tmp_path):
    path = tmp_path / "new.sqlite"
    with LoomStore(path) as store:
        root = store.get(store.root_id)
        assert (root.parent, root.text, root.author, root.version) == (None, "", "person", 1)
        assert store.focus == root.id and store.is_empty()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_children_ancestry_and_branch_text(store):
    root, a, b, c = grow(store)
    assert [n.id for n in store.children(root.id)] == [a.id, b.id]
    assert [n.id for n in store.ancestry(c.id)] == [root.id, a.id, c.id]
    assert store.branch_text(c.id) == "Once upon a time"
    assert store.branch_text(b.id) == "Once once more"
    assert [n.id for n in store.nodes()] == [root.id, a.id, c.id, b.id]  # depth first
    assert store.get(b.id).tokens == TOKENS and store.get(b.id).author == "model"
    assert store.get(b.id).generation == {"backend": "x"}
    assert store.get(root.id).version == 2  # children do not change the parent's version
    assert not store.is_empty()


def test_edit_keeps_the_old_text_and_tokens_as_history(store):
    _, _, b, _ = grow(store)
    edited = store.edit_text(b.id, b.version, " once again")
    assert (edited.text, edited.version, edited.tokens) == (" once again", 2, [])
    again = store.edit_text(b.id, edited.version, " twice")
    history = store.history(b.id)
    assert [(h.version, h.text) for h in history] == [(1, " once more"), (2, " once again")]
    assert history[0].tokens == TOKENS  # the model's tokens are kept with the old text
    assert store.get(b.id).text == again.text == " twice"
    assert store.history_counts() == {b.id: 2, store.root_id: 1}


def test_stale_versions_are_refused_and_change_nothing(store):
    root, a, b, _ = grow(store)
    store.edit_text(a.id, a.version, " beyond")  # another tab's edit
    with pytest.raises(StaleVersionError, match="changed elsewhere.*reload"):
        store.edit_text(a.id, a.version, " lost?")
    with pytest.raises(StaleVersionError):
        store.set_hidden(a.id, a.version, True)
    with pytest.raises(StaleVersionError):
        store.set_bookmarked(a.id, a.version, True)
    with pytest.raises(StaleVersionError):
        store.add_children(a.id, [NewNode("x")], {a.id: a.version})
    now = store.get(a.id)
    assert (now.text, now.hidden, now.bookmarked, now.version) == (" beyond", False, False, 2)
    assert len(store.children(a.id)) == 1
    # A whole multi-node write is refused when any version it depends on is stale.
    with pytest.raises(StaleVersionError):
        store.add_children(root.id, [NewNode("p"), NewNode("q")], {root.id: root.version - 1})
    assert len(store.children(root.id)) == 2


def test_two_connections_to_one_file_see_each_others_versions(tmp_path):
    path = tmp_path / "shared.sqlite"
    with LoomStore(path) as first, LoomStore(path) as second:
        root = first.get(first.root_id)
        first.edit_text(root.id, root.version, "first")
        with pytest.raises(StaleVersionError):
            second.edit_text(root.id, root.version, "second")
        assert second.get(root.id).text == "first"


def test_prune_is_reversible_and_keeps_the_subtree(store):
    _, a, _, c = grow(store)
    pruned = store.set_hidden(a.id, a.version, True)
    assert pruned.hidden and store.get(c.id).parent == a.id
    restored = store.set_hidden(a.id, pruned.version, False)
    assert not restored.hidden and restored.version == 3
    assert store.get(c.id).text == " a time"
    with pytest.raises(MyopiaError, match="root cannot be pruned"):
        store.set_hidden(store.root_id, store.get(store.root_id).version, True)


def test_bookmark_focus_and_everything_survive_reopening(tmp_path):
    path = tmp_path / "tree.sqlite"
    with LoomStore(path) as store:
        _, a, b, c = grow(store)
        store.set_bookmarked(b.id, b.version, True)
        store.set_hidden(c.id, c.version, True)
        store.set_focus(c.id)
        before = store.snapshot()
    with LoomStore(path) as store:
        assert store.snapshot() == before
        assert store.focus == c.id and store.get(b.id).bookmarked and store.get(c.id).hidden


def test_unknown_nodes_and_huge_texts_are_refused(store):
    with pytest.raises(NodeNotFoundError, match="no node 'nope'"):
        store.get("nope")
    with pytest.raises(NodeNotFoundError):
        store.ancestry("nope")
    with pytest.raises(NodeNotFoundError):
        store.set_focus("nope")
    with pytest.raises(NodeNotFoundError):
        store.add_children("nope", [NewNode("x")], {})
    with pytest.raises(TextTooLargeError, match="over the limit"):
        store.edit_text(store.root_id, 1, "x" * (MAX_TEXT_CHARS + 1))
    assert store.get(store.root_id).text == ""


def test_files_that_are_not_loom_trees_are_refused_clearly(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(CorruptFileError, match="not a loom file"):
        LoomStore(junk)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(CorruptFileError, match="not a loom tree"):
        LoomStore(other)
    newer = tmp_path / "newer.sqlite"
    LoomStore(newer).close()
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(MyopiaError, match="newer myopia"):
        LoomStore(newer)


WRITER = textwrap.dedent(
    """
    import sys
    from myopia.loom.store import LoomStore, NewNode

    store = LoomStore(sys.argv[1])
    node = store.get(store.root_id)
    filler = "lorem ipsum " * 2000  # ~24 kB per write: kills land inside writes
    i = 0
    while True:
        i += 1
        node = store.edit_text(node.id, node.version, f"edit {i} " + filler)
        print("edit", node.id, node.version, flush=True)
        drafts = [NewNode(f"child {i}.{k} " + filler) for k in range(3)]
        kids = store.add_children(node.id, drafts, {node.id: node.version})
        for kid in kids:
            print("node", kid.id, flush=True)
    """
)


def test_kill_9_mid_write_loses_nothing_committed_and_never_corrupts(tmp_path):
    path = tmp_path / "killed.sqlite"
    committed: set[str] = set()
    versions: list[int] = []
    for round_ in range(3):  # three kills at different moments of the write loop
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        try:
            for _ in range(20 + 7 * round_):
                kind, node_id, *rest = proc.stdout.readline().split()
                committed.add(node_id)
                if kind == "edit":
                    versions.append(int(rest[0]))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        with LoomStore(path) as store:  # reopens after the kill, recovering the WAL
            present = {n.id for n in store.nodes()}
            assert committed <= present, f"lost after kill {round_}: {committed - present}"
            root = store.get(store.root_id)
            assert root.version >= versions[-1]
            # Every replaced text is in the history: edits are never lost either.
            assert len(store.history(root.id)) == root.version - 1


def test_revisions_record_what_changed_and_what_was_removed(store):
    from myopia.loom import view

    start = store.revision
    root, a, b, c = grow(store)
    assert set(view.changes(store, start)["changed"]) == {root.id, a.id, b.id, c.id}
    mark = store.revision
    store.set_collapsed(a.id, True)
    tagged = store.set_tags(b.id, b.version, ["draft", "good", "draft"])
    assert tagged.tags == ["draft", "good"] and tagged.version == b.version + 1
    assert view.changes(store, mark) == {
        "revision": mark + 2,
        "changed": sorted([a.id, b.id], key=[a.id, b.id].index),
        "removed": [],
        "reload": False,
    }
    with pytest.raises(MyopiaError, match="tag 'two words'"):
        store.set_tags(b.id, tagged.version, ["two words"])
    mark = store.revision
    assert store.delete(a.id, a.version) == [a.id, c.id]
    assert set(view.changes(store, mark)["removed"]) == {a.id, c.id}
    assert [n.id for n in store.nodes()] == [root.id, b.id]


def test_split_merge_and_restore_keep_every_text(store):
    root, a, b, c = grow(store)
    head, tail = store.split(b.id, b.version, len(" once"))
    assert (head.text, tail.text) == (" once", " more")
    assert (head.tokens, tail.tokens) == (TOKENS[:1], TOKENS[1:])  # the cut fell between tokens
    assert tail.parent == b.id and store.children(b.id) == [tail]
    assert store.history(b.id)[-1].text == " once more"
    merged = store.merge(b.id, head.version)
    assert merged.text == " once more" and merged.tokens == TOKENS
    assert store.children(b.id) == []
    with pytest.raises(NodeNotFoundError):
        store.get(tail.id)
    cut = store.split(a.id, a.version, 2)[0]  # " u|pon": a's child c moves under the tail
    [tail] = store.children(a.id)
    assert [n.id for n in store.children(tail.id)] == [c.id] and cut.tokens == []
    restored = store.restore(a.id, cut.version, a.version)
    assert restored.text == " upon" and store.history(a.id)[-1].text == " u"
    with pytest.raises(MyopiaError, match="no version 99"):
        store.restore(a.id, restored.version, 99)
    with pytest.raises(MyopiaError, match="has 2 children"):
        store.merge(root.id, root.version)
    with pytest.raises(MyopiaError, match="outside the text"):
        store.split(c.id, c.version, 0)


def test_a_schema_1_file_is_migrated_and_keeps_its_nodes(tmp_path):
    path = tmp_path / "old.sqlite"
    with LoomStore(path) as store:
        root, *_ = grow(store)
    db = sqlite3.connect(path)  # make it what schema 1 wrote
    db.execute("DROP INDEX nodes_by_change")
    db.execute("DROP TABLE removed")
    for table, column in [
        ("tree", "revision"),
        ("tree", "settings"),
        ("nodes", "tags"),
        ("nodes", "collapsed"),
        ("nodes", "changed"),
    ]:
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with LoomStore(path) as store:
        assert len(store.nodes()) == 4 and store.get(root.id).text == "Once"
        assert store.revision == 0 and store.set_collapsed(root.id, True).collapsed
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
