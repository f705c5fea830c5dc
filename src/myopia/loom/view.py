"""What the page shows, read a piece at a time: a node's neighbourhood, a window of the
outline, what changed since a revision, search results.

The page never loads the whole tree: a tree of 50,000 nodes is megabytes, and each key
press would reload it. Every function here costs in proportion to what it returns (the
window, the branch, the changes), found through the ``parent`` index and SQLite
recursive CTEs, never by a recursion in Python.

The outline is the tree in depth-first order (siblings in order), without pruned nodes
unless asked, without what lies under a collapsed node, starting at a hoisted node if
any. :func:`outline` returns ``before`` rows above an anchor node and ``after`` below,
each with its depth, walking from the anchor one row at a time; :func:`more_rows` walks on
from the first or last row the page holds, when the person scrolls past it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from myopia.loom import jsontext
from myopia.loom.store import LoomStore, NodeNotFoundError

PREVIEW_CHARS = 120  # of a row's text in the outline; the full text comes with the focus
MAX_CHANGES = 1000  # more changed nodes than this: the page reloads its view instead

_SUMMARY = """SELECT id, parent, position, substr(text, 1, ?), length(text), author, hidden,
    bookmarked, collapsed, tags, version,
    (SELECT count(*) FROM nodes c WHERE c.parent = n.id AND (? OR NOT c.hidden)),
    (SELECT count(*) FROM node_history h WHERE h.node = n.id)
    FROM nodes n"""


@dataclass(frozen=True)
class Filter:
    """Which nodes the outline shows."""

    show_pruned: bool = False
    root: str | None = None  # a hoisted node: the outline starts there


def _summaries(
    db: sqlite3.Connection, where: str, args: tuple, show_pruned: bool, chars: int
) -> list[dict[str, Any]]:
    rows = db.execute(f"{_SUMMARY} {where}", (chars, int(show_pruned), *args)).fetchall()
    return [
        {
            "id": r[0],
            "parent": r[1],
            "position": r[2],
            "text": r[3],
            "length": r[4],
            "author": r[5],
            "hidden": bool(r[6]),
            "bookmarked": bool(r[7]),
            "collapsed": bool(r[8]),
            "tags": jsontext.loads(r[9]),
            "version": r[10],
            "children": r[11],
            "edits": r[12],
        }
        for r in rows
    ]


def summary(db: sqlite3.Connection, node_id: str, show_pruned: bool = False) -> dict[str, Any]:
    found = _summaries(db, "WHERE id = ?", (node_id,), show_pruned, PREVIEW_CHARS)
    if not found:
        raise NodeNotFoundError(f"no node {node_id!r} in this tree")
    return found[0]


def children(db: sqlite3.Connection, node_id: str, show_pruned: bool) -> list[dict[str, Any]]:
    where = "WHERE parent = ? AND (? OR NOT hidden) ORDER BY position"
    return _summaries(db, where, (node_id, int(show_pruned)), show_pruned, PREVIEW_CHARS)


def ancestry(db: sqlite3.Connection, node_id: str) -> list[dict[str, Any]]:
    """Root to ``node_id``: id, full text and the flags that hide a row, of each node.

    On a 5,000-deep story this is most of a view's cost, so it reads only what the page
    uses: the walk up carries each node's rowid, and the texts are then read by rowid
    (not looked up by id a second time); the dicts are made in one pass."""
    rows = db.execute(
        """WITH RECURSIVE up(rid, parent, depth) AS (
               SELECT rowid, parent, 0 FROM nodes WHERE id = ?
               UNION ALL
               SELECT n.rowid, n.parent, up.depth + 1 FROM nodes n JOIN up ON n.id = up.parent)
           SELECT n.id, n.text, n.hidden, n.collapsed
           FROM up JOIN nodes n ON n.rowid = up.rid ORDER BY up.depth DESC""",
        (node_id,),
    ).fetchall()
    if not rows:
        raise NodeNotFoundError(f"no node {node_id!r} in this tree")
    return [{"id": i, "text": t, "hidden": h, "collapsed": c} for i, t, h, c in rows]


# ----------------------------------------------------------------------- outline


class _Walker:
    """Steps through the outline's depth-first order one row at a time."""

    def __init__(self, db: sqlite3.Connection, root: str, show_pruned: bool):
        self.db, self.root, self.show = db, root, int(show_pruned)

    def _one(self, sql: str, args: tuple) -> tuple | None:
        return self.db.execute(sql, args).fetchone()

    def _open(self, node_id: str) -> bool:
        """Whether the node's children show: it is not collapsed."""
        return not self._one("SELECT collapsed FROM nodes WHERE id = ?", (node_id,))[0]

    def _child(self, node_id: str, last: bool) -> str | None:
        order = "DESC" if last else "ASC"
        row = self._one(
            f"SELECT id FROM nodes WHERE parent = ? AND (? OR NOT hidden) "
            f"ORDER BY position {order} LIMIT 1",
            (node_id, self.show),
        )
        return row[0] if row else None

    def _sibling(self, node_id: str, after: bool) -> str | None:
        compare, order = (">", "ASC") if after else ("<", "DESC")
        row = self._one(
            f"""SELECT s.id FROM nodes s JOIN nodes n ON s.parent = n.parent
                WHERE n.id = ? AND s.position {compare} n.position AND (? OR NOT s.hidden)
                ORDER BY s.position {order} LIMIT 1""",
            (node_id, self.show),
        )
        return row[0] if row else None

    def next(self, node_id: str, depth: int) -> tuple[str, int] | None:
        if self._open(node_id):
            child = self._child(node_id, last=False)
            if child is not None:
                return child, depth + 1
        # The nearest of the node and its ancestors (below the root) with a next sibling:
        # one query (a loop inside SQLite), not one per level of a 5,000-deep chain.
        row = self._one(
            """WITH RECURSIVE up(id, parent, position, climbed) AS (
                   SELECT id, parent, position, 0 FROM nodes WHERE id = ?
                   UNION ALL
                   SELECT n.id, n.parent, n.position, up.climbed + 1
                   FROM nodes n JOIN up ON n.id = up.parent WHERE up.id != ?)
               SELECT (SELECT s.id FROM nodes s WHERE s.parent = up.parent
                       AND s.position > up.position AND (? OR NOT s.hidden)
                       ORDER BY s.position LIMIT 1) AS next, climbed
               FROM up WHERE up.id != ? AND next IS NOT NULL ORDER BY climbed LIMIT 1""",
            (node_id, self.root, self.show, self.root),
        )
        return (row[0], depth - row[1]) if row else None

    def previous(self, node_id: str, depth: int) -> tuple[str, int] | None:
        if node_id == self.root:
            return None
        sibling = self._sibling(node_id, after=False)
        if sibling is None:
            parent = self._one("SELECT parent FROM nodes WHERE id = ?", (node_id,))[0]
            return parent, depth - 1
        # The last row of the sibling's shown subtree.
        while self._open(sibling):
            child = self._child(sibling, last=True)
            if child is None:
                break
            sibling, depth = child, depth + 1
        return sibling, depth


def anchor_of(path: list[dict[str, Any]], visible: Filter) -> tuple[str, int]:
    """The row the outline centres on for a focus at the end of ``path`` (root first): the
    focus, or the ancestor that hides it (collapsed, or pruned while pruned are hidden);
    with its depth below the tree's root."""
    start = 0
    if visible.root is not None:
        start = next((i for i, n in enumerate(path) if n["id"] == visible.root), 0)
    for i in range(start + 1, len(path)):
        if path[i]["hidden"] and not visible.show_pruned:
            return path[i - 1]["id"], i - 1
        if path[i - 1]["collapsed"]:
            return path[i - 1]["id"], i - 1
    return path[-1]["id"], len(path) - 1


def outline(
    db: sqlite3.Connection,
    tree_root: str,
    anchor: str,
    anchor_depth: int,
    visible: Filter,
    before: int = 30,
    after: int = 60,
) -> dict[str, Any]:
    """Rows around ``anchor``: ``{"rows": [summary + "depth"], "more_above", "more_below"}``."""
    root = visible.root or tree_root
    walker = _Walker(db, root, visible.show_pruned)
    above: list[tuple[str, int]] = []
    at: tuple[str, int] | None = (anchor, anchor_depth)
    while at is not None and len(above) < before + 1:
        at = walker.previous(*at)
        if at is not None:
            above.append(at)
    below: list[tuple[str, int]] = []
    at = (anchor, anchor_depth)
    while at is not None and len(below) < after + 1:
        at = walker.next(*at)
        if at is not None:
            below.append(at)
    more_above, more_below = len(above) > before, len(below) > after
    placed = [*reversed(above[:before]), (anchor, anchor_depth), *below[:after]]
    rows = _window(db, placed, visible)
    return {"rows": rows, "more_above": more_above, "more_below": more_below}


def _window(
    db: sqlite3.Connection, placed: list[tuple[str, int]], visible: Filter
) -> list[dict[str, Any]]:
    """The summaries of the ``placed`` (id, depth) rows, in their order, with their depth:
    one query for the window, not one per row (90 of them were a fifth of a view's time)."""
    ids = [node_id for node_id, _ in placed]
    where = "WHERE id IN (SELECT value FROM json_each(?))"
    found = _summaries(db, where, (jsontext.dumps(ids),), visible.show_pruned, PREVIEW_CHARS)
    by_id = {s["id"]: s for s in found}
    return [{**by_id[node_id], "depth": depth} for node_id, depth in placed]


def more_rows(
    store: LoomStore, edge: str, edge_depth: int, visible: Filter, down: bool, count: int
) -> dict[str, Any]:
    """The ``count`` outline rows below (``down``) or above the row ``edge`` (the last or
    first row the page holds, at ``edge_depth``), not including it: the page scrolled to
    the end of its window. ``{"rows", "more"}``: whether rows lie beyond these."""
    with store.reading() as db:
        tree_root = db.execute("SELECT root FROM tree").fetchone()[0]
        summary(db, edge, visible.show_pruned)  # 404 for a row deleted meanwhile
        if visible.root is not None:
            summary(db, visible.root, visible.show_pruned)
        before, after = (0, count) if down else (count, 0)
        window = outline(db, tree_root, edge, edge_depth, visible, before, after)
    rows = window["rows"][1:] if down else window["rows"][:-1]
    return {"rows": rows, "more": window["more_below" if down else "more_above"]}


# ----------------------------------------------------------------- the page's view


def neighbourhood(
    store: LoomStore, focus: str, visible: Filter, before: int = 30, after: int = 60
) -> dict[str, Any]:
    """Everything the page draws for ``focus``, read in one snapshot."""
    with store.reading() as db:
        revision, tree_root = db.execute("SELECT revision, root FROM tree").fetchone()
        path = ancestry(db, focus)
        if visible.root is not None and visible.root not in {n["id"] for n in path}:
            visible = Filter(visible.show_pruned, None)  # the focus left the hoisted subtree
        anchor, depth = anchor_of(path, visible)
        parent = path[-2]["id"] if len(path) > 1 else None
        return {
            "revision": revision,
            "file": store.path.name,
            "root": tree_root,
            "hoist": visible.root,
            "node": store.get(focus).to_json(),
            "edits": summary(db, focus, visible.show_pruned)["edits"],
            "ancestry": [{"id": n["id"], "text": n["text"]} for n in path],
            "children": children(db, focus, visible.show_pruned),
            "siblings": children(db, parent, visible.show_pruned) if parent else [],
            "outline": outline(db, tree_root, anchor, depth, visible, before, after),
        }


def changes(store: LoomStore, since: int) -> dict[str, Any]:
    """The ids changed and removed since revision ``since`` (``"reload": true`` when
    there are more than the page should fetch one by one)."""
    with store.reading() as db:
        (revision,) = db.execute("SELECT revision FROM tree").fetchone()
        changed = [
            r[0]
            for r in db.execute(
                "SELECT id FROM nodes WHERE changed > ? LIMIT ?", (since, MAX_CHANGES + 1)
            )
        ]
        removed = [
            r[0]
            for r in db.execute(
                "SELECT id FROM removed WHERE revision > ? LIMIT ?", (since, MAX_CHANGES + 1)
            )
        ]
    many = len(changed) > MAX_CHANGES or len(removed) > MAX_CHANGES
    return {
        "revision": revision,
        "changed": [] if many else changed,
        "removed": [] if many else removed,
        "reload": many,
    }


def search(store: LoomStore, query: str, limit: int = 50) -> list[dict[str, Any]]:
    """Nodes whose text holds ``query`` (case-insensitive), or, for ``#word``, tagged
    ``word``; in the order they were made."""
    with store.reading() as db:
        if query.startswith("#") and len(query) > 1:
            where = "WHERE EXISTS (SELECT 1 FROM json_each(n.tags) WHERE value = ?)"
            args: tuple = (query[1:],)
        else:
            where = "WHERE instr(lower(text), lower(?)) > 0"
            args = (query,)
        return _summaries(db, f"{where} ORDER BY rowid LIMIT ?", (*args, limit), True, 200)


def bookmarks(store: LoomStore, limit: int = 200) -> list[dict[str, Any]]:
    with store.reading() as db:
        where = "WHERE bookmarked ORDER BY rowid LIMIT ?"
        return _summaries(db, where, (limit,), True, PREVIEW_CHARS)


def tags(store: LoomStore) -> list[str]:
    """Every tag in use, sorted."""
    with store.reading() as db:
        rows = db.execute(
            "SELECT DISTINCT value FROM nodes, json_each(nodes.tags) ORDER BY value"
        ).fetchall()
    return [r[0] for r in rows]
