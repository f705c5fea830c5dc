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
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

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
    input_ids = batch["input_ids"]
    attention_mask = batch.get("attention_mask")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    valid = valid_targets(input_ids, attention_mask)  # (B, T-1)
    grads = _zero_grads(model)
    step = {
        "kv": _kv_target_logits,
        "residual": _residual_target_logits,
        "bigram": _bigram_target_logits,
    }[mode]
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
