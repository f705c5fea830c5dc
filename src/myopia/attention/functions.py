"""Myopic attention functions, in transformers' attention-function signature.

Every function here has the signature transformers gives its attention backends,
``(module, query, key, value, attention_mask, *, scaling, dropout, **kwargs)``, and returns
``(attn_output, attn_weights)`` with ``attn_output`` shaped (B, Q, H, hd).

The modes (see CLAIMS.md for the definitions):

- ``kv``: for query position t, the keys and values of positions s < t are constants; the
  key and value of t itself are live. Forward values equal ordinary attention.
- ``residual`` (Wu, Morris and Levine, 2024): for query position t, the normalised inputs to
  attention of positions s < t are constants but the key/value projections applied to
  them use live weights. Forward values equal ordinary attention. This needs the
  projection's output in separate gradient channels, which ``residual_channels.py`` adds with
  projection hooks.
- ``bigram``: each position attends to itself only (past keys and values removed). This
  changes the forward values: it is the "transformer bigram" baseline, not a gradient mode.

Each mode has a fast function (the fused kernel scaled_dot_product_attention uses, plus
O(T) work in backward) and an eager one (materialises and returns the attention matrix).
Tests compare both with a brute-force reference that applies the definitions one target
position at a time (``myopia/gradients/reference.py``).

How one pass gives the myopic gradient: every query sees the keys and values through a
"past" channel (constants in ``kv`` mode, weight-only in ``residual`` mode), which fixes
the values and the query's gradient. Each position's own key and value then receive, in
backward only, exactly the gradient their own query sends them (the diagonal of the
attention matrix), through an "own" channel: the live key/value in ``kv`` mode, an
input-only channel in ``residual`` mode. Later queries send them nothing.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from myopia.attention import residual_channels
from myopia.errors import MyopiaError

MODES = ("kv", "residual", "bigram")

# Bound on the scores materialised at once where the fast path computes row log-sum-exps
# itself (off the CPU); it never needs the whole matrix at once.
_LSE_CHUNK_ELEMENTS = 1 << 24


def _expand_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, Hkv, T, hd) -> (B, Hkv * groups, T, hd), query head h reading kv head h // groups."""
    if groups == 1:
        return x
    batch, n_kv_heads, length, head_dim = x.shape
    grouped = x[:, :, None].expand(batch, n_kv_heads, groups, length, head_dim)
    return grouped.reshape(batch, n_kv_heads * groups, length, head_dim)


def _split_channels(module, query, key, value, mode, offset):
    """Return (query, key_past, value_past, key_own, value_own).

    ``*_past`` (B, Hkv, K, hd) are the keys and values every query sees, the own position
    included. ``*_own`` (B, Hkv, Q, hd) hold the same values at the query positions and
    carry exactly the gradient paths a position's own key/value adds for its own query
    beyond the past channel; only ``_OwnPositionGradient`` sends gradient into them.
    """

    def own(x):  # the own positions' rows (all rows unless a cache holds earlier ones)
        return x[:, :, offset:] if offset else x

    if mode == "kv":  # past: constants; own: the whole live key/value
        return query, key.detach(), value.detach(), own(key), own(value)
    layout = residual_channels.layout_of(module)
    if layout is None:
        raise MyopiaError(
            "myopic mode 'residual' needs its weight-only key/value channel: switch it on with "
            "myopia.set_myopic(model, 'residual') or myopia.myopic(model, 'residual'), "
            "not with model.set_attn_implementation"
        )
    # The weight-only channel carries the weights' whole gradient (own position included);
    # the own position adds only the path into its input: the input-only channel. Channels
    # that skip the model's code are split into heads here, as the model splits them.
    stashed = residual_channels.take_stashed_channels(module)
    if stashed[0].shape[1] != key.shape[2]:
        raise MyopiaError("myopic mode 'residual' does not work with a KV cache: use_cache=False")

    def heads(x):  # (B, T, D) -> (B, D // hd, T, hd)
        return x.view(*x.shape[:-1], -1, query.shape[-1]).transpose(1, 2)

    if layout == "heads":  # key (B, 2*Hkv, T, hd): input-only heads, then weight-only heads
        k_x, k_w = key.chunk(2, dim=1)
        v_x, v_w = (heads(x) for x in stashed)
    else:  # "fused": the model's own keys and values are the weight-only channel; the
        # input-only copies (B, T, Hkv, hd) come from the hook, keys rotated as the model
        # rotates them (GPT-NeoX, Phi3)
        k_w, v_w = key, value
        k_x, v_x = (x.transpose(1, 2) for x in stashed)  # (B, Hkv, T, hd)
        k_x = residual_channels.rotate_keys(module, k_x)
    return query, k_w, v_w, own(k_x), own(v_x)


def _check_no_dropout(dropout: float) -> None:
    if dropout:
        raise MyopiaError(
            "myopic attention does not support attention dropout: set the model config's "
            "attention dropout to 0 (attention_dropout, or attn_pdrop for GPT-2) or call "
            "model.eval()"
        )


# Keyword arguments models pass to attention functions that do not change what attention
# computes here: bookkeeping for the model's other layers or for other backends.
_BOOKKEEPING = frozenset(
    {"position_ids", "cache_position", "use_cache", "output_attentions", "output_router_logits"}
)
# Keyword arguments the functions here implement (sliding_window: see _score_options).
_IMPLEMENTED = frozenset({"softcap", "s_aux", "sliding_window"})


@dataclass(frozen=True)
class _ScoreOptions:
    """What a model's attention adds to softmax(scaling * q k^T + mask) v."""

    softcap: float | None = None  # scores -> softcap * tanh(scores / softcap) (Gemma2)
    sinks: torch.Tensor | None = None  # (H,) logit of an extra key with value 0 (GPT-OSS)


def _score_options(module, key, attention_mask, dropout, kwargs) -> _ScoreOptions:
    """Check the attention call's keyword arguments and return the score options.

    Anything not implemented here is refused, never ignored: an ignored argument is a
    silently wrong gradient. An argument passed as None or False is a feature switched off.
    """
    _check_no_dropout(dropout)
    given = {name for name, value in kwargs.items() if value is not None and value is not False}
    unknown = sorted(given - _BOOKKEEPING - _IMPLEMENTED)
    if unknown:
        raise MyopiaError(
            f"myopic attention does not implement the attention argument(s) "
            f"{', '.join(unknown)} that {type(module).__name__} passes: this architecture "
            "has no myopic mode"
        )
    # A sliding window reaches attention in the mask transformers builds for the layer
    # (the argument itself is for flash-attention kernels). A missing mask is plain
    # causal attention, right only while every key is inside the window.
    window = kwargs.get("sliding_window")
    if window is not None and attention_mask is None and key.shape[2] > window:
        raise MyopiaError(
            f"{type(module).__name__} passed a sliding window of {window} without a mask "
            "for it: myopic attention cannot apply the window"
        )
    return _ScoreOptions(softcap=kwargs.get("softcap"), sinks=kwargs.get("s_aux"))


def _softmax(scores: torch.Tensor, sinks: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the keys of (B, H, Q, K) scores; with ``sinks`` (H,), each head's row
    also holds one more key of that logit and value 0, whose probability is dropped."""
    # At least float32 for the softmax, as transformers' eager path does, but never less
    # than the input precision (float64 tests need float64 throughout).
    dtype = torch.promote_types(scores.dtype, torch.float32)
    if sinks is None:
        return F.softmax(scores, dim=-1, dtype=dtype).to(scores.dtype)
    sink_column = sinks.to(scores.dtype).reshape(1, -1, 1, 1).expand(*scores.shape[:-1], 1)
    probs = F.softmax(torch.cat([scores, sink_column], dim=-1), dim=-1, dtype=dtype)
    return probs[..., :-1].to(scores.dtype)  # (B, H, Q, K)


# ---------------------------------------------------------------------------------------
# kv and residual modes
# ---------------------------------------------------------------------------------------


# The small float masks built last: (weak reference to the boolean mask, or None; key;
# float mask), newest first. Every layer of a forward gets the same mask (one per layer
# type), so each is built once; large masks (whose building is not overhead) are not kept.
_FLOAT_MASKS: list = []
_FLOAT_MASK_KEPT_ELEMENTS = 1 << 20


def _float_mask(attention_mask, q_len: int, k_len: int, dtype, device) -> torch.Tensor:
    """A float mask (B or 1, 1, Q, K): 0 where attention is allowed, the dtype's min
    elsewhere. ``None`` means plain causal attention (query i sees keys up to i + K - Q).

    A query row with no allowed key (padding before the first real token) is allowed its
    own key: its output feeds no real token's loss, and every row stays finite (such a
    row is NaN in the fused kernels). The mask returned is never written to."""
    if attention_mask is not None and attention_mask.dtype != torch.bool:
        return attention_mask[..., :k_len].to(dtype)  # already additive
    key = (q_len, k_len, dtype, device, torch.is_inference_mode_enabled())
    if attention_mask is not None:  # an in-place change to it is a new mask
        if attention_mask.is_inference():  # no version counter: built each time
            return _build_float_mask(attention_mask, q_len, k_len, dtype, device)
        key += (attention_mask._version,)
    for built_from, built_key, mask in _FLOAT_MASKS:
        if attention_mask is None:
            same = built_from is None
        else:
            same = built_from is not None and built_from() is attention_mask
        if same and built_key == key:
            return mask
    mask = _build_float_mask(attention_mask, q_len, k_len, dtype, device)
    if mask.numel() <= _FLOAT_MASK_KEPT_ELEMENTS:
        built_from = None if attention_mask is None else weakref.ref(attention_mask)
        _FLOAT_MASKS[:] = [(built_from, key, mask), *_FLOAT_MASKS[:1]]
    return mask


def _build_float_mask(attention_mask, q_len: int, k_len: int, dtype, device) -> torch.Tensor:
    offset = k_len - q_len
    if attention_mask is None:
        allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(offset)[None, None]
    else:
        rows = torch.arange(q_len, device=device)[:, None] + offset
        own = rows == torch.arange(k_len, device=device)  # (Q, K)
        allowed = attention_mask[..., :k_len]
        allowed = allowed | (own & ~allowed.any(-1, keepdim=True))
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


def _grouped(q: torch.Tensor, n_kv_heads: int) -> torch.Tensor:
    """(B, H, Q, hd) -> (B, Hkv, G, Q, hd): query heads grouped by the kv head they read."""
    batch, n_heads, q_len, head_dim = q.shape
    return q.view(batch, n_kv_heads, n_heads // n_kv_heads, q_len, head_dim)


def _chunked_logsumexp(q, k, mask, scaling) -> torch.Tensor:
    """Row log-sum-exp of the masked scores, (B, H, Q), in query chunks (bounded memory).
    Used where no fused kernel returns it (any device but the CPU)."""
    batch, n_heads, q_len, _ = q.shape  # (B, H, Q, hd); k: (B, Hkv, K, hd)
    n_kv_heads, k_len = k.shape[1], k.shape[2]
    q_grouped, k_t = _grouped(q, n_kv_heads), k.unsqueeze(2).transpose(-1, -2)
    chunk = max(1, _LSE_CHUNK_ELEMENTS // max(1, batch * n_heads * k_len))
    rows = []
    for start in range(0, q_len, chunk):
        stop = min(q_len, start + chunk)
        scores = torch.matmul(q_grouped[..., start:stop, :], k_t) * scaling  # (B,Hkv,G,c,K)
        if mask is None:  # causal, q_len == k_len
            cols = torch.arange(k_len, device=q.device)
            above = cols[None, :] > torch.arange(start, stop, device=q.device)[:, None]
            scores = scores.masked_fill(above, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask[:, :, None, start:stop]  # (B|1, 1, 1, c, K)
        lse_dtype = torch.promote_types(scores.dtype, torch.float32)
        rows.append(torch.logsumexp(scores.to(lse_dtype), -1).to(q.dtype))
    return torch.cat(rows, dim=-1).reshape(batch, n_heads, q_len)


def _attention_with_lse(q, k, v, mask, is_causal: bool, scaling: float):
    """Attention output (B, H, Q, hd) and each row's score log-sum-exp (B, H, Q), for
    keys and values with Hkv <= H heads (grouped-query attention).

    The fused kernels scaled_dot_product_attention itself dispatches to compute the
    log-sum-exp anyway; private ATen ops return it: the CPU flash kernel, and on CUDA the
    memory-efficient kernel. Elsewhere it is computed in chunks (_chunked_logsumexp)."""
    if q.device.type == "cpu" and _CPU_FUSED is not None:
        out, lse = _CPU_FUSED(q, k, v, 0.0, is_causal, attn_mask=mask, scale=scaling)
        return out, lse.to(q.dtype)
    if _uses_efficient_kernel(q):
        return _efficient_attention_with_lse(q, k, v, mask, is_causal, scaling)
    out = F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=mask,
        is_causal=is_causal,
        scale=scaling,
        enable_gqa=k.shape[1] != q.shape[1],
    )
    with torch.no_grad():
        return out, _chunked_logsumexp(q, k, mask, scaling)


_CPU_FUSED = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_EFFICIENT = getattr(torch.ops.aten, "_scaled_dot_product_efficient_attention", None)
_EFFICIENT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _uses_efficient_kernel(q: torch.Tensor) -> bool:
    return q.device.type == "cuda" and _EFFICIENT is not None and q.dtype in _EFFICIENT_DTYPES


def _efficient_attention_with_lse(q, k, v, mask, is_causal: bool, scaling: float):
    """The CUDA memory-efficient kernel with ``compute_log_sumexp``. Its contract, unlike
    scaled_dot_product_attention's: as many key/value heads as query heads, a bias of
    (B, H, Q, K) whose rows start 16-element aligned, and a log-sum-exp padded to a
    multiple of 32 query rows (float32)."""
    batch, n_heads, q_len, _ = q.shape  # (B, H, Q, hd)
    groups, k_len = n_heads // k.shape[1], k.shape[2]
    bias = None
    if mask is not None:  # (B|1, 1, Q, K) -> (B, H, Q, K), row stride a multiple of 16
        padded = F.pad(mask, (0, -k_len % 16))
        bias = padded[..., :k_len].expand(batch, n_heads, q_len, k_len)
    out, lse, _, _ = _EFFICIENT(
        q, _expand_kv(k, groups), _expand_kv(v, groups), bias, True, 0.0, is_causal, scale=scaling
    )
    return out, lse[..., :q_len].to(q.dtype)  # (B, H, Q, hd), (B, H, Q)


class _OwnPositionGradient(torch.autograd.Function):
    """Identity on the attention output. Backward adds what the past channel withheld: the
    gradient each position's own key and value get from its own query (the diagonal of
    attention), sent into the own-channel tensors.

    For the diagonal term p_tt v_t of out_t: d out_t / d v_t = p_tt, and
    d out_t / d score_tt = p_tt (v_t - out_t) with score_tt = f(q_t . k_t); ``slope`` is
    f' there: ``scaling``, times 1 - tanh^2 under softcapping. Attention sinks (keys with
    value 0 outside the sequence) only enter through p_tt and out_t.
    """

    @staticmethod
    def forward(ctx, out, k_own, v_own, q, own_prob, slope):
        # out, q: (B, H, Q, hd); k_own, v_own: (B, Hkv, Q, hd); own_prob: (B, H, Q, 1);
        # slope: a float or (B, H, Q, 1)
        ctx.save_for_backward(out.detach(), v_own.detach(), q.detach(), own_prob)
        ctx.slope = slope
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):  # grad: (B, H, Q, hd)
        out, v_values, q, own_prob = ctx.saved_tensors
        n_kv_heads = v_values.shape[1]

        def per_kv_head(x):  # (B, H, Q, hd) -> (B, Hkv, Q, hd): sum over each head group
            return _grouped(x, n_kv_heads).sum(2)

        # v_t - out_t per query head, each kv head broadcast over its group (not copied)
        v_minus_out = (v_values.unsqueeze(2) - _grouped(out, n_kv_heads)).flatten(1, 2)
        grad_score = own_prob * (grad * v_minus_out).sum(-1, keepdim=True)
        grad_k = per_kv_head((ctx.slope * grad_score) * q) if ctx.needs_input_grad[1] else None
        grad_v = per_kv_head(own_prob * grad) if ctx.needs_input_grad[2] else None
        return grad, grad_k, grad_v, None, None, None


def myopic_sdpa(module, query, key, value, attention_mask, scaling, dropout=0.0, *, mode, **kwargs):
    """Fast path: fused attention over the past channel; in backward, each position's own
    key and value also get the gradient from their own query (O(T) extra work)."""
    options = _score_options(module, key, attention_mask, dropout, kwargs)
    if options.softcap is not None or options.sinks is not None:
        # No fused kernel applies softcapping or sinks (nor does transformers' sdpa path:
        # these models run eager attention): the eager path computes them exactly.
        out, _ = myopic_eager(
            module, query, key, value, attention_mask, scaling, dropout, mode=mode, **kwargs
        )
        return out, None
    q_len, k_len = query.shape[2], key.shape[2]
    offset = k_len - q_len
    q, k_past, v_past, k_own, v_own = _split_channels(module, query, key, value, mode, offset)
    n_kv_heads = k_past.shape[1]
    is_causal = attention_mask is None and q_len == k_len  # the kernel's fastest case
    mask = None if is_causal else _float_mask(attention_mask, q_len, k_len, q.dtype, q.device)

    # Values, and the query's gradient: every key seen through the past channel.
    out, lse = _attention_with_lse(q, k_past, v_past, mask, is_causal, scaling)  # (B,H,Q,hd)
    with torch.no_grad():
        own_keys = k_past[:, :, offset:].unsqueeze(2)  # (B, Hkv, 1, Q, hd)
        own_score = scaling * (_grouped(q, n_kv_heads) * own_keys).sum(-1)  # (B, Hkv, G, Q)
        own_score = own_score.reshape(lse.shape)  # (B, H, Q)
        if mask is not None:
            own_score = own_score + mask.diagonal(offset, -2, -1)
        own_prob = torch.exp(own_score - lse).unsqueeze(-1)  # (B, H, Q, 1)
    out = _OwnPositionGradient.apply(out, k_own, v_own, q, own_prob, scaling)
    return out.transpose(1, 2).contiguous(), None


def myopic_eager(
    module, query, key, value, attention_mask, scaling, dropout=0.0, *, mode, **kwargs
):
    """Eager path: the attention matrix materialised (and returned, for users who want
    attention weights), with past keys and values seen through the past channel; the own
    position's gradient is added exactly as in the fast path."""
    options = _score_options(module, key, attention_mask, dropout, kwargs)
    n_heads, q_len, k_len = query.shape[1], query.shape[2], key.shape[2]
    offset = k_len - q_len
    q, k_past, v_past, k_own, v_own = _split_channels(module, query, key, value, mode, offset)
    groups = n_heads // k_past.shape[1]
    k_past_h, v_past_h = _expand_kv(k_past, groups), _expand_kv(v_past, groups)  # (B,H,K,hd)

    scores = torch.matmul(q, k_past_h.transpose(-1, -2)) * scaling  # (B, H, Q, K)
    slope = scaling  # d score / d (q . k) at the own position
    if options.softcap is not None:
        scores = options.softcap * torch.tanh(scores / options.softcap)
        own_tanh = scores.detach().diagonal(offset, -2, -1).unsqueeze(-1) / options.softcap
        slope = scaling * (1 - own_tanh**2)  # (B, H, Q, 1)
    scores = scores + _float_mask(attention_mask, q_len, k_len, q.dtype, q.device)
    probs = _softmax(scores, options.sinks)  # (B, H, Q, K)
    out = torch.matmul(probs, v_past_h)  # (B, H, Q, hd)
    own_prob = probs.detach().diagonal(offset, -2, -1).unsqueeze(-1)  # (B, H, Q, 1)
    out = _OwnPositionGradient.apply(out, k_own, v_own, q, own_prob, slope)
    return out.transpose(1, 2).contiguous(), probs


# ---------------------------------------------------------------------------------------
# bigram mode
# ---------------------------------------------------------------------------------------


def bigram_eager(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Readable reference: softmax over a mask that allows each query only its own key
    (and the sinks, where the model has them; softcapping cannot change a one-key softmax
    but is applied as the model applies it)."""
    options = _score_options(module, key, attention_mask, dropout, kwargs)
    batch, n_heads, q_len, _ = query.shape  # (B, H, Q, hd)
    n_kv_heads, k_len = key.shape[1], key.shape[2]  # (B, Hkv, K, hd)
    groups = n_heads // n_kv_heads
    rows = torch.arange(q_len, device=query.device)[:, None] + (k_len - q_len)
    own_only = rows == torch.arange(k_len, device=query.device)[None, :]  # (Q, K)
    scores = torch.matmul(query, _expand_kv(key, groups).transpose(-1, -2)) * scaling
    if options.softcap is not None:
        scores = options.softcap * torch.tanh(scores / options.softcap)
    scores = scores.masked_fill(~own_only, torch.finfo(scores.dtype).min)  # (B, H, Q, K)
    probs = _softmax(scores, options.sinks)
    out = torch.matmul(probs, _expand_kv(value, groups))  # (B, H, Q, hd)
    return out.transpose(1, 2).contiguous(), probs


def bigram_fast(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """A softmax over one key is 1: the output is the own value (with sinks, the eager
    path weighs it by the own key's share against the sink)."""
    options = _score_options(module, key, attention_mask, dropout, kwargs)
    if options.sinks is not None:
        out, _ = bigram_eager(module, query, key, value, attention_mask, scaling, **kwargs)
        return out, None
    n_heads, q_len = query.shape[1], query.shape[2]
    n_kv_heads, k_len = key.shape[1], key.shape[2]
    out = _expand_kv(value[:, :, k_len - q_len :], n_heads // n_kv_heads)  # (B, H, Q, hd)
    return out.transpose(1, 2).contiguous(), None
