"""Myopic attention functions, in transformers' attention-function signature.

Every function here has the signature transformers gives its attention backends,
``(module, query, key, value, attention_mask, *, scaling, dropout, **kwargs)``, and returns
``(attn_output, attn_weights)`` with ``attn_output`` shaped (B, Q, H, hd).

The modes (see CLAIMS.md for the definitions):

- ``kv``: for query position t, the keys and values of positions s < t are constants; the
  key and value of t itself are live. Forward values equal ordinary attention.
- ``residual`` (Wu, Morris and Levine, 2024): for query position t, the normalised inputs to
  attention of positions s < t are constants but the key/value projections applied to
  them use live weights. Forward values equal ordinary attention. This needs a second,
  weight-only key/value channel, which ``weight_only.py`` adds with projection hooks.
- ``bigram``: each position attends to itself only (past keys and values removed). This
  changes the forward values: it is the "transformer bigram" baseline, not a gradient mode.

Each mode has an eager function (materialises the attention matrix; the readable
reference) and a fast one (scaled_dot_product_attention plus O(T) corrections). Tests
compare both with a brute-force reference that applies the definitions one target
position at a time (``reference.py``).

How one pass gives the myopic gradient: the query at t sees a "past" channel of keys and
values (constants in ``kv`` mode, weight-only in ``residual`` mode). The own position's
contribution is then re-attached with zero-valued terms ``own - past`` whose only effect
is on the gradient, so that position t's own key and value receive exactly the gradient
they get from query t and nothing from later queries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from myopia.attention import weight_only
from myopia.errors import MyopiaError

MODES = ("kv", "residual", "bigram")

# Bound on the scores materialised at once when the fast path needs each query's
# probability of attending to itself (it never needs the whole matrix at once).
_SELF_PROB_CHUNK_ELEMENTS = 1 << 24


def _expand_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, Hkv, T, hd) -> (B, Hkv * groups, T, hd), query head h reading kv head h // groups."""
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def _split_channels(module, query, key, value, mode):
    """Return (query, key_live, value_live, key_past, value_past).

    ``*_live`` carry the gradient a position's own key/value gets from its own query;
    ``*_past`` are what a query sees at earlier positions.
    """
    if mode == "kv":
        return query, key, value, key.detach(), value.detach()
    layout = weight_only.layout_of(module)
    if layout is None:
        raise MyopiaError(
            "myopic mode 'residual' needs its weight-only key/value channel: switch it on with "
            "myopia.set_myopic(model, 'residual') or myopia.myopic(model, 'residual'), "
            "not with model.set_attn_implementation"
        )
    if layout == "heads":  # key/value (B, 2*Hkv, T, hd): live heads, then weight-only heads
        n = key.shape[1] // 2
        return query, key[:, :n], value[:, :n], key[:, n:], value[:, n:]
    # layout == "batch": query/key/value (2B, H, T, hd): live batch, then weight-only batch
    b = query.shape[0] // 2
    return query[:b], key[:b], value[:b], key[b:], value[b:]


def _check_no_dropout(dropout: float) -> None:
    if dropout:
        raise MyopiaError(
            "myopic attention does not support attention dropout: set the model config's "
            "attention dropout to 0 (attention_dropout, or attn_pdrop for GPT-2) or call "
            "model.eval()"
        )


def _additive_mask(attention_mask, q_len: int, k_len: int, dtype, device) -> torch.Tensor:
    """A float mask (B or 1, 1, Q, K): 0 where attention is allowed, the dtype's min elsewhere.

    ``None`` means plain causal attention (query i sees keys up to i + K - Q). A large
    finite value, not -inf, keeps fully masked rows (padding) finite instead of NaN.
    """
    if attention_mask is None:
        allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=device)
        allowed = allowed.tril(diagonal=k_len - q_len)[None, None]
    elif attention_mask.dtype == torch.bool:
        allowed = attention_mask[..., :k_len]
    else:
        return attention_mask[..., :k_len].to(dtype)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


def _softmax(scores: torch.Tensor) -> torch.Tensor:
    # At least float32 for the softmax, as transformers' eager path does, but never less
    # than the input precision (float64 tests need float64 throughout).
    dtype = torch.promote_types(scores.dtype, torch.float32)
    return F.softmax(scores, dim=-1, dtype=dtype).to(scores.dtype)


# ---------------------------------------------------------------------------------------
# kv and residual modes
# ---------------------------------------------------------------------------------------


def myopic_eager(module, query, key, value, attention_mask, scaling, dropout=0.0, *, mode, **_):
    """Readable reference: materialise scores with past keys constant, own key live."""
    _check_no_dropout(dropout)
    q, k_live, v_live, k_past, v_past = _split_channels(module, query, key, value, mode)
    batch, n_heads, q_len, _ = q.shape  # (B, H, Q, hd)
    n_kv_heads, k_len = k_live.shape[1], k_live.shape[2]  # (B, Hkv, K, hd)
    groups, offset = n_heads // n_kv_heads, k_len - q_len
    k_past_h, v_past_h = _expand_kv(k_past, groups), _expand_kv(v_past, groups)  # (B, H, K, hd)
    # Zero-valued differences: own key/value minus what later queries see of them.
    dk_own = _expand_kv(k_live[:, :, offset:] - k_past[:, :, offset:], groups)  # (B, H, Q, hd)
    dv_own = _expand_kv(v_live[:, :, offset:] - v_past[:, :, offset:], groups)  # (B, H, Q, hd)

    scores = torch.matmul(q, k_past_h.transpose(-1, -2)) * scaling  # (B, H, Q, K)
    scores.diagonal(offset, -2, -1).add_(scaling * (q * dk_own).sum(-1))  # own score live
    scores = scores + _additive_mask(attention_mask, q_len, k_len, q.dtype, q.device)
    probs = _softmax(scores)  # (B, H, Q, K)
    own_prob = probs.diagonal(offset, -2, -1).unsqueeze(-1)  # (B, H, Q, 1)
    out = torch.matmul(probs, v_past_h) + own_prob * dv_own  # (B, H, Q, hd)
    return out.transpose(1, 2).contiguous(), probs


@torch.no_grad()
def _own_attention_prob(q, k, attention_mask, scaling, offset) -> torch.Tensor:
    """Each query's attention probability on its own key: (B, H, Q, 1), no gradient.

    Computed in query chunks so that long sequences never hold the whole (Q, K) matrix.
    """
    batch, n_heads, q_len, head_dim = q.shape  # (B, H, Q, hd)
    n_kv_heads, k_len = k.shape[1], k.shape[2]  # (B, Hkv, K, hd)
    groups = n_heads // n_kv_heads
    q_grouped = q.reshape(batch, n_kv_heads, groups, q_len, head_dim)  # (B, Hkv, G, Q, hd)
    k_t = k.unsqueeze(2).transpose(-1, -2)  # (B, Hkv, 1, hd, K)
    chunk = max(1, _SELF_PROB_CHUNK_ELEMENTS // max(1, batch * n_heads * k_len))
    probs = []
    for start in range(0, q_len, chunk):
        stop = min(q_len, start + chunk)
        scores = torch.matmul(q_grouped[..., start:stop, :], k_t) * scaling  # (B, Hkv, G, c, K)
        if attention_mask is None:
            rows = torch.arange(start, stop, device=q.device)[:, None] + offset
            cols = torch.arange(k_len, device=q.device)[None, :]
            scores = scores.masked_fill(cols > rows, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[:, :, None, start:stop, :]  # (B|1, 1, 1, c, K)
        own = torch.arange(start, stop, device=q.device) + offset  # (c,)
        own_scores = scores[..., torch.arange(stop - start, device=q.device), own]  # (B,Hkv,G,c)
        lse_dtype = torch.promote_types(scores.dtype, torch.float32)
        probs.append(torch.exp(own_scores - torch.logsumexp(scores.to(lse_dtype), -1).to(q.dtype)))
    return torch.cat(probs, dim=-1).reshape(batch, n_heads, q_len, 1)


def myopic_sdpa(module, query, key, value, attention_mask, scaling, dropout=0.0, *, mode, **_):
    """Fast path: SDPA over the past channel, then O(T) zero-valued own-position terms."""
    _check_no_dropout(dropout)
    q, k_live, v_live, k_past, v_past = _split_channels(module, query, key, value, mode)
    batch, n_heads, q_len, _ = q.shape  # (B, H, Q, hd)
    n_kv_heads, k_len = k_live.shape[1], k_live.shape[2]  # (B, Hkv, K, hd)
    groups, offset = n_heads // n_kv_heads, k_len - q_len

    causal_only = attention_mask is None and q_len == k_len
    sdpa_mask = attention_mask[..., :k_len] if attention_mask is not None else None
    if attention_mask is None and not causal_only:
        sdpa_mask = _additive_mask(None, q_len, k_len, q.dtype, q.device)
    # Values and the query's gradient: every key seen through the past channel. The mask
    # goes to SDPA as transformers' sdpa backend passes it, so padded rows match it.
    out = F.scaled_dot_product_attention(
        q, k_past, v_past, attn_mask=sdpa_mask, is_causal=causal_only, scale=scaling,
        enable_gqa=groups > 1,
    )  # (B, H, Q, hd)
    lse_mask = None if causal_only else _additive_mask(attention_mask, q_len, k_len, q.dtype, q.device)
    own_prob = _own_attention_prob(q, k_past, lse_mask, scaling, offset)  # (B, H, Q, 1)

    dk_own = _expand_kv(k_live[:, :, offset:] - k_past[:, :, offset:], groups)  # (B, H, Q, hd)
    dv_own = _expand_kv(v_live[:, :, offset:] - v_past[:, :, offset:], groups)  # (B, H, Q, hd)
    v_own = _expand_kv(v_past[:, :, offset:].detach(), groups)  # (B, H, Q, hd)
    # d out_t / d score_tt = p_tt (v_t - out_t); the score's own-key part enters through
    # a zero-valued dot product, so only the own key's gradient changes.
    d_out_d_own_score = own_prob * (v_own - out.detach())  # (B, H, Q, hd), constant
    own_score_delta = scaling * (q.detach() * dk_own).sum(-1, keepdim=True)  # (B, H, Q, 1)
    out = out + own_prob * dv_own + d_out_d_own_score * own_score_delta
    return out.transpose(1, 2).contiguous(), None


# ---------------------------------------------------------------------------------------
# bigram mode
# ---------------------------------------------------------------------------------------


def bigram_eager(module, query, key, value, attention_mask, scaling, dropout=0.0, **_):
    """Readable reference: softmax over a mask that allows each query only its own key."""
    _check_no_dropout(dropout)
    batch, n_heads, q_len, _ = query.shape  # (B, H, Q, hd)
    n_kv_heads, k_len = key.shape[1], key.shape[2]  # (B, Hkv, K, hd)
    groups = n_heads // n_kv_heads
    rows = torch.arange(q_len, device=query.device)[:, None] + (k_len - q_len)
    own_only = rows == torch.arange(k_len, device=query.device)[None, :]  # (Q, K)
    scores = torch.matmul(query, _expand_kv(key, groups).transpose(-1, -2)) * scaling
    scores = scores.masked_fill(~own_only, torch.finfo(scores.dtype).min)  # (B, H, Q, K)
    probs = _softmax(scores)
    out = torch.matmul(probs, _expand_kv(value, groups))  # (B, H, Q, hd)
    return out.transpose(1, 2).contiguous(), probs


def bigram_fast(module, query, key, value, attention_mask, scaling, dropout=0.0, **_):
    """A softmax over one key is 1: the output is the own value."""
    _check_no_dropout(dropout)
    n_heads, q_len = query.shape[1], query.shape[2]
    n_kv_heads, k_len = key.shape[1], key.shape[2]
    out = _expand_kv(value[:, :, k_len - q_len:], n_heads // n_kv_heads)  # (B, H, Q, hd)
    return out.transpose(1, 2).contiguous(), None

