"""The key/value channels that the ``residual`` myopic mode needs.

In ``residual`` mode a query at t sees keys and values of earlier positions computed by
live projection weights from constant (detached) inputs, while its own key and value
are live. The attention function receives only projected keys and values, so the model
must hand it the projection's output in channels that route the gradient differently: a
weight-only channel (what every query sees) and an input-only channel (the own
position's path into its input). Forward hooks on the key/value projections (PyTorch's
own extension mechanism; the model's code is left untouched) return the channels,
computed once:

- ``heads``: Llama-family attention (``k_proj``/``v_proj``, reshaped to (B, T, -1, hd)):
  the key's input-only and weight-only copies are concatenated on the feature axis, so
  they arrive as extra key heads, rotary encoding applied by the model's own code; the
  value's copies, which the model only reshapes, go from the hook straight to the
  attention function (``take_stashed_channels``). A key norm after the projection (Qwen3,
  Gemma3 per head; OLMo2 over the whole projection) gets hooks that normalise each
  channel separately, the input-only one with the norm's weights detached.
- ``fused``: one projection for q, k and v (GPT-2's ``c_attn``, Phi3's ``qkv_proj``,
  GPT-NeoX's ``query_key_value``): the model gets the projection's output, computed
  once, whose query part stays live and whose key and value parts, split into heads and
  rotated by the model's own code, are the weight-only channel. The input-only copies
  of the key and value parts go from the hook straight to the attention function
  (``take_stashed_channels``), which rotates the keys, where the model has rotary
  encoding, with the model's own ``apply_rotary_pos_emb`` and the cos/sin its attention
  module received (``rotate_keys``).

The attention function finds the layout with ``layout_of(module)``.
"""

from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from transformers.pytorch_utils import Conv1D

from myopia.errors import UnsupportedModelError

_LAYOUTS: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()


def layout_of(attention_module: nn.Module) -> str | None:
    """The channels' layout for this attention module, or None when not installed."""
    return _LAYOUTS.get(attention_module)


class _InputAndWeightViews(torch.autograd.Function):
    """A linear projection's output as two tensors, computed once: an input-only copy (its
    gradient reaches the projection's input, never its weights) and a weight-only copy
    (weight and bias, never the input). One autograd node; its backward does the two
    matmuls an ordinary projection's backward does."""

    @staticmethod
    def forward(ctx, output, inputs, weight, bias):
        ctx.save_for_backward(inputs, weight)
        ctx.has_bias = bias is not None
        value = output.detach()
        return value.view_as(value), value.view_as(value)

    @staticmethod
    def backward(ctx, grad_input_only, grad_weight_only):
        inputs, weight = ctx.saved_tensors
        g = grad_weight_only.reshape(-1, grad_weight_only.shape[-1])  # (N, out)
        grad_weight = g.t() @ inputs.reshape(-1, inputs.shape[-1])  # y = x W^T: (out, in)
        grad_bias = g.sum(0) if ctx.has_bias else None
        return None, grad_input_only @ weight, grad_weight, grad_bias


class _InputThenWeightCopies(torch.autograd.Function):
    """A linear projection's output (.., D) twice on the feature axis (.., 2 D): the
    input-only copy, then the weight-only copy (as ``_InputAndWeightViews``, concatenated
    in the same node: its backward takes the two halves of the gradient apart)."""

    @staticmethod
    def forward(ctx, output, inputs, weight, bias):
        ctx.save_for_backward(inputs, weight)
        ctx.has_bias = bias is not None
        return torch.cat([output, output], dim=-1)

    @staticmethod
    def backward(ctx, grad):
        grad_input_only, grad_weight_only = grad.chunk(2, dim=-1)
        return _InputAndWeightViews.backward(ctx, grad_input_only, grad_weight_only)


def _input_only_then_weight_only(projection: nn.Linear, args, output):
    """Hook for a key projection: (input-only, weight-only) on the feature axis, so that
    both arrive at the attention function as heads, rotary encoding applied by the
    model's own code."""
    return _InputThenWeightCopies.apply(
        output.detach(), args[0], projection.weight, projection.bias
    )


# Channels that skip the model's code between a projection and attention (values, which
# Llama-family attention only reshapes; the fused projections' input-only keys and
# values), from hook to attention.
_STASHED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _stash_value_channels(attention_module: nn.Module):
    def hook(projection: nn.Linear, args, output):
        _STASHED[attention_module] = _InputAndWeightViews.apply(
            output.detach(), args[0], projection.weight, projection.bias
        )
        return output.detach()  # what the model computes from it is not used

    return hook


def take_stashed_channels(attention_module: nn.Module) -> tuple[torch.Tensor, ...]:
    """The channels this module's projection hook stashed during the current forward:
    ``heads`` layout: (value input-only, value weight-only), each (B, T, D); ``fused``
    layout: (key input-only, value input-only), each (B, T, Hkv, hd)."""
    return _STASHED.pop(attention_module)


@dataclass(frozen=True)
class _FusedLayout:
    """Where a fused projection's output (B, T, F) keeps q, k and v: unflattened to
    (B, T, *shape), q, k and v are consecutive blocks of ``sizes`` along axis -2. GPT-2's
    c_attn and Phi3's qkv_proj: shape (H + 2 Hkv, hd), sizes (H, Hkv, Hkv), so the key
    block is (B, T, Hkv, hd); GPT-NeoX's query_key_value (q, k, v side by side within
    each head): shape (H, 3, hd), sizes (1, 1, 1), the key block (B, T, H, 1, hd) with
    its length-1 axis dropped (``per_head``)."""

    shape: tuple[int, ...]
    sizes: tuple[int, int, int]

    @property
    def per_head(self) -> bool:
        return len(self.shape) == 3

    def key_and_value(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Views of y's key and value parts, (B, T, Hkv, hd) each."""
        _, k, v = y.unflatten(-1, self.shape).split(self.sizes, dim=-2)
        return (k.squeeze(-2), v.squeeze(-2)) if self.per_head else (k, v)

    def with_key_and_value(self, y: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """y (B, T, F) with its key and value parts replaced by k and v (B, T, Hkv, hd)."""
        q = y.reshape(*y.shape[:-1], *self.shape).narrow(-2, 0, self.sizes[0])
        if self.per_head:
            k, v = k.unsqueeze(-2), v.unsqueeze(-2)
        return torch.cat([q, k, v], dim=-2).flatten(-len(self.shape))


class _FusedQKVChannels(torch.autograd.Function):
    """A fused q/k/v projection y = x W^T + b (W: (3-part out, in)) computed once, handed
    out as: y for the model, and input-only copies of its key and value parts (B, T, Hkv,
    hd). The model's own query from y is fully live; its own keys and values from y are
    the weight-only channel: the gradient they bring back into y reaches W and b, never x.
    The backward does the two matmuls an ordinary projection's backward does, the one
    for x with y's key and value gradients swapped for the input-only copies'."""

    @staticmethod
    def forward(ctx, output, inputs, weight, bias, layout):
        ctx.save_for_backward(inputs, weight)
        ctx.has_bias, ctx.layout = bias is not None, layout
        value = output.detach()
        return (value.view_as(value), *layout.key_and_value(value))

    @staticmethod
    def backward(ctx, grad_y, grad_k_input, grad_v_input):
        inputs, weight = ctx.saved_tensors
        through_input = ctx.layout.with_key_and_value(grad_y, grad_k_input, grad_v_input)
        g = grad_y.reshape(-1, grad_y.shape[-1])  # (N, out): query live, k/v weight-only
        grad_weight = g.t() @ inputs.reshape(-1, inputs.shape[-1])  # (out, in)
        grad_bias = g.sum(0) if ctx.has_bias else None
        return None, through_input @ weight, grad_weight, grad_bias, None


def _fused_parts(attention_module: nn.Module) -> tuple[nn.Module, _FusedLayout]:
    """The fused projection of an attention module and where its output keeps q, k, v:
    GPT-2's c_attn (q | k | v), Phi3's qkv_proj (q | k | v with Hkv key/value heads),
    GPT-NeoX's query_key_value (q, k, v side by side within each head). Other modules
    with such a projection (CodeGen, Persimmon) are refused: their layout differs, or a
    norm between the projection and attention would be skipped by the input-only copies."""
    name = type(attention_module).__name__
    norms = [n for n, m in attention_module.named_children() if "Norm" in type(m).__name__]
    if norms:
        raise UnsupportedModelError(
            f"myopic mode 'residual' does not support {name}'s norm ({', '.join(norms)}) "
            "after a fused q/k/v projection: use 'kv'"
        )
    try:
        config = attention_module.config
        n_heads = config.num_attention_heads
        if hasattr(attention_module, "c_attn"):
            hd = config.hidden_size // n_heads
            return attention_module.c_attn, _FusedLayout((3 * n_heads, hd), (n_heads,) * 3)
        if hasattr(attention_module, "qkv_proj"):
            hd, n_kv = attention_module.head_dim, attention_module.num_key_value_heads
            layout = _FusedLayout((n_heads + 2 * n_kv, hd), (n_heads, n_kv, n_kv))
            return attention_module.qkv_proj, layout
        hd = attention_module.head_size
        return attention_module.query_key_value, _FusedLayout((n_heads, 3, hd), (1, 1, 1))
    except AttributeError as error:  # not GPT-2's, Phi3's or GPT-NeoX's attention
        raise UnsupportedModelError(
            f"myopic mode 'residual' does not know where {name}'s fused projection keeps "
            f"q, k and v ({error}): use 'kv'"
        ) from None


def _stash_fused_channels(attention_module: nn.Module):
    projection, layout = _fused_parts(attention_module)

    def hook(projection: nn.Module, args, output):
        # Conv1D (GPT-2) keeps its weight as (in, out): its transpose is nn.Linear's.
        weight = projection.weight.t() if isinstance(projection, Conv1D) else projection.weight
        y, *channels = _FusedQKVChannels.apply(
            output.detach(), args[0], weight, projection.bias, layout
        )
        _STASHED[attention_module] = tuple(channels)
        return y

    return projection.register_forward_hook(hook)


# Rotary position embeddings (cos, sin) handed to attention modules whose fused keys
# reach the attention function without them (GPT-NeoX, Phi3), from a pre-hook.
_ROTARY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _stash_rotary(attention_module: nn.Module, args, kwargs):
    _ROTARY[attention_module] = kwargs.get("position_embeddings")


def rotate_keys(attention_module: nn.Module, keys: torch.Tensor) -> torch.Tensor:
    """Keys (B, Hkv, T, hd) rotated as the module's own code rotates them (its modeling
    file's apply_rotary_pos_emb, partial rotary included); unchanged without rotary."""
    cos_sin = _ROTARY.get(attention_module)
    if cos_sin is None:
        return keys
    apply_rotary = sys.modules[type(attention_module).__module__].apply_rotary_pos_emb
    no_query = keys[:, :0]  # (B, 0, T, hd): it rotates a query and keys; only keys here
    return apply_rotary(no_query, keys, *cos_sin)[1]


_FUSED_LINEAR = ("qkv_proj", "query_key_value")


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
        elif any(isinstance(getattr(module, n, None), nn.Linear) for n in _FUSED_LINEAR):
            found.append(module)
    return found


def install(model: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
    """Add the residual-mode channels to every attention module; return the hook handles."""
    modules = attention_modules(model)
    if not modules:
        raise UnsupportedModelError(
            f"myopic mode 'residual' supports attention with k_proj/v_proj (Llama family), "
            f"c_attn (GPT-2), qkv_proj (Phi3) or query_key_value (GPT-NeoX); "
            f"{type(model).__name__} has none of them: use 'kv'"
        )
    for module in modules:
        if hasattr(module, "k_proj") and (
            not all(isinstance(p, nn.Linear) for p in (module.k_proj, module.v_proj))
            or module.k_proj is module.v_proj
        ):
            raise UnsupportedModelError(
                "myopic mode 'residual' needs separate nn.Linear k_proj and v_proj: use 'kv'"
            )
        if hasattr(module, "c_attn") and not isinstance(module.c_attn, Conv1D):
            raise UnsupportedModelError(
                "myopic mode 'residual' needs GPT-2's Conv1D c_attn: use 'kv'"
            )
        if not hasattr(module, "k_proj"):
            _fused_parts(module)  # refuses a fused projection it does not know
    handles = []
    for module in modules:
        if hasattr(module, "k_proj"):
            handles.append(module.k_proj.register_forward_hook(_input_only_then_weight_only))
            handles.append(module.v_proj.register_forward_hook(_stash_value_channels(module)))
            if isinstance(getattr(module, "k_norm", None), nn.Module):
                handles += _split_key_norm(module.k_norm, module.k_proj.out_features)
            _LAYOUTS[module] = "heads"
        else:
            handles.append(_stash_fused_channels(module))
            handles.append(module.register_forward_pre_hook(_stash_rotary, with_kwargs=True))
            _LAYOUTS[module] = "fused"
    return handles


def _head_axis(x: torch.Tensor, n_heads: int) -> int:
    """The axis of the 2 * Hkv key heads in a per-head norm's input, a view of the key
    projection's output (B, T, 2 * Hkv * hd) split into heads (and maybe transposed): the
    axis of that size whose stride is one head."""
    axes = [a for a in range(x.dim() - 1) if x.shape[a] == n_heads and x.stride(a) == x.shape[-1]]
    if len(axes) != 1:
        raise UnsupportedModelError(
            "myopic mode 'residual' cannot find the key heads at the key norm: use 'kv'"
        )
    return axes[0]


def _split_key_norm(norm: nn.Module, key_width: int) -> list[torch.utils.hooks.RemovableHandle]:
    """Hooks on a key norm that follows the key projection (Qwen3 and Gemma3 per head, OLMo2
    over the whole projection) so that it keeps the two channels apart: the input-only
    copy through the norm with its weights detached (the own position's path into its
    input, never the weights), the weight-only copy through the norm as it is. The norm's
    own call gets the weight-only copy (the pre-hook passes it on); the hook adds the
    input-only one, normalised with the weights detached, and joins the two."""
    whole_width = sum(p.numel() for p in norm.parameters()) == key_width
    held: list = []  # the input-only copy and its axis, from the pre-hook to the hook
    # True while the hook itself calls the norm (functional_call runs the norm's hooks
    # too): that inner call is the norm's own forward, passed through unchanged.
    inner = [False]

    def split_input(_norm, args):
        if inner[0]:
            return None
        x = args[0]  # whole width (B, T, 2 * D); per head (B, T, 2 * Hkv, hd) or transposed
        if whole_width:  # -> (B, T, 2, D): normalised per channel
            x, axis = x.unflatten(-1, (2, key_width)), -2
        else:
            axis = _head_axis(x, 2 * key_width // x.shape[-1])
        x_input, x_weight = x.chunk(2, dim=axis)
        held[:] = (x_input, axis)
        return (x_weight,)

    def join(_norm, args, output):
        if inner[0]:
            return None
        x_input, axis = held
        held.clear()
        detached = {name: p.detach() for name, p in norm.named_parameters()}
        inner[0] = True
        try:
            # A norm ties no weights: the check for ties is skipped (a third of the cost).
            normalised = functional_call(norm, detached, (x_input,), tie_weights=False)
        finally:
            inner[0] = False
        out = torch.cat([normalised, output], axis)
        return out.flatten(-2) if whole_width else out

    return [
        norm.register_forward_pre_hook(split_input),
        norm.register_forward_hook(join),
    ]


def remove(model: nn.Module, handles: list[torch.utils.hooks.RemovableHandle]) -> None:
    for handle in handles:
        handle.remove()
    for module in attention_modules(model):
        _LAYOUTS.pop(module, None)
