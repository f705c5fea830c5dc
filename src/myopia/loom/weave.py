"""Growing a loom tree with a generation backend: generate children, branch from a token.

The prompt of a node is its branch's text (every ancestor's text, then its own). The
backend runs outside any database transaction (a generation can take minutes); its
continuations are then written in one transaction that re-checks the version the
request was based on, so text generated from a prompt someone edited meanwhile is
refused rather than attached to the new text. Backend calls are serialised by one lock:
a local model is not safe to run from several threads at once.

Streaming (:func:`stream_children`) shows each token as it is chosen and can be
cancelled; a cancelled generation keeps the tokens it had, with the finish reason
``"cancelled"``. A backend streams when it has a ``complete_streaming`` method (see
:class:`StreamingBackend`); any other backend is run with ``complete`` and its tokens
are shown when it returns (it cannot be stopped midway).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from myopia.errors import MyopiaError
from myopia.generation.settings import SamplingSettings
from myopia.generation.types import Backend, Continuation, GeneratedToken, TokenChoice
from myopia.loom.store import LoomStore, NewNode, Node

_backend_lock = threading.Lock()


class GenerationFailedError(MyopiaError):
    """The backend could not generate (a model error, an unreachable server)."""


OnToken = Callable[[int, GeneratedToken], bool]  # (row, token) -> go on?


@runtime_checkable
class StreamingBackend(Protocol):
    """A backend that reports tokens as it chooses them and can stop early."""

    name: str

    def complete_streaming(
        self,
        prompt: str,
        settings: SamplingSettings,
        n: int,
        alternatives: int,
        on_token: OnToken,
    ) -> list[Continuation]:
        """``complete``, calling ``on_token(row, token)`` after each token; when it returns
        False every row stops where it is (finish reason "length")."""
        ...


@dataclass(frozen=True)
class Request:
    """What a person asks of a generation: ``n`` continuations under ``sampling``."""

    sampling: SamplingSettings
    n: int = 1
    alternatives: int = 5  # most likely tokens kept at each step, for branching later


def choice_json(choice: TokenChoice) -> dict[str, Any]:
    return {"text": choice.text, "logprob": choice.logprob, "token_id": choice.token_id}


def token_json(token: GeneratedToken) -> dict[str, Any]:
    return {
        **choice_json(token.chosen),
        "alternatives": [choice_json(a) for a in token.alternatives],
    }


def _generation_json(backend: Backend, request: Request, finish_reason: str | None) -> dict:
    s = request.sampling
    return {
        "backend": backend.name,
        "n": request.n,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "max_tokens": s.max_new_tokens,
        "stop": list(s.stop),
        "seed": s.seed,
        "alternatives": request.alternatives,
        "finish_reason": finish_reason,
    }


def new_stream_id() -> str:
    return secrets.token_hex(8)


def with_seed(sampling: SamplingSettings, seed: int | None) -> SamplingSettings:
    """``sampling`` with ``seed``, or a fresh random one: pressing generate twice should
    give new text, and the seed is recorded on the children so it can be reproduced."""
    chosen = secrets.randbelow(2**31) if seed is None else seed
    return SamplingSettings(
        max_new_tokens=sampling.max_new_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        stop=sampling.stop,
        seed=chosen,
    )


def _complete(backend: Backend, prompt: str, request: Request) -> list[Continuation]:
    request.sampling.check()
    with _backend_lock:
        try:
            return backend.complete(
                prompt, request.sampling, n=request.n, alternatives=request.alternatives
            )
        except MyopiaError as err:
            raise GenerationFailedError(f"the backend {backend.name} failed: {err}") from err


def _write_children(
    store: LoomStore,
    backend: Backend,
    node_id: str,
    expected_version: int,
    request: Request,
    continuations: list[Continuation],
    finish_reasons: list[str | None],
) -> list[Node]:
    drafts = [
        NewNode(
            text=c.text,
            author="model",
            generation=_generation_json(backend, request, reason),
            tokens=[token_json(t) for t in c.tokens],
        )
        for c, reason in zip(continuations, finish_reasons, strict=True)
    ]
    children = store.add_children(node_id, drafts, {node_id: expected_version})
    if children:
        store.set_focus(children[0].id)
    return children


def generate_children(
    store: LoomStore, backend: Backend, node_id: str, expected_version: int, request: Request
) -> list[Node]:
    """``request.n`` model-written children of ``node_id``; the focus moves to the first."""
    # Fail before a slow generation on an unknown or stale node; re-checked on write.
    store.check_version(node_id, expected_version)
    continuations = _complete(backend, store.branch_text(node_id), request)
    reasons = [c.finish_reason for c in continuations]
    return _write_children(
        store, backend, node_id, expected_version, request, continuations, reasons
    )


def stream_children(
    store: LoomStore,
    backend: Backend,
    node_id: str,
    expected_version: int,
    request: Request,
    on_token: Callable[[int, GeneratedToken], None],
    cancel: threading.Event,
) -> tuple[list[Node], bool]:
    """:func:`generate_children`, calling ``on_token(row, token)`` as tokens come and
    stopping once ``cancel`` is set. Returns the children written and whether the
    generation was cancelled; a cancelled row keeps its tokens (finish reason
    "cancelled"), a row cancelled before its first token is not written."""
    store.check_version(node_id, expected_version)
    prompt = store.branch_text(node_id)
    request.sampling.check()
    if not isinstance(backend, StreamingBackend):
        continuations = _complete(backend, prompt, request)
        for row, c in enumerate(continuations):
            for token in c.tokens:
                on_token(row, token)
        reasons: list[str | None] = [c.finish_reason for c in continuations]
        return _write_children(
            store, backend, node_id, expected_version, request, continuations, reasons
        ), False

    def report(row: int, token: GeneratedToken) -> bool:
        on_token(row, token)
        return not cancel.is_set()

    with _backend_lock:
        try:
            continuations = backend.complete_streaming(
                prompt, request.sampling, request.n, request.alternatives, report
            )
        except MyopiaError as err:
            raise GenerationFailedError(f"the backend {backend.name} failed: {err}") from err
    cancelled = cancel.is_set()
    limit = request.sampling.max_new_tokens
    kept = [c for c in continuations if c.tokens or not cancelled]
    reasons = [
        "cancelled"
        if cancelled and c.finish_reason == "length" and len(c.tokens) < limit
        else c.finish_reason
        for c in kept
    ]
    children = _write_children(store, backend, node_id, expected_version, request, kept, reasons)
    return children, cancelled


def branch_from_alternative(
    store: LoomStore,
    backend: Backend,
    node_id: str,
    expected_version: int,
    token_index: int,
    alternative_index: int,
    then: Request | None = None,
) -> tuple[Node, list[Node]]:
    """A new sibling of ``node_id``: its text up to token ``token_index``, then that
    token's alternative ``alternative_index`` instead; with ``then``, generate on from it.

    Returns the new node and its generated children (empty without ``then``); the focus
    moves to the last of them written.
    """
    node = store.get(node_id)
    if node.parent is None:
        raise MyopiaError("the root has no siblings to branch into; generate children instead")
    if not 0 <= token_index < len(node.tokens):
        raise MyopiaError(
            f"token {token_index} is out of range: node {node_id} has {len(node.tokens)} "
            "tokens (a node edited by hand has none)"
        )
    step = node.tokens[token_index]
    if not 0 <= alternative_index < len(step["alternatives"]):
        raise MyopiaError(
            f"alternative {alternative_index} is out of range: token {token_index} has "
            f"{len(step['alternatives'])}"
        )
    alternative = step["alternatives"][alternative_index]
    tokens = [*node.tokens[:token_index], {**alternative, "alternatives": step["alternatives"]}]
    generation = {
        **(node.generation or {}),
        "finish_reason": None,
        "branched_from": {"node": node_id, "token": token_index, "alternative": alternative_index},
    }
    draft = NewNode(
        text="".join(t["text"] for t in tokens),
        author="model",
        generation=generation,
        tokens=tokens,
    )
    [branch] = store.add_children(node.parent, [draft], {node_id: expected_version})
    store.set_focus(branch.id)
    if then is None:
        return branch, []
    return branch, generate_children(store, backend, branch.id, branch.version, then)


@runtime_checkable
class ScoringBackend(Protocol):
    """A backend that can say what its model thinks of a text it did not choose."""

    def score(self, prompt: str, text: str) -> tuple[TokenChoice, ...]: ...


SCORE_WAIT_S = 0.2  # a comparison does not wait for a running generation to finish
_SCORES_KEPT = 256  # (backend, branch) scores remembered, so redrawing the view is free
_scores: OrderedDict[bytes, list[dict[str, Any]]] = OrderedDict()
_scores_lock = threading.Lock()  # comparisons run in several threads at once


def _score_key(backend: Backend, prompt: str, text: str) -> bytes:
    """The cache key of a score: the model (the backend object and its name: two test
    models may share a name), the prefix and the text (an edit of any ancestor changes
    the prefix, and with it the key)."""
    digest = hashlib.sha256()
    for part in (f"{id(backend)} {backend.name}", prompt, text):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return digest.digest()


def _scored(backend: ScoringBackend, prompt: str, text: str) -> tuple[list, str | None]:
    """``text``'s tokens scored after ``prompt`` by ``backend``'s model (through its own
    ``score``, the path its generations take), or no tokens and why."""
    key = _score_key(backend, prompt, text)
    with _scores_lock:
        if key in _scores:
            _scores.move_to_end(key)
            return _scores[key], None
    if not _backend_lock.acquire(timeout=SCORE_WAIT_S):
        return [], "not scored yet: the model is generating; it is scored when that ends"
    try:
        choices = backend.score(prompt, text)
    except MyopiaError as err:  # this branch only (e.g. too long): the others still show
        return [], f"not scored: {err}"
    finally:
        _backend_lock.release()
    tokens = [{"text": c.text, "logprob": c.logprob} for c in choices]
    with _scores_lock:
        _scores[key] = tokens
        if len(_scores) > _SCORES_KEPT:
            _scores.popitem(last=False)
    return tokens, None


def _tokens_of(
    store: LoomStore, node: Node, backend: Backend | None
) -> tuple[list, str, str | None]:
    """``node``'s tokens with their log-probabilities, where they come from, and why
    there are none: as generated ("generated"), read by the model when a person wrote or
    edited the text ("scored"), or none ("none", with the reason the page shows)."""
    if node.tokens and "".join(t["text"] for t in node.tokens) == node.text:
        tokens = [{"text": t["text"], "logprob": t["logprob"]} for t in node.tokens]
        return tokens, "generated", None
    if node.parent is None:
        return [], "none", "not scored: the root has no prefix to score it after"
    if not node.text:
        return [], "none", "not scored: the text is empty"
    if not isinstance(backend, ScoringBackend):
        name = backend.name if backend is not None else "no backend"
        why = (
            f"not scored: {name} cannot score text it did not write (it gives "
            "log-probabilities only for its own tokens)"
        )
        return [], "none", why
    tokens, reason = _scored(backend, store.branch_text(node.parent), node.text)
    return tokens, ("none" if reason else "scored"), reason


def compare_siblings(
    store: LoomStore, node_id: str, backend: Backend | None = None
) -> dict[str, Any]:
    """``node_id`` and its siblings (the branches from their parent), side by side: each
    with its tokens and the log-probability the model gave its text, token by token
    (the sum is the log-probability of the whole branch from the parent on; the mean
    compares branches of different lengths). A branch written or edited by hand is read
    by ``backend``'s model where it can score text (``tokens_from``: "scored"), so that
    hand-written and generated branches compare on the same scale, once (the score is
    remembered); otherwise it has no score ("none") and ``unscored`` says why, in words
    the page shows: a backend that cannot score, a generation still running, a branch
    the model cannot read (one such branch does not fail the others)."""
    node = store.get(node_id)
    siblings = store.children(node.parent) if node.parent is not None else [node]
    branches = []
    for sibling in siblings:
        if sibling.hidden and sibling.id != node_id:
            continue
        tokens, source, unscored = _tokens_of(store, sibling, backend)
        total = sum(t["logprob"] for t in tokens) if tokens else None
        branches.append(
            {
                "id": sibling.id,
                "text": sibling.text,
                "author": sibling.author,
                "tokens": tokens,
                "tokens_from": source,
                "unscored": unscored,
                "logprob": total,
                "mean_logprob": total / len(tokens) if tokens else None,
            }
        )
    ranked = sorted((b for b in branches if b["logprob"] is not None), key=lambda b: -b["logprob"])
    return {
        "parent": node.parent,
        "focus": node_id,
        "branches": branches,
        "likeliest": ranked[0]["id"] if ranked else None,
    }
