"""The weight-only key/value channel that the ``residual`` myopic mode needs.

In ``residual`` mode a query at t sees keys and values of earlier positions computed by
live projection weights from constant (detached) inputs. The attention function receives
only projected keys and values, so the model must hand it two versions of each: the
ordinary one and one whose gradient reaches the projection weights only. Forward hooks on
the key/value projections (PyTorch's own extension mechanism; the model's code is left
untouched) append the weight-only version along an axis the model's own reshapes and
position encodings treat independently:

- ``heads``: Llama-family attention (``k_proj``/``v_proj`` reshaped to (B, T, -1, hd)):
  the weight-only projection is concatenated on the feature axis and arrives as extra
  key/value heads.
- ``batch``: GPT-2 attention (a fused ``c_attn``): the weight-only projection of the fused
  q/k/v is concatenated on the batch axis.

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


class _TwoChannels(torch.autograd.Function):
    """A projection's output twice, concatenated on ``dim``, without recomputing it.

    The second copy is the weight-only channel: its gradient reaches the projection's
    weight and bias, never its input. The first copy is either the live output itself
    (``first_is_live``: its gradient flows back through the projection as usual) or an
    input-only channel: its gradient reaches the input, never the weights. One autograd
    node, and the backward does the matmuls an ordinary projection's backward does.
    """

    @staticmethod
    def forward(ctx, output, inputs, weight, bias, dim, first_is_live, weight_is_in_by_out):
        ctx.save_for_backward(inputs, weight)
        ctx.dim, ctx.first_is_live = dim, first_is_live
        ctx.weight_is_in_by_out, ctx.has_bias = weight_is_in_by_out, bias is not None
        value = output.detach()
        return torch.cat([value, value], dim=dim)

    @staticmethod
    def backward(ctx, grad):
        inputs, weight = ctx.saved_tensors
        grad_first, grad_second = grad.chunk(2, dim=ctx.dim)
        grad_flat = grad_second.reshape(-1, grad_second.shape[-1])  # (N, out)
        inputs_flat = inputs.reshape(-1, inputs.shape[-1])  # (N, in)
        if ctx.weight_is_in_by_out:  # GPT-2's Conv1D: y = x W + b, W (in, out)
            grad_weight = inputs_flat.t() @ grad_flat
        else:  # nn.Linear: y = x W^T + b, W (out, in)
            grad_weight = grad_flat.t() @ inputs_flat
        grad_bias = grad_flat.sum(0) if ctx.has_bias else None
        if ctx.first_is_live:
            return grad_first, None, grad_weight, grad_bias, None, None, None
        grad_inputs = grad_first @ weight  # nn.Linear: dx = dy W
        return None, grad_inputs, grad_weight, grad_bias, None, None, None


def _input_only_then_weight_only(projection: nn.Linear, args, output):
    """Hook for separate k/v projections: (input-only, weight-only) on the feature axis.
    The ordinary output's graph is dropped, so the backward costs what an ordinary one
    does: one matmul into the input, one into the weights."""
    inputs = args[0]
    return _TwoChannels.apply(
        output.detach(), inputs, projection.weight, projection.bias, -1, False, False
    )


def _live_then_weight_only(projection: nn.Module, args, output):
    """Hook for a fused q/k/v projection (GPT-2's Conv1D): (live, weight-only) on the batch
    axis; the query must stay fully live, so the live copy keeps both paths."""
    inputs = args[0]
    return _TwoChannels.apply(
        output, inputs.detach(), projection.weight, projection.bias, 0, True, True
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
    """Add the weight-only channel to every attention module; return the hook handles."""
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
            handles.append(module.c_attn.register_forward_hook(_live_then_weight_only))
            _LAYOUTS[module] = "batch"
    return handles


def remove(model: nn.Module, handles: list[torch.utils.hooks.RemovableHandle]) -> None:
    for handle in handles:
        handle.remove()
    for module in attention_modules(model):
        _LAYOUTS.pop(module, None)
