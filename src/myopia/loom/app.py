"""The loom's HTTP API (FastAPI) and the page that uses it.

Every route is a thin mapping from HTTP to a function of ``store``, ``weave`` or
``formats``; the errors those raise become 4xx answers with a one-line JSON ``detail``:

- unknown node -> 404; a write based on a stale version -> 409 (reload, then retry);
  importing into a tree that holds work -> 409; text over the per-node limit or a body
  over ``MAX_BODY_BYTES`` -> 413; malformed settings -> 422; any other refusal -> 400,
  including a backend's (a prompt longer than the model's context, an unreachable
  completions server): by this project's convention a ``MyopiaError`` is something the
  user can fix, and its message says how.

Writes carry the ``version`` of the node they are based on (see ``store``). The OpenAPI
description is FastAPI's, at ``/openapi.json`` (no ``/docs`` page: it would load its
scripts from a CDN, and the loom fetches nothing from elsewhere). JSON bodies need
``Content-Type: application/json`` (FastAPI's strict content type), and a server on a
loopback address accepts only loopback ``Host`` headers, so web pages elsewhere cannot
write to the tree (no cross-site form posts, no DNS rebinding); every answer forbids
framing by another page (``frame-ancestors 'none'``) and loading anything from
elsewhere (``default-src 'self'``). The body limit counts the bytes actually received,
so a chunked upload without ``Content-Length`` is cut off at the limit too.

The page reads a piece at a time (``/api/view``: the focus, its branch, a window of
the outline; ``/api/outline``: more rows when the person scrolls past the window's end;
``/api/changes``: what changed since a revision) and never the whole tree;
``/api/tree`` remains for scripts. Generation streams as server-sent events
(``/generate/stream``), cancelled by ``POST /api/streams/{id}/cancel``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from myopia.errors import CorruptFileError, MyopiaError
from myopia.generation.settings import SamplingSettings
from myopia.generation.types import Backend, GeneratedToken
from myopia.loom import formats, jsontext, view, weave
from myopia.loom.store import (
    LoomStore,
    NewNode,
    Node,
    NodeNotFoundError,
    StaleVersionError,
    TextTooLargeError,
    TreeNotEmptyError,
)

STATIC = Path(__file__).with_name("static")
MAX_BODY_BYTES = 64 * 2**20  # an imported tree can be large; one node's text is capped lower
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
}

_STATUS = (  # most specific first: all are MyopiaErrors
    (NodeNotFoundError, 404),
    (StaleVersionError, 409),
    (TreeNotEmptyError, 409),
    (TextTooLargeError, 413),
    (MyopiaError, 400),
)


# ------------------------------------------------------------------- request bodies


class Versioned(BaseModel):
    version: int = Field(ge=1, description="The node's version this write is based on.")


class Sampling(BaseModel):
    n: int = Field(1, ge=1, le=16, description="Continuations to generate.")
    temperature: float = Field(1.0, ge=0, le=5, description="0 is greedy decoding.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int = Field(32, ge=1, le=2048, description="Tokens per continuation.")
    stop: list[str] = Field(default_factory=list, max_length=8, description="Stop strings.")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="None: a random seed.")
    alternatives: int = Field(5, ge=0, le=20, description="Alternatives kept per token.")

    @field_validator("stop")
    @classmethod
    def _stops_are_short_and_nonempty(cls, stop: list[str]) -> list[str]:
        if any(not s or len(s) > 64 for s in stop):
            raise ValueError("each stop string must have 1 to 64 characters")
        return stop

    def request(self) -> weave.Request:
        sampling = SamplingSettings(
            max_new_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=tuple(self.stop),
        )
        return weave.Request(weave.with_seed(sampling, self.seed), self.n, self.alternatives)


class GenerateBody(Sampling, Versioned):
    pass


class TextBody(Versioned):
    text: str = Field(description="The new text (at most 1,000,000 characters).")


class HiddenBody(Versioned):
    hidden: bool = Field(description="True prunes the node, false restores it.")


class BookmarkBody(Versioned):
    bookmarked: bool


class FocusBody(BaseModel):
    node: str = Field(description="The node to focus.")


class TagsBody(Versioned):
    tags: list[str] = Field(max_length=20, description="Words without spaces or commas.")


class CollapsedBody(BaseModel):
    collapsed: bool = Field(description="Fold the node's subtree in the outline.")


class SplitBody(Versioned):
    at: int = Field(ge=1, description="Character position: the node keeps the text before.")


class RestoreBody(Versioned):
    from_version: int = Field(ge=1, description="The version (in the history) to restore.")


class BranchBody(Versioned):
    token: int = Field(ge=0, description="Index of the token to replace.")
    alternative: int = Field(ge=0, description="Index of the alternative that replaces it.")
    generate: Sampling | None = Field(None, description="Generate on from the branch.")


# ------------------------------------------------------------------------ answers


def _summary(node: Node, children: list[str], edits: int) -> dict[str, Any]:
    """A node as the tree view needs it: no tokens, which can be large."""
    return {
        "id": node.id,
        "parent": node.parent,
        "text": node.text,
        "author": node.author,
        "hidden": node.hidden,
        "bookmarked": node.bookmarked,
        "version": node.version,
        "created": node.created,
        "children": children,
        "edits": edits,
        "tokens": len(node.tokens),
    }


def tree_json(store: LoomStore) -> dict[str, Any]:
    nodes = store.nodes()
    children: dict[str, list[str]] = {n.id: [] for n in nodes}
    for n in nodes:
        if n.parent is not None:
            children[n.parent].append(n.id)
    edits = store.history_counts()
    return {
        "file": store.path.name,
        "root": nodes[0].id,
        "focus": store.focus,
        "nodes": [_summary(n, children[n.id], edits.get(n.id, 0)) for n in nodes],
    }


class LoomJSONResponse(JSONResponse):
    """JSON at any depth (a socketteer export nests once per node), no NaN."""

    def render(self, content: Any) -> bytes:
        return jsontext.dumps(content).encode("utf-8")


def attachment(name: str) -> str:
    """A Content-Disposition for ``name`` in any script (RFC 6266 with RFC 5987's
    ``filename*``; an ASCII ``filename`` for old clients)."""
    plain = (c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    fallback = "".join(plain)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


class BodyLimit:
    """Refuse (413) a request body over ``limit`` bytes, counting what arrives: the
    declared Content-Length when there is one, the bytes read in any case (chunked
    uploads declare none). The body is read before the app runs, at most ``limit``."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(f"{int(declared):,} bytes", scope, receive, send)
        body = bytearray()  # never more than the limit held, however the body arrives
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away
            body += message.get("body", b"")
            if len(body) > self.limit:
                return await self._refuse(f"more than {self.limit:,} bytes", scope, receive, send)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # http.disconnect, for streaming answers

        await self.app(scope, replay, send)

    async def _refuse(self, size: str, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body of {size} is over the limit of {self.limit:,} bytes"
        response = LoomJSONResponse({"detail": detail}, status_code=413, headers=SECURITY_HEADERS)
        await response(scope, receive, send)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {jsontext.dumps(data)}\n\n"


def _one_line(error: RequestValidationError) -> str:
    parts = []
    for e in error.errors():
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    return "invalid request: " + "; ".join(parts)


# ---------------------------------------------------------------------------- app


def create_app(
    store: LoomStore, backend: Backend, allowed_hosts: list[str] | None = None
) -> FastAPI:
    """The loom over ``store``, generating with ``backend``; ``allowed_hosts`` (e.g.
    :data:`LOOPBACK_HOSTS`) restricts the ``Host`` header, None accepts any."""
    app = FastAPI(
        title="myopia loom",
        description="Grow, prune, edit and branch a tree of generations stored in one file.",
        version="2",
        docs_url=None,
        redoc_url=None,
        default_response_class=LoomJSONResponse,
    )
    # The last added runs first: a foreign Host is refused before its body is read, and
    # the body limit runs before anything else reads the body.
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    streams: dict[str, threading.Event] = {}  # generation id -> its cancel flag

    @app.middleware("http")
    async def _security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(MyopiaError)
    async def _refused(request: Request, error: MyopiaError):
        status = next(code for kind, code in _STATUS if isinstance(error, kind))
        return LoomJSONResponse({"detail": str(error)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError):
        # Only where and what: pydantic's entries also echo the input (maybe megabytes)
        # and hold exception objects JSON cannot encode.
        errors = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in error.errors()]
        return LoomJSONResponse({"detail": _one_line(error), "errors": errors}, status_code=422)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/tree", summary="The whole tree (without tokens) and the focus")
    def get_tree() -> dict[str, Any]:
        return tree_json(store)

    @app.get("/api/nodes/{node_id}", summary="One node, with its tokens and branch text")
    def get_node(node_id: str) -> dict[str, Any]:
        node = store.get(node_id)
        ancestry = store.ancestry(node_id)
        return {
            **node.to_json(),
            "ancestry": [n.id for n in ancestry],
            "children": [c.id for c in store.children(node_id)],
        }

    @app.get("/api/view", summary="What the page draws for a focus: branch, children, outline")
    def get_view(
        focus: str | None = None,
        hoist: str | None = None,
        pruned: bool = False,
        before: int = Query(30, ge=0, le=500),
        after: int = Query(60, ge=0, le=1000),
    ) -> dict[str, Any]:
        visible = view.Filter(show_pruned=pruned, root=hoist)
        return view.neighbourhood(store, focus or store.focus, visible, before, after)

    @app.get("/api/outline", summary="More outline rows beyond the first or last one shown")
    def get_outline(
        edge: str,
        depth: int = Query(ge=0, description="The edge row's depth, as the view gave it."),
        direction: Literal["up", "down"] = "down",
        count: int = Query(60, ge=1, le=500),
        hoist: str | None = None,
        pruned: bool = False,
    ) -> dict[str, Any]:
        visible = view.Filter(show_pruned=pruned, root=hoist)
        return view.more_rows(store, edge, depth, visible, direction == "down", count)

    @app.get("/api/changes", summary="Nodes changed or removed since a revision")
    def get_changes(since: int = Query(ge=0)) -> dict[str, Any]:
        return view.changes(store, since)

    @app.get("/api/search", summary="Nodes whose text holds q (or tagged q, for #q)")
    def search(q: str = Query(min_length=1, max_length=200)) -> list[dict[str, Any]]:
        return view.search(store, q)

    @app.get("/api/bookmarks", summary="Bookmarked nodes, and every tag in use")
    def get_bookmarks() -> dict[str, Any]:
        return {"bookmarks": view.bookmarks(store), "tags": view.tags(store)}

    @app.get("/api/settings", summary="The generation settings saved for this tree")
    def get_settings() -> dict[str, Any]:
        return Sampling(**store.settings).model_dump()

    @app.put("/api/settings", summary="Save the generation settings for this tree")
    def put_settings(body: Sampling) -> dict[str, Any]:
        return store.set_settings(body.model_dump())

    @app.get("/api/nodes/{node_id}/compare", summary="Sibling branches with token probabilities")
    def compare(node_id: str) -> dict[str, Any]:
        return weave.compare_siblings(store, node_id, backend)

    @app.get("/api/nodes/{node_id}/branch.txt", summary="The branch's text, root to this node")
    def branch_text(node_id: str) -> Response:
        name = f"{Path(store.path).stem}-{node_id[:8]}.txt"
        return Response(
            store.branch_text(node_id),
            media_type="text/plain; charset=utf-8",
            headers={"Content-Disposition": attachment(name)},
        )

    @app.get("/api/nodes/{node_id}/history", summary="The texts a node had before its edits")
    def get_history(node_id: str) -> list[dict[str, Any]]:
        return [e.to_json() for e in store.history(node_id)]

    @app.post("/api/nodes/{node_id}/children", status_code=201, summary="Add a child by hand")
    def add_child(node_id: str, body: TextBody) -> dict[str, Any]:
        [child] = store.add_children(
            node_id, [NewNode(body.text, "person")], {node_id: body.version}
        )
        store.set_focus(child.id)
        return child.to_json()

    @app.post("/api/nodes/{node_id}/generate", status_code=201, summary="Generate n children")
    def generate(node_id: str, body: GenerateBody) -> dict[str, Any]:
        children = weave.generate_children(store, backend, node_id, body.version, body.request())
        return {"children": [c.to_json() for c in children]}

    @app.post(
        "/api/nodes/{node_id}/generate/stream",
        summary="Generate n children, streamed as server-sent events",
        response_class=StreamingResponse,
    )
    def generate_stream(node_id: str, body: GenerateBody) -> StreamingResponse:
        store.check_version(node_id, body.version)  # 404/409 before the stream starts
        stream_id = weave.new_stream_id()
        cancel = streams[stream_id] = threading.Event()
        events: queue.Queue[str | None] = queue.Queue()

        def on_token(row: int, token: GeneratedToken) -> None:
            chosen = token.chosen
            events.put(_sse("token", {"row": row, "text": chosen.text, "logprob": chosen.logprob}))

        def run() -> None:
            try:
                children, cancelled = weave.stream_children(
                    store, backend, node_id, body.version, body.request(), on_token, cancel
                )
                done = {"children": [c.to_json() for c in children], "cancelled": cancelled}
                events.put(_sse("done", done))
            except MyopiaError as error:
                status = next(code for kind, code in _STATUS if isinstance(error, kind))
                events.put(_sse("error", {"status": status, "detail": str(error)}))
            finally:
                streams.pop(stream_id, None)
                events.put(None)

        def answer() -> Iterator[str]:
            worker = threading.Thread(target=run, name=f"loom-stream-{stream_id}", daemon=True)
            worker.start()
            try:
                yield _sse("start", {"stream": stream_id, "n": body.n})
                while (event := events.get()) is not None:
                    yield event
            finally:  # the page went away: stop the model, keep what it wrote
                cancel.set()

        return StreamingResponse(answer(), media_type="text/event-stream")

    @app.post("/api/streams/{stream_id}/cancel", summary="Stop a streamed generation")
    def cancel_stream(stream_id: str) -> dict[str, bool]:
        cancel = streams.get(stream_id)
        if cancel is not None:
            cancel.set()
        return {"cancelled": cancel is not None}

    @app.post(
        "/api/nodes/{node_id}/branch",
        status_code=201,
        summary="Branch from an alternative token into a new sibling",
    )
    def branch(node_id: str, body: BranchBody) -> dict[str, Any]:
        then = body.generate.request() if body.generate is not None else None
        node, children = weave.branch_from_alternative(
            store, backend, node_id, body.version, body.token, body.alternative, then
        )
        return {"node": node.to_json(), "children": [c.to_json() for c in children]}

    @app.put("/api/nodes/{node_id}/text", summary="Edit a node's text (the old text is kept)")
    def edit(node_id: str, body: TextBody) -> dict[str, Any]:
        return store.edit_text(node_id, body.version, body.text).to_json()

    @app.put("/api/nodes/{node_id}/hidden", summary="Prune or unprune a node")
    def prune(node_id: str, body: HiddenBody) -> dict[str, Any]:
        return store.set_hidden(node_id, body.version, body.hidden).to_json()

    @app.put("/api/nodes/{node_id}/bookmarked", summary="Bookmark or unbookmark a node")
    def bookmark(node_id: str, body: BookmarkBody) -> dict[str, Any]:
        return store.set_bookmarked(node_id, body.version, body.bookmarked).to_json()

    @app.put("/api/nodes/{node_id}/tags", summary="Set a node's tags")
    def set_tags(node_id: str, body: TagsBody) -> dict[str, Any]:
        return store.set_tags(node_id, body.version, body.tags).to_json()

    @app.put("/api/nodes/{node_id}/collapsed", summary="Fold or unfold a node in the outline")
    def collapse(node_id: str, body: CollapsedBody) -> dict[str, Any]:
        return store.set_collapsed(node_id, body.collapsed).to_json()

    @app.post("/api/nodes/{node_id}/restore", summary="Restore a version from the history")
    def restore(node_id: str, body: RestoreBody) -> dict[str, Any]:
        return store.restore(node_id, body.version, body.from_version).to_json()

    @app.post("/api/nodes/{node_id}/split", summary="Split a node in two at a character")
    def split(node_id: str, body: SplitBody) -> dict[str, Any]:
        head, tail = store.split(node_id, body.version, body.at)
        return {"node": head.to_json(), "child": tail.to_json()}

    @app.post("/api/nodes/{node_id}/merge", summary="Join a node with its only child")
    def merge(node_id: str, body: Versioned) -> dict[str, Any]:
        return store.merge(node_id, body.version).to_json()

    @app.post("/api/nodes/{node_id}/delete", summary="Delete a node and its subtree for good")
    def delete(node_id: str, body: Versioned) -> dict[str, Any]:
        return {"removed": store.delete(node_id, body.version), "focus": store.focus}

    @app.put("/api/focus", summary="Focus a node (not versioned: a view, not content)")
    def focus(body: FocusBody) -> dict[str, str]:
        return {"focus": store.set_focus(body.node)}

    @app.get("/api/export", summary="The tree as JSON: this loom's or socketteer/loom's")
    def export(format: Literal["myopia", "socketteer"] = "myopia") -> LoomJSONResponse:
        name = Path(store.path).stem + (".loom.json" if format == "myopia" else ".json")
        return LoomJSONResponse(
            formats.export_tree(store, format), headers={"Content-Disposition": attachment(name)}
        )

    @app.post(
        "/api/import",
        summary="Fill an empty tree from JSON of either format (the body: the file's JSON)",
    )
    async def import_tree(request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise MyopiaError("an import needs Content-Type: application/json")
        body = await request.body()

        def load() -> dict[str, Any]:
            try:
                data = jsontext.loads(body)
            except ValueError as err:
                raise CorruptFileError(f"the body is not JSON ({err})") from err
            store.load(formats.read_tree(data))
            return {"root": store.root_id, "focus": store.focus, "revision": store.revision}

        return await run_in_threadpool(load)

    return app
