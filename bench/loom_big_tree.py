"""Server time of the loom's page actions on a big tree, against a 100-node tree.

Three trees side by side in one process: 100 nodes (the baseline), 50,000 nodes (a
bushy story: each node 1 to 4 children, a few pruned and collapsed) and a chain 5,000
nodes deep (a linear story). For each, the time of what one key press costs the
server: a navigation (``PUT /api/focus`` then ``GET /api/view`` of the new focus) and a
write (``PUT /api/nodes/{id}/text`` then ``GET /api/view``), through FastAPI's test
client (so routing, validation and JSON are included; no network). The trees take
turns, action by action, and the script prints the median over focus nodes drawn at
random and its ratio to the 100-node tree's.

    python bench/loom_big_tree.py                # 50,000 nodes, 5,000 deep, 40 actions
    python bench/loom_big_tree.py --actions 100
    python bench/loom_big_tree.py --profile      # cProfile of the writes, top lines

The trees are built in memory, loaded, then dropped and ``gc.freeze()`` is called, as
the server (``myopia.loom.server``) does once it has started: a server holds none of
them, and 50,000 ``Node``s left in memory made the collector's full passes stall
actions by 100 to 600 ms, which measured the bench rather than the loom.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import random
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from myopia.loom import jsontext, view
from myopia.loom.app import create_app
from myopia.loom.demo_backend import DemoBackend
from myopia.loom.store import LoomStore, Node, TreeData

TOKENS = [{"text": " word", "logprob": -1.0, "token_id": 1, "alternatives": []}] * 4


def bushy(size: int, rng: random.Random) -> TreeData:
    nodes = [Node("n0", None, 0, "Once upon a time", "person", None, [], None, False, False, 1)]
    frontier, counts = ["n0"], {"n0": 0}
    for i in range(1, size):
        parent = frontier[rng.randrange(max(0, len(frontier) - 50), len(frontier))]
        position = counts[parent]
        counts[parent] += 1
        if counts[parent] >= rng.randint(1, 4):
            frontier.remove(parent)
        node_id = f"n{i}"
        nodes.append(
            Node(
                node_id, parent, position, " word" * 4, "model", {"backend": "bench"}, TOKENS,
                None, hidden=rng.random() < 0.02, bookmarked=False, version=1,
                collapsed=rng.random() < 0.01,
            )
        )  # fmt: skip
        frontier.append(node_id)
        counts[node_id] = 0
    return TreeData(nodes=nodes)


def chain(depth: int) -> TreeData:
    nodes = [Node("n0", None, 0, "It began", "person", None, [], None, False, False, 1)]
    nodes += [
        Node(f"n{i}", f"n{i - 1}", 0, f" paragraph {i}.", "model", None, TOKENS[:0], None,
             False, False, 1)
        for i in range(1, depth)
    ]  # fmt: skip
    return TreeData(nodes=nodes)


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def navigate(client: TestClient, node_id: str) -> None:
    assert client.put("/api/focus", json={"node": node_id}).status_code == 200
    assert client.get("/api/view", params={"focus": node_id}).status_code == 200


def write(client: TestClient, node_id: str) -> float:
    version = client.get(f"/api/nodes/{node_id}").json()["version"]  # not timed: the page knows
    start = time.perf_counter()
    body = {"version": version, "text": f" edited {version}"}
    assert client.put(f"/api/nodes/{node_id}/text", json=body).status_code == 200
    assert client.get("/api/view", params={"focus": node_id}).status_code == 200
    return time.perf_counter() - start


def profile_writes(stores: dict, ids: dict, rng: random.Random, actions: int) -> None:
    """cProfile of what a write costs the server on the two big trees: the edit and the
    view that follows, called directly (the test client runs the app in other threads,
    which cProfile does not see)."""
    for name in list(stores)[1:]:
        store, profile = stores[name], cProfile.Profile()
        for _ in range(actions):
            node = store.get(rng.choice(ids[name]))
            profile.enable()
            store.edit_text(node.id, node.version, f" edited {node.version}")
            jsontext.dumps(view.neighbourhood(store, node.id, view.Filter()))
            profile.disable()
        print(f"\n{name}: {actions} writes, by total time")
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50_000)
    parser.add_argument("--depth", type=int, default=5_000)
    parser.add_argument("--actions", type=int, default=40)
    parser.add_argument("--profile", action="store_true", help="profile writes instead")
    args = parser.parse_args()
    rng = random.Random(0)
    folder = Path(tempfile.mkdtemp(prefix="loom-bench-"))
    trees = {
        "100 nodes": bushy(100, rng),
        f"{args.nodes:,} nodes": bushy(args.nodes, rng),
        f"chain {args.depth:,} deep": chain(args.depth),
    }
    clients, ids, stores = {}, {}, {}
    for name, tree in trees.items():
        start = time.perf_counter()
        store = LoomStore(folder / f"{len(clients)}.sqlite")
        store.load(tree)
        stores[name] = store
        clients[name] = TestClient(create_app(store, DemoBackend()))
        ids[name] = [n.id for n in tree.nodes]
        whole = len(clients[name].get("/api/tree").content)
        view = len(clients[name].get("/api/view", params={"focus": ids[name][-1]}).content)
        print(
            f"{name}: loaded in {time.perf_counter() - start:.1f} s; /api/tree {whole:,} bytes, "
            f"/api/view of the deepest-made node {view:,} bytes"
        )
    del trees, tree
    gc.freeze()  # as the server does after starting
    if args.profile:
        return profile_writes(stores, ids, rng, args.actions)
    times: dict[str, dict[str, list[float]]] = {n: {"navigate": [], "write": []} for n in ids}
    for _ in range(args.actions):  # the trees take turns, action by action
        for name, client in clients.items():
            target = rng.choice(ids[name])
            times[name]["navigate"].append(timed(lambda c=client, t=target: navigate(c, t)))
            times[name]["write"].append(write(client, rng.choice(ids[name])))
    base = {kind: statistics.median(times["100 nodes"][kind]) for kind in ("navigate", "write")}
    print(f"\nmedian server time per action over {args.actions} random nodes (ratio to 100 nodes)")
    for name in ids:
        cells = []
        for kind in ("navigate", "write"):
            median = statistics.median(times[name][kind])
            worst = max(times[name][kind])
            ratio = median / base[kind]
            cells.append(f"{kind} {1000 * median:6.1f} ms (x{ratio:.2f}, max {1000 * worst:.0f})")
        print(f"  {name:>18}: " + "   ".join(cells))


if __name__ == "__main__":
    main()
