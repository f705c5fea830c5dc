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

Batching: sequences are sorted by length and padded on the right. Causal attention means
no real token attends to a later pad, so no mask is needed and every real position sees
exactly its unpadded computation. A batch holds as many sequences as keep the attention
weights of all layers (L x H x T x T floats each) under ``max_attention_floats``.
``lookback_ratios_reference`` is the per-token loop the batched version is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from myopia.errors import MyopiaError
from myopia.heads.attention import returning_weights
from myopia.progress import track

__all__ = [
    "SpanFeatures",
    "lookback_ratios",
    "lookback_ratios_reference",
    "span_features",
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
    queries = attention[..., n_prompt : n_prompt + n_span, :].float()  # (..., H, G, T)
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
    if len(prompt_ids) != len(span_ids) or not prompt_ids:
        raise MyopiaError(
            f"need one span per prompt and at least one of each, got {len(prompt_ids)} "
            f"prompts and {len(span_ids)} spans"
        )
    if any(not p for p in prompt_ids) or any(not s for s in span_ids):
        raise MyopiaError("every prompt and every span needs at least one token")
    config = model.config
    n_layers, n_heads = config.num_hidden_layers, config.num_attention_heads
    context = getattr(config, "max_position_embeddings", None)
    lengths = [len(p) + len(s) for p, s in zip(prompt_ids, span_ids, strict=True)]
    if context is not None and max(lengths) > context:
        raise MyopiaError(
            f"a prompt plus its quote has {max(lengths)} tokens, more than the model's "
            f"context of {context}: use shorter contexts"
        )
    device = next(model.parameters()).device
    base = getattr(model, "base_model", model)
    unembed = model.get_output_embeddings()
    n = len(lengths)
    lookback = np.zeros((n, n_layers, n_heads), dtype=np.float32)
    residual: np.ndarray | None = None
    logprob = np.zeros(n, dtype=np.float64)
    entropy = np.zeros(n, dtype=np.float64)
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
            if residual is None:
                d_model = out.hidden_states[0].shape[-1]
                residual = np.zeros((n, len(out.hidden_states), d_model), dtype=np.float32)
            for row, i in enumerate(group):
                start, stop = len(prompt_ids[i]), lengths[i]
                # One sequence at a time, so no second copy of the whole batch's weights.
                attention = torch.stack([a[row] for a in out.attentions])  # (L, H, T, T)
                lookback[i] = lookback_ratios(attention, start, stop - start).cpu().numpy()
                states = torch.stack([h[row, start:stop] for h in out.hidden_states])  # (L+1, G, D)
                residual[i] = states.float().mean(1).cpu().numpy()
                # The state at position t predicts token t + 1: the span's tokens are
                # predicted from positions start - 1 .. stop - 2.
                final = out.last_hidden_state[row, start - 1 : stop - 1]  # (G, D)
                logits = unembed(final).float().log_softmax(-1)  # (G, V)
                targets = torch.tensor(span_ids[i], device=logits.device)
                logprob[i] = float(logits.gather(1, targets[:, None]).mean())
                entropy[i] = float(-(logits.exp() * logits).sum(-1).mean())
            del out
    return SpanFeatures(
        lookback=lookback,
        residual=residual,
        span_tokens=np.array([len(s) for s in span_ids]),
        mean_logprob=logprob,
        mean_entropy=entropy,
    )
