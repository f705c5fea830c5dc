"""Features of a generated span: lookback ratios per head, mean residual state per layer,
length and confidence, from one forward pass over prompt + span.

Lookback ratio (Lookback Lens, Chuang et al. 2024). For a sequence of N prompt tokens
(the "context": everything the model was given, as in the paper) followed by G generated
tokens at positions N..N+G-1, head h of layer l and the query at generated position
q = N + i (i = 0..G-1):

    ctx(q) = mean_{k < N} A[q, k]            attention on the prompt, per prompt token
    new(q) = mean_{N <= k <= q} A[q, k]      on the tokens generated so far, itself included
    LR(q)  = ctx(q) / (ctx(q) + new(q))

and the feature is LR averaged over the G queries of the span. As in the paper's code the
query's own key counts as generated (so new(q) is defined at the first generated token);
the queries are the span's own tokens, each reading what it needs to predict the next.

Also per sequence: the mean hidden state over the span's positions for every hidden state
(embeddings, then each layer's output), the span length in tokens, and the mean log
probability the model gave each generated token and the mean entropy of the distributions
they were drawn from (the usual confidence baselines: they read the output only). Logits
are the output embedding applied to the final state at the span's positions only, as in
Llama and GPT-2 models, so no (B, T, vocabulary) tensor is made.

``shared_span_features`` (what C6 uses) reads the same features with the prompts of a
group (the requests about one passage) sharing one encoding of their common beginning;
``span_features``, one whole pass per sequence, is what it is tested against.

Batching: sequences are sorted by length and padded on the right. Causal attention means
no real token attends to a later pad, so no mask is needed and every real position sees
exactly its unpadded computation. A batch holds as many sequences as keep the attention
weights of all layers (L x H x T x T floats each) under ``max_attention_floats``.
``lookback_ratios_reference`` is the per-token loop the batched version is tested against.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import DynamicCache

from myopia.errors import MyopiaError
from myopia.generation.decode import common_prefix_length
from myopia.heads.attention import returning_weights
from myopia.progress import track

__all__ = [
    "SpanFeatures",
    "lookback_ratios",
    "lookback_ratios_reference",
    "shared_span_features",
    "span_features",
    "span_lookback",
]

MAX_ATTENTION_FLOATS = 64 * 2**20  # 256 MiB of float32 attention weights per batch


@dataclass
class SpanFeatures:
    lookback: np.ndarray  # (N, L, H) mean lookback ratio over the span
    residual: np.ndarray  # (N, L + 1, D) mean hidden state over the span, 0 = embeddings
    span_tokens: np.ndarray  # (N,) generated tokens in the span
    mean_logprob: np.ndarray  # (N,) mean log p(generated token | everything before it)
    mean_entropy: np.ndarray  # (N,) mean entropy (nats) of the next-token distributions


def lookback_ratios(attention: torch.Tensor, n_prompt: int, n_span: int) -> torch.Tensor:
    """``(..., H)`` span-mean lookback ratio from ``attention`` ``(..., H, T, T)`` of one
    sequence whose prompt is ``n_prompt`` tokens and span ``n_span`` tokens (T may be
    longer: right padding)."""
    return span_lookback(attention[..., n_prompt : n_prompt + n_span, :], n_prompt)


def span_lookback(queries: torch.Tensor, n_prompt: int) -> torch.Tensor:
    """``(..., H)`` span-mean lookback ratio from the span's own query rows ``(..., H, G,
    T)``: keys ``:n_prompt`` are the prompt, the rest the span (and right padding)."""
    queries = queries.float()
    n_span = queries.shape[-2]
    ctx = queries[..., :n_prompt].mean(-1)  # (..., H, G)
    # Causal weights are 0 beyond the query, so a sum over all later keys is the sum over
    # keys N..q; the query at span index i has i + 1 of them.
    seen = torch.arange(1, n_span + 1, dtype=queries.dtype, device=queries.device)  # (G,)
    new = queries[..., n_prompt:].sum(-1) / seen  # (..., H, G)
    return (ctx / (ctx + new)).mean(-1)  # (..., H)


def lookback_ratios_reference(attention: torch.Tensor, n_prompt: int, n_span: int) -> np.ndarray:
    """Slow per-query loop of the same definition, for ``attention`` ``(L, H, T, T)``."""
    n_layers, n_heads = attention.shape[:2]
    out = np.zeros((n_layers, n_heads))
    for layer in range(n_layers):
        for head in range(n_heads):
            ratios = []
            for q in range(n_prompt, n_prompt + n_span):
                row = attention[layer, head, q].double()
                ctx = float(row[:n_prompt].mean())
                new = float(row[n_prompt : q + 1].mean())
                ratios.append(ctx / (ctx + new))
            out[layer, head] = float(np.mean(ratios))
    return out


def _batches(lengths: list[int], floats_per_square: int, budget: int) -> list[list[int]]:
    """Indices grouped by similar length, each group's attention under ``budget`` floats."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups, group = [], []
    for i in order:
        width = lengths[i]  # the longest so far, since the order is ascending
        if group and (len(group) + 1) * floats_per_square * width * width > budget:
            groups.append(group)
            group = []
        group.append(i)
    if group:
        groups.append(group)
    return groups


def _check_inputs(model: nn.Module, prompt_ids: list[list[int]], span_ids: list[list[int]]):
    if len(prompt_ids) != len(span_ids) or not prompt_ids:
        raise MyopiaError(
            f"need one span per prompt and at least one of each, got {len(prompt_ids)} "
            f"prompts and {len(span_ids)} spans"
        )
    if any(not p for p in prompt_ids) or any(not s for s in span_ids):
        raise MyopiaError("every prompt and every span needs at least one token")
    context = getattr(model.config, "max_position_embeddings", None)
    longest = max(len(p) + len(s) for p, s in zip(prompt_ids, span_ids, strict=True))
    if context is not None and longest > context:
        raise MyopiaError(
            f"a prompt plus its quote has {longest} tokens, more than the model's "
            f"context of {context}: use shorter contexts"
        )


class _FeatureRows:
    """The features of ``n`` sequences, filled in one sequence at a time."""

    def __init__(self, n: int, n_layers: int, n_heads: int):
        self.lookback = np.zeros((n, n_layers, n_heads), dtype=np.float32)
        self.residual: np.ndarray | None = None  # sized by the first batch's hidden states
        self.logprob = np.zeros(n, dtype=np.float64)
        self.entropy = np.zeros(n, dtype=np.float64)

    def put(self, i: int, ratios: torch.Tensor, out, unembed, row: int, start: int, span):
        """Sequence ``i``: its lookback ``ratios`` (L, H), and from row ``row`` of the
        model's output ``out``, where its span starts at column ``start``, the mean hidden
        state per layer over the span and the mean log-probability and entropy of the
        span's tokens."""
        if self.residual is None:
            d_model = out.hidden_states[0].shape[-1]
            shape = (len(self.logprob), len(out.hidden_states), d_model)
            self.residual = np.zeros(shape, dtype=np.float32)
        self.lookback[i] = ratios.cpu().numpy()
        stop = start + len(span)
        states = torch.stack([h[row, start:stop] for h in out.hidden_states])  # (L+1, G, D)
        self.residual[i] = states.float().mean(1).cpu().numpy()
        # The state at position t predicts token t + 1: the span's tokens are predicted
        # from positions start - 1 .. stop - 2.
        final = out.last_hidden_state[row, start - 1 : stop - 1]  # (G, D)
        logits = unembed(final).float().log_softmax(-1)  # (G, V)
        targets = torch.tensor(span, device=logits.device)
        self.logprob[i] = float(logits.gather(1, targets[:, None]).mean())
        self.entropy[i] = float(-(logits.exp() * logits).sum(-1).mean())

    def features(self, span_ids: list[list[int]]) -> SpanFeatures:
        return SpanFeatures(
            lookback=self.lookback,
            residual=self.residual,
            span_tokens=np.array([len(s) for s in span_ids]),
            mean_logprob=self.logprob,
            mean_entropy=self.entropy,
        )


@torch.inference_mode()
def span_features(
    model: nn.Module,
    prompt_ids: list[list[int]],
    span_ids: list[list[int]],
    *,
    max_attention_floats: int = MAX_ATTENTION_FLOATS,
    show_progress: bool = False,
) -> SpanFeatures:
    """Features of each ``span_ids[i]`` (at least one token) generated after
    ``prompt_ids[i]`` (at least one token)."""
    _check_inputs(model, prompt_ids, span_ids)
    config = model.config
    n_layers, n_heads = config.num_hidden_layers, config.num_attention_heads
    lengths = [len(p) + len(s) for p, s in zip(prompt_ids, span_ids, strict=True)]
    device = next(model.parameters()).device
    base = getattr(model, "base_model", model)
    unembed = model.get_output_embeddings()
    n = len(lengths)
    collected = _FeatureRows(n, n_layers, n_heads)
    groups = _batches(lengths, n_layers * n_heads, max_attention_floats)
    with returning_weights(model):
        for group in track(groups, "reading attention", enabled=show_progress):
            width = max(lengths[i] for i in group)
            ids = torch.zeros((len(group), width), dtype=torch.long)  # pads: any token id
            for row, i in enumerate(group):
                ids[row, : lengths[i]] = torch.tensor(prompt_ids[i] + span_ids[i])
            out = base(
                input_ids=ids.to(device),
                output_attentions=True,
                output_hidden_states=True,
                use_cache=False,
            )
            for row, i in enumerate(group):
                start, stop = len(prompt_ids[i]), lengths[i]
                # One sequence at a time, so no second copy of the whole batch's weights.
                attention = torch.stack([a[row] for a in out.attentions])  # (L, H, T, T)
                ratios = lookback_ratios(attention, start, stop - start)
                collected.put(i, ratios, out, unembed, row, start, span_ids[i])
            del out
    return collected.features(span_ids)


@torch.inference_mode()
def shared_span_features(
    model: nn.Module,
    prompt_ids: list[list[int]],
    span_ids: list[list[int]],
    groups: Sequence[Hashable],
    *,
    max_attention_floats: int = MAX_ATTENTION_FLOATS,
    show_progress: bool = False,
) -> SpanFeatures:
    """``span_features`` with the prompts of a group (C6: the requests about one passage)
    reading their common beginning from one encoding of it.

    Each group's shared prefix (its prompts' longest common beginning, leaving every
    prompt at least one token of its own) is encoded once; each sequence's own rest,
    prompt then span, runs on that prefix's KV cache with the attention weights returned.
    The features need weights only for the span's queries, and those see the prefix's
    keys through the cache, so nothing is lost; what is saved is the prefix's forward
    pass, once per sequence after the first (most of C6's prompt is the passage). The
    same numbers as ``span_features`` up to float rounding (a test compares them)."""
    _check_inputs(model, prompt_ids, span_ids)
    if len(groups) != len(prompt_ids):
        raise MyopiaError(f"{len(groups)} group keys for {len(prompt_ids)} prompts")
    members: dict[Hashable, list[int]] = {}
    for i, key in enumerate(groups):
        members.setdefault(key, []).append(i)
    shared = list(members.values())
    prefix = [
        min(
            common_prefix_length([prompt_ids[i] for i in m]), min(len(prompt_ids[i]) for i in m) - 1
        )
        for m in shared
    ]
    config = model.config
    n_layers, n_heads = config.num_hidden_layers, config.num_attention_heads
    device = next(model.parameters()).device
    base = getattr(model, "base_model", model)
    unembed = model.get_output_embeddings()
    n = len(prompt_ids)
    collected = _FeatureRows(n, n_layers, n_heads)
    rest = [len(prompt_ids[i]) + len(span_ids[i]) for i in range(n)]
    batches = _group_batches(shared, prefix, rest, n_layers * n_heads, max_attention_floats)
    with returning_weights(model):
        for batch in track(batches, "reading attention", enabled=show_progress):
            width = max(prefix[g] for g in batch)
            cache, past_mask = None, torch.zeros((len(batch), 0), dtype=torch.long)
            if width:
                ids = torch.zeros((len(batch), width), dtype=torch.long)  # pads: any token id
                past_mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, g in enumerate(batch):
                    ids[row, : prefix[g]] = torch.tensor(prompt_ids[shared[g][0]][: prefix[g]])
                    past_mask[row, : prefix[g]] = 1
                out = base(
                    input_ids=ids.to(device), attention_mask=past_mask.to(device), use_cache=True
                )
                cache = [(layer.keys, layer.values) for layer in out.cache.layers]
                del out
            rows = [(row, g, i) for row, g in enumerate(batch) for i in shared[g]]
            own = [prompt_ids[i][prefix[g] :] + span_ids[i] for _, g, i in rows]
            span_width = max(len(o) for o in own)
            ids = torch.zeros((len(rows), span_width), dtype=torch.long)
            new_mask = torch.zeros((len(rows), span_width), dtype=torch.long)
            for k, tokens in enumerate(own):
                ids[k, : len(tokens)] = torch.tensor(tokens)
                new_mask[k, : len(tokens)] = 1
            index = torch.tensor([row for row, _, _ in rows])
            starts = torch.tensor([prefix[g] for _, g, _ in rows])
            out = base(
                input_ids=ids.to(device),
                attention_mask=torch.cat([past_mask[index], new_mask], dim=1).to(device),
                position_ids=(starts[:, None] + torch.arange(span_width)).to(device),
                cache=None
                if cache is None
                else DynamicCache([(k[index.to(device)], v[index.to(device)]) for k, v in cache]),
                output_attentions=True,
                output_hidden_states=True,
                use_cache=cache is not None,
            )
            for k, (_, g, i) in enumerate(rows):
                # Row k's own tokens start after the batch's padded prefix (width columns):
                # its keys are the group's prefix, then its own prompt rest and span.
                n_own, n_span = len(prompt_ids[i]) - prefix[g], len(span_ids[i])
                keys = torch.cat(
                    [torch.arange(prefix[g]), width + torch.arange(n_own + n_span)]
                ).to(device)
                queries = torch.stack(
                    [a[k, :, n_own : n_own + n_span][..., keys] for a in out.attentions]
                )  # (L, H, G, prompt + G)
                ratios = span_lookback(queries, len(prompt_ids[i]))
                collected.put(i, ratios, out, unembed, k, n_own, span_ids[i])
            del out
    return collected.features(span_ids)


def _group_batches(
    shared: list[list[int]],
    prefix: list[int],
    lengths: list[int],
    floats_per_square: int,
    budget: int,
) -> list[list[int]]:
    """Groups (indices into ``shared``) batched by prefix length, each batch's attention
    weights (rows x heads x own tokens x all keys) under ``budget`` floats."""
    order = sorted(
        range(len(shared)), key=lambda g: (prefix[g], max(lengths[i] for i in shared[g]))
    )
    batches: list[list[int]] = []
    batch: list[int] = []
    for g in order:
        trial = [*batch, g]
        keys = max(prefix[h] for h in trial) + max(
            lengths[i] - prefix[h] for h in trial for i in shared[h]
        )
        rows = sum(len(shared[h]) for h in trial)
        own = max(lengths[i] - prefix[h] for h in trial for i in shared[h])
        # A batch never mixes groups with and without a prefix: a row with none would
        # be all padding in the prefix pass.
        mixed = batch and (prefix[batch[0]] == 0) != (prefix[g] == 0)
        if batch and (mixed or rows * floats_per_square * own * keys > budget):
            batches.append(batch)
            trial = [g]
        batch = trial
    if batch:
        batches.append(batch)
    return batches
