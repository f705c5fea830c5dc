"""Import and export of loom trees as JSON: the loom's own format and socketteer/loom's.

Own format (``"format": "myopia-loom"``): every stored field of every node, flat, with
``parent`` ids, and each node's edit history. Exporting and importing it loses nothing.

socketteer/loom format (the original Python loom; learnt from its ``model.py`` and the
files it saves): ``{"root": node, "selected_node_id": ..., "chapters": ..., "tags": ...,
"model_responses": {id: response}, ...}`` with nested nodes ``{"id", "text",
"children", "parent_id", "tags": ["bookmark", "archived", ...], "meta": {"source":
"AI" | "prompt" | "mixed", "creation_timestamp": "%Y-%m-%d-%H.%M.%S"}, "generation":
{"id", "index"}, ...}``. A generated node's tokens live in
``model_responses[id]["completions"][index]["tokens"]``, each ``{"generatedToken":
{"token", "logprob"}, "position": {"start", "end"}, "counterfactuals": {token:
logprob}}``; older files keep an OpenAI choice under ``meta.generation`` instead
(``logprobs.tokens``, ``token_logprobs``, ``top_logprobs``). Mapping:

- bookmark tag (or old ``"bookmark": true``) <-> bookmarked; archived tag <-> hidden
  (pruned): socketteer hides archived nodes by default;
- ``meta.source`` AI or mixed, or a ``generation`` reference <-> author ``model``;
- tokens are imported only where they spell the node's text exactly;
- every field the loom does not model (``chapter_id``, ``visited``, ``text_attributes``,
  ``meta``, chapters, tag definitions, model responses, ...) is kept in ``extra`` and
  written back on export, so import -> export gives the file back.

Nodes made in this loom get a ``meta`` and, when they have tokens, a
``model_responses`` entry in socketteer's shape (plus ``myopia_*`` keys the original
ignores, which keep token ids and settings). Edit history does not survive socketteer
export: that format has none.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from myopia.errors import CorruptFileError, MyopiaError
from myopia.io import atomic_write_json
from myopia.loom.store import (
    AUTHORS,
    HistoryEntry,
    LoomStore,
    Node,
    TreeData,
    new_id,
)

OWN_FORMAT = "myopia-loom"
OWN_FORMAT_VERSION = 1
FORMATS = ("myopia", "socketteer")

# socketteer's util.timestamp(): local time with no zone. Read and written as if UTC, so
# a round trip gives the same string back (the zone was never recorded).
_SOCKETTEER_TIME = "%Y-%m-%d-%H.%M.%S"
_OWN_TIME = "%Y-%m-%dT%H:%M:%SZ"
# Node fields the loom models; everything else a socketteer node holds goes to extra.
# "tags" is kept in extra too (it holds tags besides bookmark/archived, in their order).
_SOCKETTEER_MODELED = {"id", "text", "children", "parent_id", "bookmark", "archived"}
_TREE_MODELED = {"root", "selected_node_id"}


# ------------------------------------------------------------------------- own format


def export_own(tree: TreeData) -> dict[str, Any]:
    return {
        "format": OWN_FORMAT,
        "version": OWN_FORMAT_VERSION,
        "focus": tree.focus,
        "extra": tree.extra,
        "nodes": [
            {**n.to_json(), "history": [e.to_json() for e in tree.history.get(n.id, [])]}
            for n in tree.nodes
        ],
    }


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise CorruptFileError(f"not a valid loom file: {message}")


def import_own(data: dict[str, Any]) -> TreeData:
    _require(data.get("version") == OWN_FORMAT_VERSION, f"unknown version {data.get('version')}")
    raw_nodes = data.get("nodes")
    _require(isinstance(raw_nodes, list) and len(raw_nodes) > 0, "no nodes")
    nodes: list[Node] = []
    history: dict[str, list[HistoryEntry]] = {}
    seen: set[str] = set()
    for i, raw in enumerate(raw_nodes):
        _require(isinstance(raw, dict), f"node {i} is not an object")
        node_id, parent = raw.get("id"), raw.get("parent")
        _require(isinstance(node_id, str) and node_id not in seen, f"node {i}: bad or repeated id")
        _require((parent is None) == (i == 0), f"node {node_id}: only the first node is the root")
        _require(parent is None or parent in seen, f"node {node_id}: parent {parent} not before it")
        _require(raw.get("author") in AUTHORS, f"node {node_id}: author must be one of {AUTHORS}")
        _require(isinstance(raw.get("text"), str), f"node {node_id}: text is not a string")
        seen.add(node_id)
        nodes.append(
            Node(
                id=node_id,
                parent=parent,
                position=int(raw.get("position", 0)),
                text=raw["text"],
                author=raw["author"],
                generation=raw.get("generation"),
                tokens=list(raw.get("tokens") or []),
                created=raw.get("created"),
                hidden=bool(raw.get("hidden", False)),
                bookmarked=bool(raw.get("bookmarked", False)),
                version=int(raw.get("version", 1)),
                extra=dict(raw.get("extra") or {}),
            )
        )
        entries = raw.get("history") or []
        if entries:
            history[node_id] = [
                HistoryEntry(node_id, e["version"], e["text"], e.get("tokens", []), e["replaced"])
                for e in entries
            ]
    return TreeData(
        nodes=nodes, focus=data.get("focus"), extra=data.get("extra") or {}, history=history
    )


# ------------------------------------------------------------------ socketteer format


def _to_own_time(stamp: Any) -> str | None:
    try:
        return datetime.strptime(stamp, _SOCKETTEER_TIME).strftime(_OWN_TIME)
    except (TypeError, ValueError):
        return None


def _to_socketteer_time(created: str | None) -> str:
    moment = datetime.strptime(created, _OWN_TIME) if created else datetime.now(UTC)
    return moment.strftime(_SOCKETTEER_TIME)


def _tokens_from_response(completion: dict[str, Any]) -> list[dict[str, Any]]:
    tokens = []
    for t in completion.get("tokens") or []:
        chosen = t["generatedToken"]
        if "myopia_alternatives" in t:
            alternatives = t["myopia_alternatives"]
        else:
            pairs = sorted((t.get("counterfactuals") or {}).items(), key=lambda kv: -kv[1])
            alternatives = [{"text": k, "logprob": v, "token_id": None} for k, v in pairs]
        tokens.append(
            {
                "text": chosen["token"],
                "logprob": chosen["logprob"],
                "token_id": chosen.get("myopia_token_id"),
                "alternatives": alternatives,
            }
        )
    return tokens


def _tokens_from_openai_choice(choice: dict[str, Any]) -> list[dict[str, Any]]:
    logprobs = choice.get("logprobs") or {}
    texts = logprobs.get("tokens") or []
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or [None] * len(texts)
    tokens = []
    for text, value, top in zip(texts, values, tops, strict=False):
        pairs = sorted((top or {}).items(), key=lambda kv: -kv[1])
        alternatives = [{"text": k, "logprob": v, "token_id": None} for k, v in pairs]
        tokens.append(
            {"text": text, "logprob": value, "token_id": None, "alternatives": alternatives}
        )
    return tokens


def _socketteer_generation(
    raw: dict[str, Any], responses: dict[str, Any]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The generation record and tokens of a socketteer node, where it has them."""
    ref = raw.get("generation")
    if isinstance(ref, dict) and ref.get("id") in responses:
        response = responses[ref["id"]]
        completions = response.get("completions") or []
        index = ref.get("index", 0)
        if isinstance(index, int) and 0 <= index < len(completions):
            completion = completions[index]
            generation = response.get("myopia_generation") or {
                "backend": response.get("model"),
                "finish_reason": completion.get("finishReason"),
            }
            return generation, _tokens_from_response(completion)
    old = (raw.get("meta") or {}).get("generation")
    if isinstance(old, dict):
        generation = {"backend": old.get("model"), "finish_reason": old.get("finish_reason")}
        return generation, _tokens_from_openai_choice(old)
    return None, []


def import_socketteer(data: dict[str, Any]) -> TreeData:
    if "root" in data:
        root, tree_extra = data["root"], {k: v for k, v in data.items() if k not in _TREE_MODELED}
    else:  # socketteer also opens a bare root node
        root, tree_extra = data, {}
    _require(isinstance(root, dict), "the root is not an object")
    responses = tree_extra.get("model_responses") or {}
    nodes: list[Node] = []
    seen: set[str] = set()
    stack: list[tuple[dict[str, Any], str | None, int]] = [(root, None, 0)]
    while stack:  # iterative: socketteer trees can be thousands of nodes deep
        raw, parent, position = stack.pop()
        _require(isinstance(raw, dict), f"a child of {parent} is not an object")
        node_id = raw.get("id")
        if not isinstance(node_id, str) or node_id in seen:
            node_id = new_id()  # socketteer gives ids on load; repeated ids happen in old files
        seen.add(node_id)
        text = raw.get("text", "")
        _require(isinstance(text, str), f"node {node_id}: text is not a string")
        tags = raw.get("tags") or []
        meta = raw.get("meta") or {}
        generation, tokens = _socketteer_generation(raw, responses)
        if "".join(t["text"] for t in tokens) != text:
            tokens = []  # edited after generation, or start/restart text added around it
        model_made = meta.get("source") in ("AI", "mixed") or generation is not None
        nodes.append(
            Node(
                id=node_id,
                parent=parent,
                position=position,
                text=text,
                author="model" if model_made else "person",
                generation=generation,
                tokens=tokens,
                created=_to_own_time(meta.get("creation_timestamp")),
                hidden="archived" in tags or raw.get("archived") is True,
                bookmarked="bookmark" in tags or raw.get("bookmark") is True,
                version=1,
                extra={k: v for k, v in raw.items() if k not in _SOCKETTEER_MODELED},
            )
        )
        children = raw.get("children") or []
        _require(isinstance(children, list), f"node {node_id}: children is not a list")
        stack.extend((child, node_id, i) for i, child in reversed(list(enumerate(children))))
    return TreeData(nodes=nodes, focus=data.get("selected_node_id"), extra=tree_extra)


def _socketteer_tags(node: Node) -> list[str] | None:
    tags = list(node.extra.get("tags") or [])
    for name, wanted in (("bookmark", node.bookmarked), ("archived", node.hidden)):
        if wanted and name not in tags:
            tags.append(name)
        if not wanted and name in tags:
            tags.remove(name)
    return tags if tags or "tags" in node.extra else None


def _socketteer_response(node: Node) -> dict[str, Any]:
    tokens, start = [], 0
    for t in node.tokens:
        tokens.append(
            {
                "generatedToken": {
                    "token": t["text"],
                    "logprob": t["logprob"],
                    "myopia_token_id": t.get("token_id"),
                },
                "position": {"start": start, "end": start + len(t["text"])},
                "counterfactuals": {a["text"]: a["logprob"] for a in t["alternatives"]},
                "myopia_alternatives": t["alternatives"],
            }
        )
        start += len(t["text"])
    generation = node.generation or {}
    return {
        "id": f"myopia-{node.id}",
        "model": generation.get("backend"),
        "timestamp": _to_socketteer_time(node.created),
        "completions": [
            {"text": node.text, "finishReason": generation.get("finish_reason"), "tokens": tokens}
        ],
        "myopia_generation": node.generation,
    }


def export_socketteer(tree: TreeData) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(tree.extra))  # a deep copy to add to
    responses: dict[str, Any] = out.get("model_responses") or {}
    edited = set(tree.history)
    built: dict[str, dict[str, Any]] = {}
    for node in tree.nodes:  # parents come before children
        raw: dict[str, Any] = {k: v for k, v in node.extra.items() if k != "tags"}
        raw["id"] = node.id
        raw["text"] = node.text
        if node.parent is not None:
            raw["parent_id"] = node.parent
        tags = _socketteer_tags(node)
        if tags is not None:
            raw["tags"] = tags
        if "meta" not in raw and node.created is not None:  # made in this loom
            raw["meta"] = {
                "creation_timestamp": _to_socketteer_time(node.created),
                "source": "AI" if node.author == "model" else "prompt",
                "modified": node.id in edited,
            }
        has_record = "generation" in raw or "generation" in (raw.get("meta") or {})
        if (node.tokens or node.generation) and not has_record:
            response = _socketteer_response(node)
            responses[response["id"]] = response
            raw["generation"] = {"id": response["id"], "index": 0}
        raw["children"] = []
        built[node.id] = raw
        if node.parent is not None:
            built[node.parent]["children"].append(raw)
    if responses:
        out["model_responses"] = responses
    out["root"] = built[tree.nodes[0].id]
    out["selected_node_id"] = tree.focus
    return out


# ------------------------------------------------------------------------ files


def read_tree(data: Any) -> TreeData:
    """A tree from parsed JSON of either format (told apart by its shape)."""
    if isinstance(data, dict) and data.get("format") == OWN_FORMAT:
        return import_own(data)
    if isinstance(data, dict) and ("root" in data or ("text" in data and "children" in data)):
        return import_socketteer(data)
    raise CorruptFileError(
        'not a loom tree: expected this loom\'s JSON ("format": "myopia-loom") or a '
        'socketteer/loom file (with a "root" node)'
    )


def export_tree(store: LoomStore, fmt: str = "myopia") -> dict[str, Any]:
    if fmt not in FORMATS:
        raise MyopiaError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    tree = store.snapshot()
    return export_own(tree) if fmt == "myopia" else export_socketteer(tree)


def import_json_file(store: LoomStore, path: str | Path) -> TreeData:
    """Fill the (empty) ``store`` from the JSON file at ``path``, of either format."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise MyopiaError(f"no file {path} to import") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptFileError(f"{path} is not JSON ({err})") from err
    tree = read_tree(data)
    store.load(tree)
    return tree


def export_json_file(store: LoomStore, path: str | Path, fmt: str = "myopia") -> Path:
    return atomic_write_json(path, export_tree(store, fmt))
