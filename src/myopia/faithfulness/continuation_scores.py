"""Total log-probabilities of continuations given a prompt, with shared prompts encoded once.

C7 and C8 compare classes of continuations ("describes the page" vs "reports an error")
by their probability given a prompt: log P(continuation | prompt) = the sum of the
log-probabilities of its tokens. Many continuations share one prompt, and many prompts
share a long beginning (the article of C8, asked several questions; the command line of
C7, shown with several outputs), so the work is a tree of three levels:

    context  (encoded once per distinct text)
      └─ query  (encoded once per request, on the context's KV cache)
           └─ continuation  (scored on the query's KV cache)

A ``ScoreRequest(context, query, continuations)`` asks for log P(c | context + query)
for each c. ``score_requests`` runs each level as one batched forward pass over many rows
with the parent's KV cache gathered row by row; ``score_continuations`` is the
one-prompt form. ``score_continuations_reference`` scores every context + query +
continuation in its own full forward pass, with no cache and no padding: the obviously
correct version that the tests compare the fast one with.

Tokenisation: context, query and continuation are tokenised separately, without special
tokens (as ``myopia.generation`` tokenises prompts), and their ids concatenated. Scoring a
continuation needs to know which tokens are its own; tokenising the joined text could
merge the last prompt character with the first continuation character into one token and
blur that boundary. Continuations should therefore start with the space that separates
them from the prompt (" The page is empty."), which is how a BPE tokenizer would split the
joined text anyway.

Rows of a level are right-padded: padded slots come after every real token, so no real
token attends to them (causality), and later levels mask them out with the attention
mask. Position ids are given explicitly (the row's real length so far), so a row's
tokens sit at the positions they would have without padding. The language-model head is
applied only where a log-probability is read (continuation tokens and the last real token
of each prompt), not to every context token.

A cache is a ``transformers.DynamicCache`` of plain layers: models with sliding-window or
other special cache layers (Gemma 2/3, Mistral with a window) are not supported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from myopia.errors import MyopiaError
from myopia.progress import Bar


@dataclass(frozen=True)
class ScoreRequest:
    """Score each continuation given ``context + query`` (tokenised separately, joined).

    Requests whose ``context`` is the same text share one encoding of it."""

    context: str
    query: str
    continuations: tuple[str, ...]


@dataclass
class _Rows:
    """A batch of token rows held in a KV cache, right-padded."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer keys, values: (R, H_kv, S, D)
    mask: torch.Tensor  # (R, S) 1 on real tokens, 0 on padding
    lengths: torch.Tensor  # (R,) real tokens per row: the next token's position id
    next_logprobs: torch.Tensor  # (R, V) log P(next token | the row's tokens)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _pad_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def _extend(
    model, parent: _Rows | None, rows: list[int], segments: list[list[int]], pad: int
) -> tuple[_Rows, list[torch.Tensor]]:
    """Append ``segments[i]`` to row ``rows[i]`` of ``parent`` (None: start from nothing).

    Returns the extended rows and, per segment, the log-probability of each of its tokens
    given everything before it (a segment with no parent has no score for its first
    token; it gets 0 there, and callers never read it)."""
    device = next(model.parameters()).device
    n, width = len(segments), max((len(s) for s in segments), default=0)
    if parent is None:
        layers_in, past_mask = None, torch.zeros((n, 0), dtype=torch.long, device=device)
        lengths = torch.zeros(n, dtype=torch.long, device=device)
        before = None
    else:
        index = torch.tensor(rows, device=device)
        layers_in = [(k[index], v[index]) for k, v in parent.layers]  # (n, H_kv, S, D)
        past_mask, lengths = parent.mask[index], parent.lengths[index]
        before = parent.next_logprobs[index]  # (n, V)
    if width == 0:
        assert parent is not None, "the first level needs at least one token"
        empty = [torch.zeros(0, device=device) for _ in segments]
        return _Rows(layers_in, past_mask, lengths, before), empty

    ids = torch.full((n, width), pad, dtype=torch.long, device=device)  # (n, W)
    new_mask = torch.zeros((n, width), dtype=torch.long, device=device)  # (n, W)
    for i, segment in enumerate(segments):
        ids[i, : len(segment)] = torch.tensor(segment, device=device)
        new_mask[i, : len(segment)] = 1
    positions = lengths[:, None] + torch.arange(width, device=device)  # (n, W)
    cache = DynamicCache(layers_in) if layers_in is not None else DynamicCache()
    out = model.base_model(
        input_ids=ids,
        attention_mask=torch.cat([past_mask, new_mask], dim=1),  # (n, S + W)
        position_ids=positions,
        cache=cache,
        use_cache=True,
    )
    hidden = out.last_hidden_state  # (n, W, C)
    head = model.get_output_embeddings()
    seg_lengths = [len(s) for s in segments]

    # One pass of the (vocabulary-sized) head over every state whose prediction is read:
    # inside a segment, the states before its tokens 1..k-1; at its end, the last real
    # state, which predicts the next level's first token. Row i's states are
    # picked[starts[i] : starts[i] + k_i] (the last one is the end state).
    rows_at, cols_at, starts = [], [], []
    for i, k in enumerate(seg_lengths):
        starts.append(len(rows_at))
        rows_at += [i] * max(k, 1)
        cols_at += list(range(k)) if k else [0]
    picked = torch.log_softmax(
        head(hidden[torch.tensor(rows_at), torch.tensor(cols_at)]).float(), dim=-1
    )  # (P, V)
    ends = torch.tensor(
        [start + max(k, 1) - 1 for start, k in zip(starts, seg_lengths, strict=True)]
    )
    after = picked[ends]  # (n, V)
    if before is not None:
        empty = torch.tensor([k == 0 for k in seg_lengths], device=device)
        after = torch.where(empty[:, None], before, after)

    scores = []
    for i, k in enumerate(seg_lengths):
        token_scores = torch.zeros(k, device=device)
        if k == 0:
            scores.append(token_scores)
            continue
        target = ids[i, :k]
        if before is not None:
            token_scores[0] = before[i, target[0]]
        if k > 1:
            inner = picked[starts[i] : starts[i] + k - 1]  # (k-1, V)
            token_scores[1:] = inner.gather(1, target[1:, None])[:, 0]
        scores.append(token_scores)
    layers_out = [(layer.keys, layer.values) for layer in out.cache.layers]
    grown = _Rows(
        layers_out,
        torch.cat([past_mask, new_mask], dim=1),
        lengths + torch.tensor(seg_lengths, device=device),
        after,
    )
    return grown, scores


def _encode_all(tokenizer, requests: Sequence[ScoreRequest]):
    """Token ids of every distinct context, every query and every continuation."""
    contexts: dict[str, int] = {}
    for r in requests:
        contexts.setdefault(r.context, len(contexts))
    context_ids = [_ids(tokenizer, text) for text in contexts]
    for text, ids in zip(contexts, context_ids, strict=True):
        if not ids:
            raise MyopiaError(f"a prompt context is empty ({text!r}); give it at least one token")
    query_ids = [_ids(tokenizer, r.query) for r in requests]
    continuation_ids = []
    for r in requests:
        row = [_ids(tokenizer, c) for c in r.continuations]
        if any(not ids for ids in row):
            raise MyopiaError("a continuation is empty; every continuation needs a token")
        continuation_ids.append(row)
    return contexts, context_ids, query_ids, continuation_ids


@torch.no_grad()
def score_requests(
    model,
    tokenizer,
    requests: Sequence[ScoreRequest],
    batch_size: int = 64,
    show_progress: bool = False,
    contexts_per_batch: int = 8,
) -> list[list[float]]:
    """``result[i][j]`` = log P(requests[i].continuations[j] | context + query), natural log.

    Contexts are encoded up to ``contexts_per_batch`` at a time; the queries and
    continuations that hang from them run up to ``batch_size`` rows at a time on the
    gathered caches. Each level groups rows of similar length (``length_batches``): a
    pass of a few rows costs about as much as one of many while reading the weights
    dominates, but past a few hundred tokens its cost is its rows times its width,
    padding included. Memory grows with batch_size × the longest prompt."""
    if batch_size < 1 or contexts_per_batch < 1:
        raise MyopiaError(
            f"batch sizes must be at least 1, not {batch_size} and {contexts_per_batch}"
        )
    contexts, context_ids, query_ids, continuation_ids = _encode_all(tokenizer, requests)
    pad = _pad_id(tokenizer)
    by_context: list[list[int]] = [[] for _ in contexts]
    for i, r in enumerate(requests):
        by_context[contexts[r.context]].append(i)
    results = [[0.0] * len(row) for row in continuation_ids]

    context_batches = length_batches([len(ids) for ids in context_ids], contexts_per_batch)
    with Bar(len(context_batches), "scoring continuations", enabled=show_progress) as bar:
        for members in context_batches:
            encoded, _ = _extend(model, None, [], [context_ids[c] for c in members], pad)
            asked = [(row, i) for row, c in enumerate(members) for i in by_context[c]]
            for part in length_batches([len(query_ids[i]) for _, i in asked], batch_size):
                rows = [asked[k] for k in part]
                queried, _ = _extend(
                    model, encoded, [row for row, _ in rows], [query_ids[i] for _, i in rows], pad
                )
                pairs = [
                    (row, i, j)
                    for row, (_, i) in enumerate(rows)
                    for j in range(len(continuation_ids[i]))
                ]
                totals = _continuation_totals(
                    model, queried, pairs, continuation_ids, pad, batch_size
                )
                for (_, i, j), total in zip(pairs, totals, strict=True):
                    results[i][j] = total
            bar.advance("scoring continuations")
    return results


def length_batches(lengths: Sequence[int], most: int, spread: float = 1.5) -> list[list[int]]:
    """Indices of ``lengths`` in batches of at most ``most``, by increasing length; a batch
    also ends before a length above ``spread`` times its shortest.

    Rows of a batch are padded to its longest, and the padding costs as much as real
    tokens (the cost of a forward pass on a CPU is its rows times its width), so
    batches of similar lengths waste little; the ``spread`` bound keeps one long row from
    widening a batch of short ones."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        current = batches[-1] if batches else None
        if (
            current is None
            or len(current) == most
            or lengths[i] > spread * max(lengths[current[0]], 1)
        ):
            batches.append([i])
        else:
            current.append(i)
    return batches


def _continuation_totals(
    model,
    queried: _Rows,
    pairs: list[tuple[int, int, int]],
    continuation_ids: list[list[list[int]]],
    pad: int,
    batch_size: int,
) -> list[float]:
    """log P(continuation | its query row) for each (row of ``queried``, request, index).

    A continuation's first token is read from its row's next-token distribution and each
    later token from the state after the one before it, so its last token is never fed:
    one-token continuations need no forward pass at all. The rest run in
    ``length_batches``: the refusal phrasings are several times longer than most answers."""
    totals = [0.0] * len(pairs)
    fed = []
    for n, (row, i, j) in enumerate(pairs):
        ids = continuation_ids[i][j]
        if len(ids) == 1:
            totals[n] = float(queried.next_logprobs[row, ids[0]])
        else:
            fed.append(n)
    fed_lengths = [len(continuation_ids[pairs[n][1]][pairs[n][2]]) - 1 for n in fed]
    for batch in length_batches(fed_lengths, batch_size):
        chunk = [fed[k] for k in batch]
        ids = [continuation_ids[pairs[n][1]][pairs[n][2]] for n in chunk]
        grown, scores = _extend(
            model, queried, [pairs[n][0] for n in chunk], [c[:-1] for c in ids], pad
        )
        last = grown.next_logprobs[torch.arange(len(chunk)), torch.tensor([c[-1] for c in ids])]
        for k, n in enumerate(chunk):
            totals[n] = float(scores[k].sum() + last[k])
    return totals


def score_continuations(
    model, tokenizer, prefix: str, continuations: Sequence[str], batch_size: int = 64
) -> list[float]:
    """log P(continuation | prefix) for each continuation; the prefix is encoded once."""
    request = ScoreRequest(prefix, "", tuple(continuations))
    return score_requests(model, tokenizer, [request], batch_size)[0]


@torch.no_grad()
def score_continuations_reference(
    model, tokenizer, prefix: str, continuations: Sequence[str], query: str = ""
) -> list[float]:
    """The slow reference: each prefix + query + continuation in its own forward pass."""
    device = next(model.parameters()).device
    head = _ids(tokenizer, prefix) + _ids(tokenizer, query)
    scores = []
    for continuation in continuations:
        tail = _ids(tokenizer, continuation)
        ids = torch.tensor([head + tail], device=device)  # (1, T)
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # (T, V)
        # Token head[-1] + t is predicted at position len(head) - 1 + t.
        rows = torch.arange(len(head) - 1, len(head) - 1 + len(tail), device=device)
        scores.append(float(logprobs[rows, torch.tensor(tail, device=device)].sum()))
    return scores
