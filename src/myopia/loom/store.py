"""A loom tree in one SQLite file: nodes, their edit history, the focus.

Design:

- One file per tree, opened in WAL mode with ``synchronous=FULL``. Every change is one
  ``BEGIN IMMEDIATE ... COMMIT`` transaction, so a process killed at any moment (SIGKILL
  mid-generation or mid-write) leaves the file as it was after the last commit: SQLite's
  journal rolls back the half-written transaction on the next open. A generation holds
  no transaction while the model runs; its children are written in one transaction
  when it returns.
- Nothing a person wrote is overwritten. Editing a node copies its old text (and the
  tokens that described it) into ``node_history`` first; pruning only sets ``hidden``.
- Optimistic concurrency: each node has a ``version`` that grows with every change to
  its own fields (text, hidden, bookmarked). A write names the version its author last
  saw and is refused with :class:`StaleVersionError` when the node has changed since,
  so two browser tabs never silently undo each other's edits. Adding children does not
  change the parent's version: two tabs may both grow the same node.
- The focus (the node a person is looking at) is stored in the tree but not versioned:
  it is a view position, not content, and last-writer-wins loses nothing anyone wrote.
- ``extra`` (per node and per tree) holds fields of imported files that the loom does
  not model, so an export gives them back.
- Every change raises the tree's ``revision`` and stamps the nodes it touched with it
  (``changed``; removed nodes go to ``removed``), so a page asks for what changed since
  the revision it last saw instead of reloading a tree of 50,000 nodes.
- Collapsing a node is, like the focus, a view and not versioned; it is stored so that
  every tab shows the same outline.
- Nothing walks the tree by recursion: ancestries and subtrees are SQLite recursive
  CTEs (loops inside SQLite), orderings are loops over explicit stacks, so a linear
  story 100,000 nodes deep works as well as a bushy one.

Tokens are stored as JSON: a list of ``{"text", "logprob", "token_id", "alternatives":
[{"text", "logprob", "token_id"}, ...]}`` whose texts make up the node's text.

>>> store = LoomStore("story.sqlite")                                   # doctest: +SKIP
>>> root = store.get(store.root_id)
>>> root = store.edit_text(root.id, root.version, "Once upon a time")
>>> [child] = store.add_children(root.id, [NewNode(" there was")], {root.id: root.version})
"""

from __future__ import annotations

import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from myopia.errors import CorruptFileError, MyopiaError
from myopia.loom import jsontext

SCHEMA_VERSION = 2  # PRAGMA user_version; raise it with a migration when the schema changes
MAX_TEXT_CHARS = 1_000_000  # one node's text; a whole book is a few MB, a node is not
AUTHORS = ("person", "model")
# Node ids travel in URLs and file names: letters, digits, "-" and "_" (uuid4 strings,
# which socketteer/loom uses, and this loom's uuid4 hex both fit).
NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
TAG = re.compile(r"[^\s,]{1,40}")  # a word: tags are typed as a comma- or space-separated list
MAX_TAGS = 20

Author = Literal["person", "model"]

_SCHEMA = """
CREATE TABLE tree (
    id INTEGER PRIMARY KEY CHECK (id = 1),  -- one tree per file
    root TEXT NOT NULL,
    focus TEXT NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}',        -- JSON: imported tree-level fields kept for export
    created TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0,     -- raised by every change
    settings TEXT NOT NULL DEFAULT '{}'      -- JSON: the page's generation settings
);
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    parent TEXT REFERENCES nodes(id),        -- NULL only for the root
    position INTEGER NOT NULL,               -- order among siblings
    text TEXT NOT NULL,
    author TEXT NOT NULL CHECK (author IN ('person', 'model')),
    generation TEXT,                         -- JSON: backend, settings, finish reason
    tokens TEXT NOT NULL DEFAULT '[]',       -- JSON: tokens with logprobs and alternatives
    created TEXT,                            -- UTC ISO 8601, NULL where an import had none
    hidden INTEGER NOT NULL DEFAULT 0,       -- pruned (reversible)
    bookmarked INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 1,
    extra TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',         -- JSON list of a person's tags
    collapsed INTEGER NOT NULL DEFAULT 0,    -- folded in the outline (a view, not versioned)
    changed INTEGER NOT NULL DEFAULT 0       -- the tree revision that last touched it
);
CREATE INDEX nodes_by_parent ON nodes (parent, position);
CREATE INDEX nodes_by_change ON nodes (changed);
CREATE TABLE removed (
    id TEXT PRIMARY KEY,                     -- a deleted or merged-away node
    revision INTEGER NOT NULL
);
CREATE TABLE node_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL REFERENCES nodes(id),
    version INTEGER NOT NULL,                -- the node's version while it had this text
    text TEXT NOT NULL,
    tokens TEXT NOT NULL,
    replaced TEXT NOT NULL                   -- when an edit replaced it
);
CREATE INDEX history_by_node ON node_history (node, id);
"""

# Schema 1 -> 2: revisions, tags, collapse, settings, the removed list.
_MIGRATE_1_TO_2 = """
ALTER TABLE tree ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tree ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE nodes ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE nodes ADD COLUMN collapsed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX nodes_by_change ON nodes (changed);
CREATE TABLE removed (id TEXT PRIMARY KEY, revision INTEGER NOT NULL)
"""


class NodeNotFoundError(MyopiaError):
    """No node with that id in this tree."""


class StaleVersionError(MyopiaError):
    """The node changed since the writer last read it; the write was refused."""


class TextTooLargeError(MyopiaError):
    """A node's text is longer than MAX_TEXT_CHARS."""


class TreeNotEmptyError(MyopiaError):
    """An import was asked of a tree that already holds work."""


def check_id(node_id: object, what: str = "id") -> str:
    if not isinstance(node_id, str) or not NODE_ID.fullmatch(node_id):
        raise MyopiaError(
            f"{what} must be 1 to 64 letters, digits, '-' or '_', not {_shown(node_id)}"
        )
    return node_id


def check_tags(tags: object) -> list[str]:
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise MyopiaError(f"tags must be a list of at most {MAX_TAGS} words")
    for tag in tags:
        if not isinstance(tag, str) or not TAG.fullmatch(tag):
            raise MyopiaError(
                f"tag {_shown(tag)} is not a word of 1 to 40 characters without spaces or commas"
            )
    return list(dict.fromkeys(tags))  # each once, in the order given


def _shown(value: object) -> str:
    """A short picture of a wrong value (containers by kind: they can be huge or deep)."""
    if isinstance(value, dict | list | tuple):
        return f"a {type(value).__name__} of {len(value)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def now() -> str:
    """The current UTC time to the second, as stored in ``created``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Node:
    id: str
    parent: str | None
    position: int
    text: str
    author: Author
    generation: dict[str, Any] | None
    tokens: list[dict[str, Any]]
    created: str | None
    hidden: bool
    bookmarked: bool
    version: int
    extra: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    collapsed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parent": self.parent,
            "position": self.position,
            "text": self.text,
            "author": self.author,
            "generation": self.generation,
            "tokens": self.tokens,
            "created": self.created,
            "hidden": self.hidden,
            "bookmarked": self.bookmarked,
            "version": self.version,
            "extra": self.extra,
            "tags": self.tags,
            "collapsed": self.collapsed,
        }


@dataclass(frozen=True)
class NewNode:
    """A child to be added: what the caller decides; the store adds id, time, version."""

    text: str
    author: Author = "person"
    generation: dict[str, Any] | None = None
    tokens: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class HistoryEntry:
    node: str
    version: int
    text: str
    tokens: list[dict[str, Any]]
    replaced: str

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "version": self.version,
            "text": self.text,
            "tokens": self.tokens,
            "replaced": self.replaced,
        }


@dataclass
class TreeData:
    """A whole tree in memory, as import and export formats produce and consume it.

    ``nodes`` lists parents before their children, the root first.
    """

    nodes: list[Node]
    focus: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[HistoryEntry]] = field(default_factory=dict)


def check_text(text: str) -> None:
    if not isinstance(text, str):
        raise MyopiaError(f"a node's text must be a string, not {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise TextTooLargeError(
            f"text of {len(text):,} characters is over the limit of {MAX_TEXT_CHARS:,} "
            "per node: split it over several nodes"
        )


_dumps = jsontext.dumps
_loads = jsontext.loads

_NODE_COLUMNS = (
    "id, parent, position, text, author, generation, tokens, created, hidden, bookmarked, "
    "version, extra, tags, collapsed"
)


def _node(row: tuple) -> Node:
    id_, parent, position, text, author, generation, tokens, created = row[:8]
    hidden, bookmarked, version, extra, tags, collapsed = row[8:]
    return Node(
        id=id_,
        parent=parent,
        position=position,
        text=text,
        author=author,
        generation=_loads(generation) if generation is not None else None,
        tokens=_loads(tokens),
        created=created,
        hidden=bool(hidden),
        bookmarked=bool(bookmarked),
        version=version,
        extra=_loads(extra),
        tags=_loads(tags),
        collapsed=bool(collapsed),
    )


class LoomStore:
    """One loom tree in the SQLite file at ``path`` (created, with an empty root, if new).

    Safe to share between threads (one connection behind a lock); several processes may
    open the same file, SQLite serialises their transactions.
    """

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise MyopiaError(f"no loom file at {self.path}")
        if self.path.is_dir():
            raise MyopiaError(f"{self.path} is a folder; give a file name such as loom.sqlite")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each transaction is
        # exactly one logical change and nothing is left implicitly open.
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before it returns, even across power loss.
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._prepare_schema()
        except sqlite3.DatabaseError as err:
            self._conn.close()
            raise CorruptFileError(f"{self.path} is not a loom file ({err})") from err

    # ----------------------------------------------------------------- plumbing

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> LoomStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction; IMMEDIATE takes the write lock at once, so the version checks
        inside it cannot race another writer."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for reads made of several queries (``myopia.loom.view``)."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def _prepare_schema(self) -> None:
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise MyopiaError(
                f"{self.path} was written by a newer myopia (loom schema {version}, this one "
                f"reads up to {SCHEMA_VERSION}): upgrade myopia"
            )
        if version == SCHEMA_VERSION:
            return
        if version == 1:
            with self._write() as db:
                for statement in _MIGRATE_1_TO_2.split(";"):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        tables = self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise CorruptFileError(
                f"{self.path} is an SQLite file but not a loom tree: give a new file name"
            )
        with self._write() as db:
            for statement in _SCHEMA.split(";"):  # no ";" inside the schema's comments
                if statement.strip():
                    db.execute(statement)
            root = new_id()
            db.execute(
                "INSERT INTO nodes (id, parent, position, text, author, created) "
                "VALUES (?, NULL, 0, '', 'person', ?)",
                (root, now()),
            )
            db.execute(
                "INSERT INTO tree (id, root, focus, created) VALUES (1, ?, ?, ?)",
                (root, root, now()),
            )
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _row(self, db: sqlite3.Connection, node_id: str) -> Node:
        row = db.execute(f"SELECT {_NODE_COLUMNS} FROM nodes WHERE id = ?", (node_id,)).fetchone()
        if row is None:
            raise NodeNotFoundError(f"no node {node_id!r} in this tree")
        return _node(row)

    @staticmethod
    def _touch(db: sqlite3.Connection, ids: Sequence[str] = ()) -> int:
        """Raise the tree's revision and stamp ``ids`` with it; the new revision."""
        (revision,) = db.execute(
            "UPDATE tree SET revision = revision + 1 RETURNING revision"
        ).fetchone()
        db.executemany("UPDATE nodes SET changed = ? WHERE id = ?", [(revision, i) for i in ids])
        return revision

    def _check(self, db: sqlite3.Connection, node_id: str, expected_version: int) -> Node:
        node = self._row(db, node_id)
        if node.version != expected_version:
            raise StaleVersionError(
                f"node {node_id} was changed elsewhere (it is at version {node.version}, "
                f"this write was based on version {expected_version}): reload to see the "
                "change, then try again"
            )
        return node

    # -------------------------------------------------------------------- reads

    @property
    def root_id(self) -> str:
        with self._lock:
            return self._conn.execute("SELECT root FROM tree").fetchone()[0]

    @property
    def focus(self) -> str:
        with self._lock:
            return self._conn.execute("SELECT focus FROM tree").fetchone()[0]

    @property
    def extra(self) -> dict[str, Any]:
        with self._lock:
            return _loads(self._conn.execute("SELECT extra FROM tree").fetchone()[0])

    @property
    def revision(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT revision FROM tree").fetchone()[0]

    @property
    def settings(self) -> dict[str, Any]:
        """The generation settings the page last saved for this tree."""
        with self._lock:
            return _loads(self._conn.execute("SELECT settings FROM tree").fetchone()[0])

    def get(self, node_id: str) -> Node:
        with self._lock:
            return self._row(self._conn, node_id)

    def check_version(self, node_id: str, expected_version: int) -> Node:
        """The node, or :class:`StaleVersionError` if it is no longer at that version."""
        with self._lock:
            return self._check(self._conn, node_id, expected_version)

    def children(self, node_id: str) -> list[Node]:
        with self.reading() as db:
            self._row(db, node_id)
            rows = db.execute(
                f"SELECT {_NODE_COLUMNS} FROM nodes WHERE parent = ? ORDER BY position",
                (node_id,),
            ).fetchall()
        return [_node(r) for r in rows]

    def nodes(self) -> list[Node]:
        """Every node, parents before children (depth first, siblings in order)."""
        with self.reading() as db:
            return self._nodes(db)

    def _nodes(self, db: sqlite3.Connection) -> list[Node]:
        root = db.execute("SELECT root FROM tree").fetchone()[0]
        rows = db.execute(f"SELECT {_NODE_COLUMNS} FROM nodes").fetchall()
        by_parent: dict[str | None, list[Node]] = {}
        for node in map(_node, rows):
            by_parent.setdefault(node.parent, []).append(node)
        for siblings in by_parent.values():
            siblings.sort(key=lambda n: n.position)
        ordered: list[Node] = []
        stack = [n for n in by_parent.get(None, []) if n.id == root]
        while stack:  # iterative: imported trees can be thousands of nodes deep
            node = stack.pop()
            ordered.append(node)
            stack.extend(reversed(by_parent.get(node.id, [])))
        return ordered

    def ancestry(self, node_id: str) -> list[Node]:
        """The nodes from the root down to ``node_id``, both included."""
        with self.reading() as db:
            rows = db.execute(
                f"""WITH RECURSIVE up(id, depth) AS (
                        SELECT ?, 0
                        UNION ALL
                        SELECT nodes.parent, up.depth + 1 FROM nodes JOIN up ON nodes.id = up.id
                        WHERE nodes.parent IS NOT NULL)
                    SELECT {", ".join("n." + c for c in _NODE_COLUMNS.split(", "))}
                    FROM up JOIN nodes n ON n.id = up.id ORDER BY up.depth DESC""",
                (node_id,),
            ).fetchall()
        if not rows:
            raise NodeNotFoundError(f"no node {node_id!r} in this tree")
        return [_node(r) for r in rows]

    def branch_text(self, node_id: str) -> str:
        """The text a model continues at ``node_id``: its ancestors' texts and its own."""
        return "".join(n.text for n in self.ancestry(node_id))

    def history(self, node_id: str) -> list[HistoryEntry]:
        """The texts ``node_id`` had before its edits, oldest first."""
        with self.reading() as db:
            self._row(db, node_id)
            return self._history(db, "WHERE node = ?", (node_id,)).get(node_id, [])

    @staticmethod
    def _history(
        db: sqlite3.Connection, where: str = "", args: tuple = ()
    ) -> dict[str, list[HistoryEntry]]:
        rows = db.execute(
            f"SELECT node, version, text, tokens, replaced FROM node_history {where} ORDER BY id",
            args,
        ).fetchall()
        history: dict[str, list[HistoryEntry]] = {}
        for r in rows:
            history.setdefault(r[0], []).append(HistoryEntry(r[0], r[1], r[2], _loads(r[3]), r[4]))
        return history

    def history_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT node, count(*) FROM node_history GROUP BY node"
            ).fetchall()
        return dict(rows)

    def is_empty(self) -> bool:
        """True for a fresh tree: only a root with no text, never edited."""
        with self.reading() as db:
            return self._is_empty(db)

    @staticmethod
    def _is_empty(db: sqlite3.Connection) -> bool:
        (count,) = db.execute("SELECT count(*) FROM nodes").fetchone()
        (text,) = db.execute("SELECT text FROM nodes WHERE parent IS NULL").fetchone()
        (edits,) = db.execute("SELECT count(*) FROM node_history").fetchone()
        return count == 1 and text == "" and edits == 0

    def snapshot(self) -> TreeData:
        """The whole tree in memory, read in one transaction, for export."""
        with self.reading() as db:
            focus, extra = db.execute("SELECT focus, extra FROM tree").fetchone()
            return TreeData(
                nodes=self._nodes(db),
                focus=focus,
                extra=_loads(extra),
                history=self._history(db),
            )

    # ------------------------------------------------------------------- writes

    def add_children(
        self, parent_id: str, drafts: Sequence[NewNode], expected: dict[str, int]
    ) -> list[Node]:
        """Append ``drafts`` as children of ``parent_id`` in one transaction.

        ``expected`` maps node ids to the versions the caller based this on (the parent
        for a generation, the node branched from for a branch); any mismatch refuses the
        whole write.
        """
        for draft in drafts:
            check_text(draft.text)
            if draft.author not in AUTHORS:
                raise MyopiaError(f"author must be one of {AUTHORS}, not {draft.author!r}")
        with self._write() as db:
            self._row(db, parent_id)
            for node_id, version in expected.items():
                self._check(db, node_id, version)
            (last,) = db.execute(
                "SELECT coalesce(max(position), -1) FROM nodes WHERE parent = ?", (parent_id,)
            ).fetchone()
            created = now()
            ids = []
            for offset, draft in enumerate(drafts, start=1):
                ids.append(new_id())
                db.execute(
                    "INSERT INTO nodes (id, parent, position, text, author, generation, tokens,"
                    " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        ids[-1],
                        parent_id,
                        last + offset,
                        draft.text,
                        draft.author,
                        _dumps(draft.generation) if draft.generation is not None else None,
                        _dumps(draft.tokens),
                        created,
                    ),
                )
            self._touch(db, ids)
            return [self._row(db, i) for i in ids]

    def _replace_text(
        self, db: sqlite3.Connection, old: Node, text: str, tokens: list[dict[str, Any]]
    ) -> Node:
        """Keep ``old``'s text and tokens in its history, then give it ``text``."""
        db.execute(
            "INSERT INTO node_history (node, version, text, tokens, replaced) "
            "VALUES (?, ?, ?, ?, ?)",
            (old.id, old.version, old.text, _dumps(old.tokens), now()),
        )
        db.execute(
            "UPDATE nodes SET text = ?, tokens = ?, version = version + 1 WHERE id = ?",
            (text, _dumps(tokens), old.id),
        )
        self._touch(db, [old.id])
        return self._row(db, old.id)

    def edit_text(self, node_id: str, expected_version: int, text: str) -> Node:
        """Replace the node's text, keeping the old text (and its tokens) in its history.

        The tokens are cleared: they described the old text, not the new one.
        """
        check_text(text)
        with self._write() as db:
            return self._replace_text(db, self._check(db, node_id, expected_version), text, [])

    def restore(self, node_id: str, expected_version: int, from_version: int) -> Node:
        """Give the node back the text (and tokens) it had at ``from_version``; the text
        it has now goes to its history like any edit's."""
        with self._write() as db:
            node = self._check(db, node_id, expected_version)
            row = db.execute(
                "SELECT text, tokens FROM node_history WHERE node = ? AND version = ? "
                "ORDER BY id DESC LIMIT 1",
                (node_id, from_version),
            ).fetchone()
            if row is None:
                raise MyopiaError(
                    f"node {node_id} has no version {from_version} in its history: "
                    "pick one from GET /api/nodes/{id}/history"
                )
            return self._replace_text(db, node, row[0], _loads(row[1]))

    def _set_flag(self, node_id: str, expected_version: int, column: str, value: Any) -> Node:
        with self._write() as db:
            self._check(db, node_id, expected_version)
            db.execute(
                f"UPDATE nodes SET {column} = ?, version = version + 1 WHERE id = ?",
                (value, node_id),
            )
            self._touch(db, [node_id])
            return self._row(db, node_id)

    def set_hidden(self, node_id: str, expected_version: int, hidden: bool) -> Node:
        """Prune (hide) or unprune a node; its subtree stays in the file either way."""
        if hidden and self.get(node_id).parent is None:
            raise MyopiaError("the root cannot be pruned; prune its children instead")
        return self._set_flag(node_id, expected_version, "hidden", int(hidden))

    def set_bookmarked(self, node_id: str, expected_version: int, bookmarked: bool) -> Node:
        return self._set_flag(node_id, expected_version, "bookmarked", int(bookmarked))

    def set_tags(self, node_id: str, expected_version: int, tags: list[str]) -> Node:
        return self._set_flag(node_id, expected_version, "tags", _dumps(check_tags(tags)))

    def set_collapsed(self, node_id: str, collapsed: bool) -> Node:
        """Fold or unfold a node in the outline (a view: no version check)."""
        with self._write() as db:
            self._row(db, node_id)
            db.execute("UPDATE nodes SET collapsed = ? WHERE id = ?", (int(collapsed), node_id))
            self._touch(db, [node_id])
            return self._row(db, node_id)

    def set_focus(self, node_id: str) -> str:
        with self._write() as db:
            self._row(db, node_id)
            db.execute("UPDATE tree SET focus = ?", (node_id,))
        return node_id

    def set_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Store the page's generation settings (checked by the caller) for this tree."""
        with self._write() as db:
            db.execute("UPDATE tree SET settings = ?", (_dumps(settings),))
            self._touch(db)
        return settings

    def _subtree(self, db: sqlite3.Connection, node_id: str) -> list[str]:
        rows = db.execute(
            """WITH RECURSIVE down(id) AS (
                   SELECT ? UNION ALL SELECT n.id FROM nodes n JOIN down ON n.parent = down.id)
               SELECT id FROM down""",
            (node_id,),
        ).fetchall()
        return [r[0] for r in rows]

    def _remove(self, db: sqlite3.Connection, ids: list[str], heir: str) -> int:
        """Delete ``ids`` (whole subtrees) and their history; a focus among them goes to
        ``heir``."""
        db.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (id TEXT PRIMARY KEY)")
        db.execute("DELETE FROM doomed")
        db.executemany("INSERT INTO doomed VALUES (?)", [(i,) for i in ids])
        db.execute("DELETE FROM node_history WHERE node IN (SELECT id FROM doomed)")
        db.execute("DELETE FROM nodes WHERE id IN (SELECT id FROM doomed)")
        db.execute("UPDATE tree SET focus = ? WHERE focus IN (SELECT id FROM doomed)", (heir,))
        revision = self._touch(db)
        db.executemany(
            "INSERT OR REPLACE INTO removed (id, revision) VALUES (?, ?)",
            [(i, revision) for i in ids],
        )
        db.execute("DELETE FROM doomed")
        return revision

    def delete(self, node_id: str, expected_version: int) -> list[str]:
        """Delete the node and its whole subtree for good (prune hides reversibly);
        returns the ids removed."""
        with self._write() as db:
            node = self._check(db, node_id, expected_version)
            if node.parent is None:
                raise MyopiaError("the root cannot be deleted; delete its children instead")
            ids = self._subtree(db, node_id)
            self._remove(db, ids, node.parent)
            self._touch(db, [node.parent])
            return ids

    def split(self, node_id: str, expected_version: int, at: int) -> tuple[Node, Node]:
        """Cut the node's text at character ``at``: it keeps the start, a new only child
        gets the rest and takes over its children. Tokens follow their text where the
        cut falls between two tokens; otherwise both halves lose them (like an edit)."""
        with self._write() as db:
            node = self._check(db, node_id, expected_version)
            if not 0 < at < len(node.text):
                raise MyopiaError(
                    f"split at {at} is outside the text: give a position from 1 to "
                    f"{len(node.text) - 1} (characters)"
                )
            head_tokens, tail_tokens = _split_tokens(node.tokens, node.text, at)
            child = new_id()
            db.execute(
                "INSERT INTO nodes (id, parent, position, text, author, generation, tokens,"
                " created, tags) VALUES (?, ?, 0, ?, ?, ?, ?, ?, '[]')",
                (
                    child,
                    node_id,
                    node.text[at:],
                    node.author,
                    _dumps(node.generation) if node.generation is not None else None,
                    _dumps(tail_tokens),
                    node.created,
                ),
            )
            moved = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM nodes WHERE parent = ? AND id != ?", (node_id, child)
                )
            ]
            db.execute(
                "UPDATE nodes SET parent = ? WHERE parent = ? AND id != ?", (child, node_id, child)
            )
            self._touch(db, [child, *moved])
            head = self._replace_text(db, node, node.text[:at], head_tokens)
            return head, self._row(db, child)

    def merge(self, node_id: str, expected_version: int) -> Node:
        """Join the node with its only child: the child's text is appended, its children
        become the node's, the child goes (its text lives on in the node)."""
        with self._write() as db:
            node = self._check(db, node_id, expected_version)
            rows = db.execute(f"SELECT {_NODE_COLUMNS} FROM nodes WHERE parent = ?", (node_id,))
            children = [_node(r) for r in rows]
            if len(children) != 1:
                raise MyopiaError(
                    f"node {node_id} has {len(children)} children: merge joins a node with its "
                    "only child (prune or delete the others first)"
                )
            [child] = children
            text = node.text + child.text
            check_text(text)
            spelled = _spells(node.tokens, node.text) and _spells(child.tokens, child.text)
            tokens = node.tokens + child.tokens if spelled else []
            moved = [r[0] for r in db.execute("SELECT id FROM nodes WHERE parent = ?", (child.id,))]
            db.execute("UPDATE nodes SET parent = ? WHERE parent = ?", (node_id, child.id))
            db.execute("UPDATE tree SET focus = ? WHERE focus = ?", (node_id, child.id))
            self._remove(db, [child.id], node_id)
            self._touch(db, moved)
            return self._replace_text(db, node, text, tokens)

    def load(self, tree: TreeData) -> None:
        """Replace this (empty) tree by ``tree``, in one transaction."""
        if not tree.nodes or tree.nodes[0].parent is not None:
            raise MyopiaError("an imported tree needs its root first")
        for node in tree.nodes:
            check_text(node.text)
        with self._write() as db:
            if not self._is_empty(db):
                raise TreeNotEmptyError(
                    f"{self.path} already holds a tree: import into a new file instead"
                )
            db.execute("PRAGMA defer_foreign_keys = ON")  # the old root goes after the new
            old_root = db.execute("SELECT root FROM tree").fetchone()[0]
            db.execute("DELETE FROM nodes")
            db.executemany(
                f"INSERT INTO nodes ({_NODE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    (
                        node.id,
                        node.parent,
                        node.position,
                        node.text,
                        node.author,
                        _dumps(node.generation) if node.generation is not None else None,
                        _dumps(node.tokens),
                        node.created,
                        int(node.hidden),
                        int(node.bookmarked),
                        node.version,
                        _dumps(node.extra),
                        _dumps(node.tags),
                        int(node.collapsed),
                    )
                    for node in tree.nodes
                ),
            )
            db.executemany(
                "INSERT INTO node_history (node, version, text, tokens, replaced) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    (e.node, e.version, e.text, _dumps(e.tokens), e.replaced)
                    for entries in tree.history.values()
                    for e in entries
                ),
            )
            root = tree.nodes[0].id
            ids = {n.id for n in tree.nodes}
            focus = tree.focus if tree.focus in ids else root
            db.execute(
                "UPDATE tree SET root = ?, focus = ?, extra = ?", (root, focus, _dumps(tree.extra))
            )
            revision = self._touch(db)
            db.execute("UPDATE nodes SET changed = ?", (revision,))
            if old_root not in ids:
                db.execute(
                    "INSERT OR REPLACE INTO removed (id, revision) VALUES (?, ?)",
                    (old_root, revision),
                )


def _spells(tokens: list[dict[str, Any]], text: str) -> bool:
    return "".join(t["text"] for t in tokens) == text


def _split_tokens(
    tokens: list[dict[str, Any]], text: str, at: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The tokens of ``text[:at]`` and of ``text[at:]``, or none where ``at`` cuts a token."""
    if not _spells(tokens, text):
        return [], []
    length = 0
    for i, token in enumerate(tokens):
        if length == at:
            return tokens[:i], tokens[i:]
        length += len(token["text"])
    return [], []
