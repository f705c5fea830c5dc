"""Attention patterns of a loaded Hugging Face model, through the model's own mechanism.

Fused backends (``sdpa``, flash) never materialise the attention matrix, and transformers
returns no weights from them. ``returning_weights`` switches the model, with transformers'
own ``set_attn_implementation``, to a backend that does, and switches it back afterwards:

- ``eager`` (transformers' reference implementation) for ``sdpa``, flash and the like;
- the ``<name>_eager`` twin of a registered backend when there is one (myopia's
  ``myopic_kv`` -> ``myopic_kv_eager``), so a model in a myopic mode stays in it;
- a backend already named ``eager`` or ``*_eager`` is kept.

Weights come per query head: with grouped-query attention (SmolLM2: 9 query heads,
3 key/value heads) every query head has its own pattern, ``(B, n_heads, T, T)``.

Example::

    model, _ = load_model("smollm2")
    patterns = attention_patterns(model, input_ids)   # one (B, 9, T, T) tensor per layer
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from transformers import AttentionInterface

from myopia.errors import MyopiaError, UnsupportedModelError

__all__ = ["attention_patterns", "check_input_ids", "returning_weights", "weights_backend"]


def weights_backend(name: str | None) -> str:
    """The attention implementation that returns weights and computes what ``name`` does."""
    name = name or "eager"
    if name == "eager" or name.endswith("_eager"):
        return name
    twin = f"{name}_eager"
    return twin if twin in AttentionInterface().valid_keys() else "eager"


@contextmanager
def returning_weights(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager: inside, ``model(..., output_attentions=True)`` returns attention
    weights; outside, the model has the implementation it had before (even on error)."""
    previous = model.config._attn_implementation
    target = weights_backend(previous)
    if target != previous:
        model.set_attn_implementation(target)
        if model.config._attn_implementation != target:
            model.set_attn_implementation(previous)
            raise UnsupportedModelError(
                f"{type(model).__name__} cannot switch to the {target!r} attention "
                "implementation, so its attention weights cannot be read"
            )
    try:
        yield model
    finally:
        if model.config._attn_implementation != previous:
            model.set_attn_implementation(previous)


def check_input_ids(model: nn.Module, input_ids: torch.Tensor) -> None:
    """Raise ``MyopiaError`` unless ``input_ids`` is a ``(B, T)`` integer tensor with
    ``2 <= T <= `` the model's context length (as TransformerLens requires)."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        got = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids)
        raise MyopiaError(f"input_ids must be a (batch, seq_len) tensor of token ids, got {got}")
    if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise MyopiaError(f"input_ids must hold integer token ids, not {input_ids.dtype}")
    batch, seq_len = input_ids.shape
    context = getattr(model.config, "max_position_embeddings", None)
    if batch < 1 or seq_len < 2:
        raise MyopiaError(
            f"need at least one sequence of 2 or more tokens, got {batch} x {seq_len}"
        )
    if context is not None and seq_len > context:
        raise MyopiaError(
            f"sequences of {seq_len} tokens exceed the model's context of {context}: "
            "use shorter ones"
        )


@torch.inference_mode()
def attention_patterns(model: nn.Module, input_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One forward pass; one attention pattern per layer, each ``(B, n_heads, T_query,
    T_key)`` (rows sum to 1, zero above the diagonal).

    Sequences are taken as they are: no padding, no special tokens added, positions
    0..T-1. The pass runs the model's base (``model.base_model``, e.g. ``LlamaModel``),
    skipping the unembedding, which patterns do not need.
    """
    check_input_ids(model, input_ids)
    device = next(model.parameters()).device
    base = getattr(model, "base_model", model)
    with returning_weights(model):
        out = base(input_ids=input_ids.to(device), output_attentions=True, use_cache=False)
    patterns = tuple(out.attentions or ())
    n_layers = getattr(model.config, "num_hidden_layers", None)
    n_heads = getattr(model.config, "num_attention_heads", None)
    batch, seq_len = input_ids.shape
    expected = (batch, n_heads, seq_len, seq_len)
    if not patterns or any(p is None for p in patterns) or len(patterns) != n_layers:
        raise UnsupportedModelError(
            f"{type(model).__name__} returned no attention weights for each of its {n_layers} "
            "layers with output_attentions=True"
        )
    for layer, pattern in enumerate(patterns):
        if tuple(pattern.shape) != expected:
            raise UnsupportedModelError(
                f"layer {layer} of {type(model).__name__} returned attention weights of shape "
                f"{tuple(pattern.shape)}, expected (batch, n_heads, T, T) = {expected}"
            )
    return patterns
