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
description is FastAPI's, at ``/openapi.json`` (and browsable at ``/docs``). JSON bodies
need ``Content-Type: application/json`` (FastAPI's strict content type), and a server on
a loopback address accepts only loopback ``Host`` headers, so web pages elsewhere cannot
write to the tree (no cross-site form posts, no DNS rebinding).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, field_validator

from myopia.errors import MyopiaError
from myopia.generation.settings import SamplingSettings
from myopia.generation.types import Backend
from myopia.loom import formats, weave
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
        version="1",
    )
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    @app.middleware("http")
    async def _limit_body(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_BODY_BYTES:
            detail = f"request body of {int(size):,} bytes is over the limit of {MAX_BODY_BYTES:,}"
            return JSONResponse({"detail": detail}, status_code=413)
        return await call_next(request)

    @app.exception_handler(MyopiaError)
    async def _refused(request: Request, error: MyopiaError):
        status = next(code for kind, code in _STATUS if isinstance(error, kind))
        return JSONResponse({"detail": str(error)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError):
        # Only where and what: pydantic's entries also echo the input (maybe megabytes)
        # and hold exception objects JSON cannot encode.
        errors = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in error.errors()]
        return JSONResponse({"detail": _one_line(error), "errors": errors}, status_code=422)

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

    @app.put("/api/focus", summary="Focus a node (not versioned: a view, not content)")
    def focus(body: FocusBody) -> dict[str, str]:
        return {"focus": store.set_focus(body.node)}

    @app.get("/api/export", summary="The tree as JSON: this loom's or socketteer/loom's")
    def export(format: Literal["myopia", "socketteer"] = "myopia") -> JSONResponse:
        name = Path(store.path).stem + (".loom.json" if format == "myopia" else ".json")
        return JSONResponse(
            formats.export_tree(store, format),
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.post(
        "/api/import",
        summary="Fill an empty tree from JSON of either format",
    )
    def import_tree(data: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        store.load(formats.read_tree(data))
        return tree_json(store)

    return app
