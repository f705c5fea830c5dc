"""The key/value channels that the ``residual`` myopic mode needs.

In ``residual`` mode a query at t sees keys and values of earlier positions computed by
live projection weights from constant (detached) inputs, while its own key and value
are live. The attention function receives only projected keys and values, so the model
must hand it the projection's output in channels that route the gradient differently: a
weight-only channel (what every query sees) and an input-only channel (the own
position's path into its input). Forward hooks on the key/value projections (PyTorch's
own extension mechanism; the model's code is left untouched) return the channels,
computed once, concatenated along an axis the model's own reshapes and position
encodings treat independently:

- ``heads``: Llama-family attention (``k_proj``/``v_proj``, reshaped to (B, T, -1, hd)):
  input-only and weight-only on the feature axis, so they arrive as extra key/value heads.
- ``batch``: GPT-2 attention (a fused ``c_attn`` for q, k and v): live, input-only and
  weight-only on the batch axis; the query is read from the live copy.

The attention function finds the layout with ``layout_of(module)``.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from myopia.errors import UnsupportedModelError

_LAYOUTS: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()


def layout_of(attention_module: nn.Module) -> str | None:
    """The weight-only channel's layout for this attention module, or None if absent."""
    return _LAYOUTS.get(attention_module)


class _Channels(torch.autograd.Function):
    """A projection's output several times, concatenated on ``dim``, computed once.

    Each copy is a channel that routes its gradient differently:
    ``live`` back through the projection as usual (weights and input), ``input`` into the
    projection's input only, ``weight`` into its weight and bias only. One autograd node;
    its backward does the matmuls an ordinary projection's backward does.
    """

    @staticmethod
    def forward(ctx, output, inputs, weight, bias, dim, channels, weight_is_in_by_out):
        ctx.save_for_backward(inputs, weight)
        ctx.dim, ctx.channels = dim, channels
        ctx.weight_is_in_by_out, ctx.has_bias = weight_is_in_by_out, bias is not None
        value = output.detach()
        return torch.cat([value] * len(channels), dim=dim)

    @staticmethod
    def backward(ctx, grad):
        inputs, weight = ctx.saved_tensors
        grads = dict(zip(ctx.channels, grad.chunk(len(ctx.channels), dim=ctx.dim), strict=True))
        grad_output = grads.get("live")
        grad_inputs = grad_weight = grad_bias = None
        if "input" in grads:  # y = x W^T (nn.Linear) or x W (Conv1D)
            w = weight.t() if ctx.weight_is_in_by_out else weight
            grad_inputs = grads["input"] @ w
        if "weight" in grads:
            g = grads["weight"].reshape(-1, grads["weight"].shape[-1])  # (N, out)
            x = inputs.reshape(-1, inputs.shape[-1])  # (N, in)
            grad_weight = x.t() @ g if ctx.weight_is_in_by_out else g.t() @ x
            grad_bias = g.sum(0) if ctx.has_bias else None
        return grad_output, grad_inputs, grad_weight, grad_bias, None, None, None


def _input_only_then_weight_only(projection: nn.Linear, args, output):
    """Hook for separate k/v projections: (input-only, weight-only) on the feature axis,
    so they arrive as extra heads. The ordinary output's graph is dropped."""
    return _Channels.apply(
        output.detach(), args[0], projection.weight, projection.bias, -1, ("input", "weight"), False
    )


def _live_input_weight(projection: nn.Module, args, output):
    """Hook for a fused q/k/v projection (GPT-2's Conv1D): (live, input-only, weight-only)
    on the batch axis. The query is read from the live copy; keys and values from the
    other two."""
    return _Channels.apply(
        output, args[0], projection.weight, projection.bias, 0, ("live", "input", "weight"), True
    )


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention modules of a causal LM, found by their projections."""
    found = []
    for module in model.modules():
        if isinstance(getattr(module, "k_proj", None), nn.Module) and isinstance(
            getattr(module, "v_proj", None), nn.Module
        ):
            found.append(module)
        elif isinstance(getattr(module, "c_attn", None), nn.Module) and not getattr(
            module, "is_cross_attention", False
        ):
            found.append(module)
    return found


def install(model: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
    """Add the residual-mode channels to every attention module; return the hook handles."""
    modules = attention_modules(model)
    if not modules:
        raise UnsupportedModelError(
            f"myopic mode 'residual' supports attention with k_proj/v_proj (Llama family) or "
            f"c_attn (GPT-2); {type(model).__name__} has neither: use mode 'kv' instead"
        )
    handles = []
    for module in modules:
        if hasattr(module, "k_proj"):
            projections = (module.k_proj, module.v_proj)
            if (
                not all(isinstance(p, nn.Linear) for p in projections)
                or projections[0] is projections[1]
            ):
                raise UnsupportedModelError(
                    "myopic mode 'residual' needs separate nn.Linear k_proj and v_proj: use 'kv'"
                )
            handles += [p.register_forward_hook(_input_only_then_weight_only) for p in projections]
            _LAYOUTS[module] = "heads"
        else:
            if type(module.c_attn).__name__ != "Conv1D":
                raise UnsupportedModelError(
                    "myopic mode 'residual' needs GPT-2's Conv1D c_attn: use 'kv'"
                )
            handles.append(module.c_attn.register_forward_hook(_live_input_weight))
            _LAYOUTS[module] = "batch"
    return handles


def remove(model: nn.Module, handles: list[torch.utils.hooks.RemovableHandle]) -> None:
    for handle in handles:
        handle.remove()
    for module in attention_modules(model):
        _LAYOUTS.pop(module, None)
