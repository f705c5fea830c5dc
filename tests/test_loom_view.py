"""The page's piecewise reads: the outline window against the whole outline computed
the obvious way, on random trees with pruned and collapsed nodes; deep chains."""

import random

import pytest

from myopia.loom import view
from myopia.loom.store import LoomStore, Node, TreeData


def random_tree(rng: random.Random, size: int) -> TreeData:
    nodes = [Node("r", None, 0, "root", "person", None, [], None, False, False, 1)]
    counts = {"r": 0}
    for i in range(1, size):
        parent = rng.choice(nodes[-8:] if rng.random() < 0.7 else nodes).id
        counts[parent] += 1
        nodes.append(
            Node(
                f"n{i}", parent, counts[parent] * 2, f"text {i}", "model", None, [], None,
                hidden=rng.random() < 0.15, bookmarked=False, version=1,
                collapsed=rng.random() < 0.1,
            )
        )  # fmt: skip
        counts[f"n{i}"] = 0
    return TreeData(nodes=nodes)


def whole_outline(tree: TreeData, visible: view.Filter) -> list[tuple[str, int]]:
    """Reference: every shown row in order, with depth, by walking the whole tree."""
    by_id = {n.id: n for n in tree.nodes}
    kids: dict[str, list[Node]] = {}
    for n in tree.nodes:
        if n.parent is not None:
            kids.setdefault(n.parent, []).append(n)
    root = visible.root or "r"
    depth = 0
    up = by_id[root]
    while up.parent is not None:
        depth, up = depth + 1, by_id[up.parent]
    rows, stack = [], [(by_id[root], depth)]
    while stack:
        node, d = stack.pop()
        rows.append((node.id, d))
        if node.collapsed:
            continue
        shown = [k for k in sorted(kids.get(node.id, []), key=lambda k: k.position)
                 if visible.show_pruned or not k.hidden]  # fmt: skip
        stack.extend((k, d + 1) for k in reversed(shown))
    return rows


@pytest.mark.parametrize("seed", range(4))
def test_the_outline_window_is_the_whole_outline_cut_around_the_focus(tmp_path, seed):
    rng = random.Random(seed)
    tree = random_tree(rng, 300)
    with LoomStore(tmp_path / "t.sqlite") as store:
        store.load(tree)
        for _ in range(25):
            hoist = rng.choice([None, None, rng.choice(tree.nodes).id])
            visible = view.Filter(show_pruned=rng.random() < 0.5, root=hoist)
            focus = rng.choice(tree.nodes).id
            got = view.neighbourhood(store, focus, visible, before=7, after=11)
            if got["hoist"] is None:
                visible = view.Filter(visible.show_pruned, None)
            rows = whole_outline(tree, visible)
            ids = [r[0] for r in rows]
            shown = [(r["id"], r["depth"]) for r in got["outline"]["rows"]]
            start = ids.index(shown[0][0])
            assert shown == rows[start : start + len(shown)]
            # The anchor (the focus, or the ancestor hiding it) with 7 rows above where
            # there are 7, 11 below where there are 11.
            path = [n["id"] for n in got["ancestry"]]
            anchor = next(i for i in range(len(path) - 1, -1, -1) if path[i] in ids)
            at = ids.index(path[anchor])
            assert start == max(0, at - 7) and len(shown) == min(len(rows), at + 12) - start
            assert got["outline"]["more_above"] == (start > 0)
            assert got["outline"]["more_below"] == (start + len(shown) < len(rows))


def test_a_5000_deep_chain_is_read_a_window_at_a_time(tmp_path):
    nodes = [Node("n0", None, 0, "p0", "person", None, [], None, False, False, 1)]
    nodes += [
        Node(f"n{i}", f"n{i - 1}", 0, f" p{i}", "model", None, [], None, False, False, 1)
        for i in range(1, 5000)
    ]
    with LoomStore(tmp_path / "chain.sqlite") as store:
        store.load(TreeData(nodes=nodes))
        got = view.neighbourhood(store, "n4999", view.Filter(), before=30, after=60)
        assert len(got["ancestry"]) == 5000
        rows = got["outline"]["rows"]
        assert [r["depth"] for r in rows] == list(range(4969, 5000))
        assert got["outline"]["more_above"] and not got["outline"]["more_below"]
        middle = view.neighbourhood(store, "n2500", view.Filter(), before=3, after=3)
        assert [r["id"] for r in middle["outline"]["rows"]] == [f"n{i}" for i in range(2497, 2504)]


@pytest.mark.parametrize("seed", range(3))
def test_scrolling_past_either_end_continues_the_whole_outline(tmp_path, seed):
    # What the page does when the person scrolls to an end of its window: the rows
    # beyond its first or last row, the same as the whole outline's next ones.
    rng = random.Random(seed)
    tree = random_tree(rng, 300)
    with LoomStore(tmp_path / "t.sqlite") as store:
        store.load(tree)
        for _ in range(25):
            visible = view.Filter(show_pruned=rng.random() < 0.5)
            rows = whole_outline(tree, visible)
            at = rng.randrange(len(rows))
            edge, depth = rows[at]
            count = rng.randint(1, 40)
            down = view.more_rows(store, edge, depth, visible, down=True, count=count)
            assert [(r["id"], r["depth"]) for r in down["rows"]] == rows[at + 1 : at + 1 + count]
            assert down["more"] == (at + 1 + count < len(rows))
            up = view.more_rows(store, edge, depth, visible, down=False, count=count)
            assert [(r["id"], r["depth"]) for r in up["rows"]] == rows[max(0, at - count) : at]
            assert up["more"] == (at - count > 0)


def test_scrolling_a_5000_deep_chain_window_by_window_reaches_its_end(tmp_path):
    nodes = [Node("n0", None, 0, "p0", "person", None, [], None, False, False, 1)]
    nodes += [
        Node(f"n{i}", f"n{i - 1}", 0, f" p{i}", "model", None, [], None, False, False, 1)
        for i in range(1, 5000)
    ]
    with LoomStore(tmp_path / "chain.sqlite") as store:
        store.load(TreeData(nodes=nodes))
        edge, depth, seen, more = "n0", 0, 1, True
        while more:  # a loop, as the page scrolls: nothing recurses on depth
            got = view.more_rows(store, edge, depth, view.Filter(), down=True, count=500)
            assert [r["depth"] for r in got["rows"]] == list(range(depth + 1, depth + 501))[
                : len(got["rows"])
            ]
            edge, depth, more = got["rows"][-1]["id"], got["rows"][-1]["depth"], got["more"]
            seen += len(got["rows"])
        assert (seen, edge) == (5000, "n4999")
        with pytest.raises(view.NodeNotFoundError):
            view.more_rows(store, "gone", 3, view.Filter(), down=True, count=5)
