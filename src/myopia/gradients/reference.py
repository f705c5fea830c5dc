"""Brute-force myopic gradients: the definitions applied literally, one target at a time.

Slow (one forward and backward pass per target position) and obviously correct; the
fast single-pass modes are tested against these. Every function returns the gradient of
the mean next-token loss over real targets, as ``{parameter name: gradient}``, computed
with the model's ordinary attention (whatever implementation it is set to).

- ``kv``: for target position t, run positions < t without gradient and keep their keys
  and values in transformers' own cache; then run position t alone with gradient. The
  past is literally a constant, computed by a separate, frozen copy of the computation.
- ``residual``: for target t, run the whole sequence with the input of every attention
  module at positions < t replaced by its (detached) value from an ordinary pass.
- ``bigram``: for target t, run token t alone at position t: nothing else exists for it.

``eager_reference_gradient`` is a second reference that shares no code with myopia's
attention functions: every attention call is the model's own eager attention function
(the one in its modeling file, where softcapping, sinks and the like are written out).
In ``kv`` mode the sequence is cut after target t and the keys and values of positions
< t are detached before that function sees them; ``residual`` and ``bigram`` run the
definitions above with the model set to eager attention.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from myopia.attention.residual_channels import attention_modules
from myopia.gradients.loss import parameter_gradients, valid_targets


def _zero_grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: torch.zeros_like(p) for n, p in model.named_parameters() if p.requires_grad}


def _accumulate(model: nn.Module, loss: torch.Tensor, into: dict[str, torch.Tensor]) -> None:
    for name, grad in parameter_gradients(model, loss).items():
        into[name] += grad


def _target_loss(logits_at_t: torch.Tensor, next_ids: torch.Tensor, valid_t: torch.Tensor):
    """Sum over the batch of -log p(next token) at one position, real targets only."""
    losses = F.cross_entropy(logits_at_t, next_ids, reduction="none")  # (B,)
    return torch.where(valid_t, losses, 0.0).sum()


def reference_myopic_gradient(
    model: nn.Module, batch: Mapping[str, torch.Tensor], mode: str
) -> dict[str, torch.Tensor]:
    """The myopic gradient of the mean token loss by the literal definition of ``mode``."""
    return _per_target_gradient(model, batch, mode, kv_step=_kv_target_logits)


def eager_reference_gradient(
    model: nn.Module, batch: Mapping[str, torch.Tensor], mode: str
) -> dict[str, torch.Tensor]:
    """The myopic gradient of the mean token loss by the definition of ``mode``, every
    attention call made by the model's own eager attention function."""
    with own_eager_attention(model, _PAST_DETACHED if mode == "kv" else _OWN_EAGER):
        return _per_target_gradient(model, batch, mode, kv_step=_last_position_live_logits)


def _per_target_gradient(model, batch, mode, kv_step) -> dict[str, torch.Tensor]:
    """Sum over targets t of the gradient of the loss at t from the mode's target logits
    (``kv_step``'s in kv mode), one backward pass per t, divided by the number of real
    targets."""
    input_ids, attention_mask = batch["input_ids"], batch.get("attention_mask")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    steps = {"kv": kv_step, "residual": _residual_target_logits, "bigram": _bigram_target_logits}
    step = steps[mode]
    valid = valid_targets(input_ids, attention_mask)  # (B, T-1)
    grads = _zero_grads(model)
    saved = _attention_inputs(model, input_ids, attention_mask) if mode == "residual" else None
    for t in range(input_ids.shape[1] - 1):
        if not valid[:, t].any():
            continue
        logits_t = step(model, input_ids, attention_mask, t, saved)  # (B, V)
        _accumulate(model, _target_loss(logits_t, input_ids[:, t + 1], valid[:, t]), grads)
    n_targets = valid.sum()
    return {name: g / n_targets for name, g in grads.items()}


def _positions(start: int, stop: int, like: torch.Tensor) -> torch.Tensor:
    return torch.arange(start, stop, device=like.device).expand(like.shape[0], -1)


def _kv_target_logits(model, input_ids, attention_mask, t, _saved):
    cache = None
    if t > 0:
        with torch.no_grad():  # the past: constants
            past = model(
                input_ids=input_ids[:, :t],
                attention_mask=attention_mask[:, :t],
                position_ids=_positions(0, t, input_ids),
                use_cache=True,
            )
        cache = past.past_key_values
    out = model(
        input_ids=input_ids[:, t : t + 1],
        attention_mask=attention_mask[:, : t + 1],
        position_ids=_positions(t, t + 1, input_ids),
        cache=cache,
        use_cache=cache is not None,
    )
    return out.logits[:, -1]


def _own_eager(module, query, key, value, attention_mask, **kwargs):
    """The attention function in the module's own modeling file. query: (B, H, T, hd)."""
    own_eager = sys.modules[type(module).__module__].eager_attention_forward
    return own_eager(module, query, key, value, attention_mask, **kwargs)


def _past_detached_attention(module, query, key, value, attention_mask, **kwargs):
    """The model's own eager attention, the keys and values of every position but the
    last (the target) detached. key, value: (B, Hkv, T, hd)."""
    key = torch.cat([key[:, :, :-1].detach(), key[:, :, -1:]], dim=2)
    value = torch.cat([value[:, :, :-1].detach(), value[:, :, -1:]], dim=2)
    return _own_eager(module, query, key, value, attention_mask, **kwargs)


def _finite_eager_mask(*args, **kwargs):
    """transformers' eager mask, except that a query with no allowed key (padding before
    the first real token) may see its own key. Such a row feeds no real target, but as
    the dtype's minimum plus a negative score it would be -inf everywhere, NaN after the
    softmax, and NaN times a zero probability is NaN in every later row."""
    mask = eager_mask(*args, **kwargs)  # (B, 1, Q, K): 0 allowed, dtype min elsewhere
    if mask is None:
        return None
    blocked = (mask < 0).all(-1, keepdim=True)  # (B, 1, Q, 1)
    q_len, k_len = mask.shape[-2:]
    rows = torch.arange(q_len, device=mask.device)[:, None] + (k_len - q_len)
    own = rows == torch.arange(k_len, device=mask.device)  # (Q, K)
    return mask.masked_fill(blocked & own, 0.0)


_OWN_EAGER = "myopia_reference_own_eager"
_PAST_DETACHED = "myopia_reference_past_detached"
for _name, _function in ((_OWN_EAGER, _own_eager), (_PAST_DETACHED, _past_detached_attention)):
    AttentionInterface.register(_name, _function)
    AttentionMaskInterface.register(_name, _finite_eager_mask)


@contextmanager
def own_eager_attention(model: nn.Module, name: str = _OWN_EAGER) -> Iterator[nn.Module]:
    """The model runs its own eager attention function inside (finite on padding rows)."""
    original = model.config._attn_implementation
    model.set_attn_implementation(name)
    try:
        yield model
    finally:
        model.set_attn_implementation(original)


def _last_position_live_logits(model, input_ids, attention_mask, t, _saved):
    """Target t's logits from the sequence cut after t, run with _PAST_DETACHED attention
    (positions < t feed target t only through their detached keys and values)."""
    out = model(
        input_ids=input_ids[:, : t + 1],
        attention_mask=attention_mask[:, : t + 1],
        position_ids=_positions(0, t + 1, input_ids),
        use_cache=False,
    )
    return out.logits[:, -1]


def _bigram_target_logits(model, input_ids, attention_mask, t, _saved):
    out = model(
        input_ids=input_ids[:, t : t + 1],
        attention_mask=torch.ones_like(input_ids[:, t : t + 1]),
        position_ids=_positions(t, t + 1, input_ids),
        use_cache=False,
    )
    return out.logits[:, -1]


def _hidden_states_arg(args, kwargs):
    return kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]


def _with_hidden_states(args, kwargs, value):
    if "hidden_states" in kwargs:
        return args, {**kwargs, "hidden_states": value}
    return (value, *args[1:]), kwargs


def _attention_inputs(model, input_ids, attention_mask) -> list[torch.Tensor]:
    """Each attention module's input (the normalised residual stream), ordinary pass."""
    saved: list[torch.Tensor] = []
    handles = [
        m.register_forward_pre_hook(
            lambda _m, args, kwargs: saved.append(_hidden_states_arg(args, kwargs).detach()),
            with_kwargs=True,
        )
        for m in attention_modules(model)
    ]
    try:
        with torch.no_grad():
            model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=_positions(0, input_ids.shape[1], input_ids),
                use_cache=False,
            )
    finally:
        for h in handles:
            h.remove()
    return saved


def _residual_target_logits(model, input_ids, attention_mask, t, saved):
    modules = attention_modules(model)

    def freeze_past(index):
        def hook(_module, args, kwargs):
            live = _hidden_states_arg(args, kwargs)
            frozen = torch.cat([saved[index][:, :t], live[:, t:]], dim=1)
            return _with_hidden_states(args, kwargs, frozen)

        return hook

    handles = [
        m.register_forward_pre_hook(freeze_past(i), with_kwargs=True) for i, m in enumerate(modules)
    ]
    try:
        out = model(
            input_ids=input_ids[:, : t + 1],
            attention_mask=attention_mask[:, : t + 1],
            position_ids=_positions(0, t + 1, input_ids),
            use_cache=False,
        )
    finally:
        for h in handles:
            h.remove()
    return out.logits[:, -1]
