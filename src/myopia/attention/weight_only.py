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


def _append_weight_only(dim: int):
    def hook(projection: nn.Module, args, output):
        # projection.forward, not projection(...): the same computation without re-running
        # hooks, on an input whose gradient is cut.
        weight_only = projection.forward(args[0].detach())
        return torch.cat([output, weight_only], dim=dim)

    return hook


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
            if module.k_proj is module.v_proj:
                raise UnsupportedModelError("residual mode needs separate k_proj and v_proj")
            handles.append(module.k_proj.register_forward_hook(_append_weight_only(dim=-1)))
            handles.append(module.v_proj.register_forward_hook(_append_weight_only(dim=-1)))
            _LAYOUTS[module] = "heads"
        else:
            handles.append(module.c_attn.register_forward_hook(_append_weight_only(dim=0)))
            _LAYOUTS[module] = "batch"
    return handles


def remove(model: nn.Module, handles: list[torch.utils.hooks.RemovableHandle]) -> None:
    for handle in handles:
        handle.remove()
    for module in attention_modules(model):
        _LAYOUTS.pop(module, None)
