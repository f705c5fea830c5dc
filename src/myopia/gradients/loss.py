"""Per-position next-token losses: the quantity every myopic definition is about."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F


def valid_targets(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T-1) bool: position t predicts token t+1 and both are real (not padding)."""
    if attention_mask is None:
        return torch.ones(
            input_ids.shape[0], input_ids.shape[1] - 1, dtype=torch.bool, device=input_ids.device
        )
    mask = attention_mask.bool()
    return mask[:, :-1] & mask[:, 1:]


def forward_logits(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Logits (B, T, V) with explicit positions 0..T-1, so every backend and every
    reference computation agrees on where each token sits (padding included)."""
    input_ids = batch["input_ids"]
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    out = model(
        input_ids=input_ids,
        attention_mask=batch.get("attention_mask"),
        position_ids=positions,
        use_cache=False,
    )
    return out.logits


def token_losses(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """(B, T-1) losses -log p(x_{t+1} | x_<=t) read at position t."""
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:], reduction="none")


def parameter_gradients(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{name: d loss / d parameter}`` for trainable parameters (zeros where unused),
    without touching the parameters' ``.grad``."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    return {
        name: grad if grad is not None else torch.zeros_like(param)
        for (name, param), grad in zip(named, grads, strict=True)
    }


def mean_token_loss(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token loss over the real (unpadded) targets of a batch."""
    input_ids = batch["input_ids"]
    losses = token_losses(forward_logits(model, batch), input_ids)
    valid = valid_targets(input_ids, batch.get("attention_mask"))
    return torch.where(valid, losses, 0.0).sum() / valid.sum().clamp(min=1)
