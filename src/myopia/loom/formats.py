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

Every field of an imported file is checked before anything is written, and a refusal
is one line naming the field (``nodes[3].position must be an integer, not 'x'``): a
file that imports is one the loom can show, edit and export. Ids must be 1 to 64
letters, digits, ``-`` or ``_``; NaN and infinities are refused. Nested socketteer
files are read and written with loops, not recursion: linear stories nest thousands
deep.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from myopia.checks import input_file
from myopia.errors import CorruptFileError, MyopiaError
from myopia.io import atomic_write_text
from myopia.loom import jsontext
from myopia.loom.store import (
    AUTHORS,
    NODE_ID,
    HistoryEntry,
    LoomStore,
    Node,
    TreeData,
    check_tags,
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
_FLAG_TAGS = ("bookmark", "archived")  # socketteer tags the loom models as flags


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


def _shown(value: Any) -> str:
    """A short picture of a wrong value (containers by kind: they can be huge or deep)."""
    if isinstance(value, dict | list):
        return f"a {type(value).__name__} of {len(value)}"
    text = repr(value) if isinstance(value, float) else jsontext.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: Any, where: str, kinds: type | tuple[type, ...], what: str) -> Any:
    # bool is an int to isinstance: refused wherever a number is wanted
    is_bool_for_number = isinstance(value, bool) and kinds is not bool
    if not isinstance(value, kinds) or is_bool_for_number:  # the message only when needed
        _require(False, f"{where} must be {what}, not {_shown(value)}")
    return value


def _integer(value: Any, where: str, least: int) -> int:
    _kind(value, where, int, f"an integer of at least {least}")
    _require(value >= least, f"{where} must be an integer of at least {least}, not {value}")
    return value


def _number(value: Any, where: str) -> float:
    _kind(value, where, (int, float), "a number")
    _require(math.isfinite(value), f"{where} must be a finite number, not {value!r}")
    return float(value)


def _node_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or NODE_ID.fullmatch(value) is None:
        _require(False, f"{where} must be 1 to 64 letters, digits, '-' or '_', not {_shown(value)}")
    return value


def _choice(raw: Any, where: str) -> dict[str, Any]:
    _kind(raw, where, dict, "an object")
    token_id = raw.get("token_id")
    if token_id is not None:
        _integer(token_id, f"{where}.token_id", 0)
    return {
        "text": _kind(raw.get("text"), f"{where}.text", str, "a string"),
        "logprob": _number(raw.get("logprob"), f"{where}.logprob"),
        "token_id": token_id,
    }


def _tokens(raw: Any, where: str) -> list[dict[str, Any]]:
    _kind(raw, where, list, "a list of tokens")
    tokens = []
    for i, token in enumerate(raw):
        alternatives = _kind(
            token.get("alternatives", []) if isinstance(token, dict) else None,
            f"{where}[{i}].alternatives",
            list,
            "a list",
        )
        tokens.append(
            {
                **_choice(token, f"{where}[{i}]"),
                "alternatives": [
                    _choice(a, f"{where}[{i}].alternatives[{j}]")
                    for j, a in enumerate(alternatives)
                ],
            }
        )
    return tokens


def _optional(raw: dict[str, Any], key: str, where: str, kinds: type, what: str, default: Any):
    value = raw.get(key)
    return default if value is None else _kind(value, f"{where}.{key}", kinds, what)


def _history(raw: Any, node_id: str, where: str) -> list[HistoryEntry]:
    _kind(raw, where, list, "a list")
    entries = []
    for i, e in enumerate(raw):
        at = f"{where}[{i}]"
        _kind(e, at, dict, "an object")
        entries.append(
            HistoryEntry(
                node_id,
                _integer(e.get("version"), f"{at}.version", 1),
                _kind(e.get("text"), f"{at}.text", str, "a string"),
                _tokens(e.get("tokens", []), f"{at}.tokens"),
                _kind(e.get("replaced"), f"{at}.replaced", str, "a string"),
            )
        )
    return entries


def _tag_list(raw: Any, where: str) -> list[str]:
    try:
        return check_tags(raw)
    except MyopiaError as err:
        raise CorruptFileError(f"not a valid loom file: {where}: {err}") from err


def import_own(data: dict[str, Any]) -> TreeData:
    _require(data.get("version") == OWN_FORMAT_VERSION, f"unknown version {data.get('version')}")
    raw_nodes = data.get("nodes")
    _require(isinstance(raw_nodes, list) and len(raw_nodes) > 0, "no nodes")
    nodes: list[Node] = []
    history: dict[str, list[HistoryEntry]] = {}
    seen: set[str] = set()
    for i, raw in enumerate(raw_nodes):
        where = f"nodes[{i}]"
        _kind(raw, where, dict, "an object")
        node_id = _node_id(raw.get("id"), f"{where}.id")
        _require(node_id not in seen, f"{where}.id {node_id} is repeated")
        parent = raw.get("parent")
        if parent is not None:
            _node_id(parent, f"{where}.parent")
        _require((parent is None) == (i == 0), f"node {node_id}: only the first node is the root")
        _require(parent is None or parent in seen, f"node {node_id}: parent {parent} not before it")
        _require(raw.get("author") in AUTHORS, f"{where}.author must be one of {AUTHORS}")
        seen.add(node_id)
        nodes.append(
            Node(
                id=node_id,
                parent=parent,
                position=_integer(raw.get("position", 0), f"{where}.position", 0),
                text=_kind(raw.get("text"), f"{where}.text", str, "a string"),
                author=raw["author"],
                generation=_optional(raw, "generation", where, dict, "an object", None),
                tokens=_tokens(raw.get("tokens", []), f"{where}.tokens"),
                created=_optional(raw, "created", where, str, "a string", None),
                hidden=_kind(raw.get("hidden", False), f"{where}.hidden", bool, "true or false"),
                bookmarked=_kind(
                    raw.get("bookmarked", False), f"{where}.bookmarked", bool, "true or false"
                ),
                version=_integer(raw.get("version", 1), f"{where}.version", 1),
                extra=_optional(raw, "extra", where, dict, "an object", {}),
                tags=_tag_list(raw.get("tags", []), f"{where}.tags"),
                collapsed=_kind(
                    raw.get("collapsed", False), f"{where}.collapsed", bool, "true or false"
                ),
            )
        )
        entries = _history(raw.get("history", []), node_id, f"{where}.history")
        if entries:
            history[node_id] = entries
    focus = data.get("focus")
    if focus is not None:
        _node_id(focus, "focus")
    extra = _optional(data, "extra", "tree", dict, "an object", {})
    return TreeData(nodes=nodes, focus=focus, extra=extra, history=history)


# ------------------------------------------------------------------ socketteer format


def _to_own_time(stamp: Any) -> str | None:
    try:
        return datetime.strptime(stamp, _SOCKETTEER_TIME).strftime(_OWN_TIME)
    except (TypeError, ValueError):
        return None


def _to_socketteer_time(created: str | None) -> str:
    moment = datetime.strptime(created, _OWN_TIME) if created else datetime.now(UTC)
    return moment.strftime(_SOCKETTEER_TIME)


def _counterfactuals(raw: Any, where: str) -> list[dict[str, Any]]:
    """socketteer's ``{token: logprob}`` as alternatives, most likely first."""
    raw = _kind(raw or {}, where, dict, "an object of token: logprob")
    pairs = sorted(((k, _number(v, f"{where}.{k}")) for k, v in raw.items()), key=lambda kv: -kv[1])
    return [{"text": k, "logprob": v, "token_id": None} for k, v in pairs]


def _tokens_from_response(completion: Any, where: str) -> list[dict[str, Any]]:
    _kind(completion, where, dict, "an object")
    tokens = []
    for i, t in enumerate(_kind(completion.get("tokens") or [], f"{where}.tokens", list, "a list")):
        at = f"{where}.tokens[{i}]"
        _kind(t, at, dict, "an object")
        chosen = _kind(t.get("generatedToken"), f"{at}.generatedToken", dict, "an object")
        if "myopia_alternatives" in t:
            listed_at = f"{at}.myopia_alternatives"
            listed = _kind(t["myopia_alternatives"], listed_at, list, "a list")
            alternatives = [_choice(a, f"{listed_at}[{j}]") for j, a in enumerate(listed)]
        else:
            alternatives = _counterfactuals(t.get("counterfactuals"), f"{at}.counterfactuals")
        named = {
            "text": chosen.get("token"),
            "logprob": chosen.get("logprob"),
            "token_id": chosen.get("myopia_token_id"),
        }
        tokens.append({**_choice(named, f"{at}.generatedToken"), "alternatives": alternatives})
    return tokens


def _tokens_from_openai_choice(choice: dict[str, Any], where: str) -> list[dict[str, Any]]:
    logprobs = _kind(choice.get("logprobs") or {}, f"{where}.logprobs", dict, "an object")
    texts = _kind(logprobs.get("tokens") or [], f"{where}.logprobs.tokens", list, "a list")
    values = _kind(
        logprobs.get("token_logprobs") or [], f"{where}.logprobs.token_logprobs", list, "a list"
    )
    tops = _kind(
        logprobs.get("top_logprobs") or [None] * len(texts),
        f"{where}.logprobs.top_logprobs",
        list,
        "a list",
    )
    tokens = []
    for i, (text, value, top) in enumerate(zip(texts, values, tops, strict=False)):
        at = f"{where}.logprobs"
        tokens.append(
            {
                **_choice({"text": text, "logprob": value}, f"{at}.tokens[{i}]"),
                "alternatives": _counterfactuals(top, f"{at}.top_logprobs[{i}]"),
            }
        )
    return tokens


def _socketteer_generation(
    raw: dict[str, Any], meta: dict[str, Any], responses: dict[str, Any], where: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The generation record and tokens of a socketteer node, where it has them."""
    ref = raw.get("generation")
    if isinstance(ref, dict) and isinstance(ref.get("id"), str) and ref["id"] in responses:
        at = f"model_responses.{ref['id']}"
        response = _kind(responses[ref["id"]], at, dict, "an object")
        completions = _kind(response.get("completions") or [], f"{at}.completions", list, "a list")
        index = ref.get("index", 0)
        if isinstance(index, int) and 0 <= index < len(completions):
            completion = completions[index]
            tokens = _tokens_from_response(completion, f"{at}.completions[{index}]")
            generation = _optional(response, "myopia_generation", at, dict, "an object", None)
            generation = generation or {
                "backend": response.get("model"),
                "finish_reason": completion.get("finishReason"),
            }
            return generation, tokens
    old = meta.get("generation")
    if isinstance(old, dict):
        generation = {"backend": old.get("model"), "finish_reason": old.get("finish_reason")}
        return generation, _tokens_from_openai_choice(old, f"{where}.meta.generation")
    return None, []


def import_socketteer(data: dict[str, Any]) -> TreeData:
    if "root" in data:
        root, tree_extra = data["root"], {k: v for k, v in data.items() if k not in _TREE_MODELED}
    else:  # socketteer also opens a bare root node
        root, tree_extra = data, {}
    _require(isinstance(root, dict), "the root is not an object")
    responses = _kind(tree_extra.get("model_responses") or {}, "model_responses", dict, "an object")
    focus = data.get("selected_node_id")
    if focus is not None:
        _node_id(focus, "selected_node_id")
    nodes: list[Node] = []
    seen: set[str] = set()
    stack: list[tuple[dict[str, Any], str | None, int]] = [(root, None, 0)]
    while stack:  # iterative: socketteer trees can be thousands of nodes deep
        raw, parent, position = stack.pop()
        where = f"node {parent}.children[{position}]" if parent is not None else "root"
        _kind(raw, where, dict, "an object")
        node_id = raw.get("id")
        if node_id is not None:
            _node_id(node_id, f"{where}.id")
        if node_id is None or node_id in seen:
            node_id = new_id()  # socketteer gives ids on load; repeated ids happen in old files
        seen.add(node_id)
        if raw.get("id") is not None:
            where = f"node {node_id}"
        text = _kind(raw.get("text", ""), f"{where}.text", str, "a string")
        tags = _kind(raw.get("tags") or [], f"{where}.tags", list, "a list")
        meta = _kind(raw.get("meta") or {}, f"{where}.meta", dict, "an object")
        generation, tokens = _socketteer_generation(raw, meta, responses, where)
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
                tags=_tag_list([t for t in tags if t not in _FLAG_TAGS], f"{where}.tags"),
            )
        )
        children = _kind(raw.get("children") or [], f"{where}.children", list, "a list")
        stack.extend((child, node_id, i) for i, child in reversed(list(enumerate(children))))
    return TreeData(nodes=nodes, focus=focus, extra=tree_extra)


def _socketteer_tags(node: Node) -> list[str] | None:
    """The node's tags in the order its file had them, then any added in the loom."""
    wanted = {*node.tags, *(["bookmark"] if node.bookmarked else [])}
    wanted |= {"archived"} if node.hidden else set()
    tags = [t for t in node.extra.get("tags") or [] if t in wanted]
    tags += [t for t in [*node.tags, "bookmark", "archived"] if t in wanted and t not in tags]
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
    out: dict[str, Any] = jsontext.loads(jsontext.dumps(tree.extra))  # a deep copy to add to
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
        tree = import_own(data)
    elif isinstance(data, dict) and ("root" in data or ("text" in data and "children" in data)):
        tree = import_socketteer(data)
    else:
        raise CorruptFileError(
            'not a loom tree: expected this loom\'s JSON ("format": "myopia-loom") or a '
            'socketteer/loom file (with a "root" node)'
        )
    try:  # extra and generation hold anything: it must be storable JSON (no NaN, no inf)
        jsontext.dumps(tree.extra)
        for node in tree.nodes:
            jsontext.dumps([node.extra, node.generation])
    except (ValueError, TypeError) as err:
        raise CorruptFileError(f"not a valid loom file: {err}") from err
    return tree


def export_tree(store: LoomStore, fmt: str = "myopia") -> dict[str, Any]:
    if fmt not in FORMATS:
        raise MyopiaError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    tree = store.snapshot()
    return export_own(tree) if fmt == "myopia" else export_socketteer(tree)


def read_tree_file(path: str | Path) -> TreeData:
    """The tree in the JSON file at ``path``, of either format, checked field by field."""
    path = input_file(Path(path), "--import-json", "JSON file")
    try:
        data = jsontext.loads(path.read_bytes())
    except ValueError as err:
        raise CorruptFileError(f"{path} is not JSON ({err})") from err
    return read_tree(data)


def import_json_file(store: LoomStore, path: str | Path) -> TreeData:
    """Fill the (empty) ``store`` from the JSON file at ``path``, of either format."""
    tree = read_tree_file(path)
    store.load(tree)
    return tree


def export_json_file(store: LoomStore, path: str | Path, fmt: str = "myopia") -> Path:
    return atomic_write_text(path, jsontext.dumps(export_tree(store, fmt)))
