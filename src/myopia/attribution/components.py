"""Where each attention head's and each MLP's output lives, and hooks that read or edit it.

A component is one attention head of one layer (``"L3.H5"``) or the MLP of one layer
(``"L3.MLP"``). Their outputs are found on the model's own modules:

- heads: the input of the attention output projection (``self_attn.o_proj`` in Llama-like
  models, ``attn.c_proj`` in GPT-2, ``attention.dense`` in GPT-NeoX), shape (B, T, H * hd),
  heads side by side. Head h's contribution to the residual stream is
  ``W_O[:, h*hd:(h+1)*hd] @ z_h``, so editing the slice ``z_h`` edits exactly that head's
  contribution and nothing else;
- MLPs: the output of the layer's ``mlp`` module, shape (B, T, D), added to the residual.

``edit_outputs`` installs a forward pre-hook on each output projection and a forward hook
on each MLP (plain PyTorch hooks on the unmodified modules) and removes them on exit.

>>> model, _ = load_model("fresh-llama:d_model=32,n_layers=2,n_heads=4")   # doctest: +SKIP
>>> [c.name for c in all_components(model)][:5]                            # doctest: +SKIP
['L0.H0', 'L0.H1', 'L0.H2', 'L0.H3', 'L0.MLP']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from myopia.errors import MyopiaError, UnsupportedModelError

__all__ = [
    "ABLATIONS",
    "Component",
    "LayerSite",
    "ablated_value",
    "all_components",
    "edit_outputs",
    "layer_sites",
    "parse_components",
]

_NAME = re.compile(r"^L(\d+)\.(?:H(\d+)|MLP)$")

# (B, T, D) -> (B, T, D): receives a layer index and that layer's output tensor.
Edit = Callable[[int, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Component:
    """One head (``head`` = its index among the query heads) or one MLP (``head`` None)."""

    layer: int
    head: int | None = None

    @property
    def is_mlp(self) -> bool:
        return self.head is None

    @property
    def name(self) -> str:
        return f"L{self.layer}.MLP" if self.head is None else f"L{self.layer}.H{self.head}"

    @classmethod
    def parse(cls, name: str) -> Component:
        match = _NAME.match(name.strip())
        if not match:
            raise MyopiaError(
                f"bad component name {name!r}: write L<layer>.H<head> or L<layer>.MLP"
            )
        head = match.group(2)
        return cls(int(match.group(1)), None if head is None else int(head))

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class LayerSite:
    """The modules of one decoder layer whose tensors hold its components' outputs."""

    index: int
    head_input: nn.Module  # o_proj / c_proj: its input (B, T, H * hd) is the heads' outputs
    mlp: nn.Module  # its output (B, T, D) is the MLP's output
    head_input_path: str
    mlp_path: str
    n_heads: int
    head_dim: int

    def head_slice(self, head: int) -> slice:
        return slice(head * self.head_dim, (head + 1) * self.head_dim)


def _layer_parts(layer: nn.Module) -> tuple[str, nn.Module, nn.Module] | None:
    """``(relative path of the output projection, it, the mlp)`` of a decoder layer."""
    for attn_name, proj_name in (
        ("self_attn", "o_proj"),
        ("attn", "c_proj"),
        ("attention", "dense"),
    ):
        attn = getattr(layer, attn_name, None)
        proj = getattr(attn, proj_name, None) if attn is not None else None
        mlp = getattr(layer, "mlp", None)
        if isinstance(proj, nn.Module) and isinstance(mlp, nn.Module):
            return f"{attn_name}.{proj_name}", proj, mlp
    return None


def layer_sites(model: nn.Module) -> list[LayerSite]:
    """One ``LayerSite`` per decoder layer, found by the model's own module paths."""
    config = model.config
    n_layers = config.num_hidden_layers
    n_heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
    for path, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) != n_layers:
            continue
        parts = [_layer_parts(layer) for layer in module]
        if all(parts):
            return [
                LayerSite(
                    index=i,
                    head_input=proj,
                    mlp=mlp,
                    head_input_path=f"{path}.{i}.{proj_path}",
                    mlp_path=f"{path}.{i}.mlp",
                    n_heads=n_heads,
                    head_dim=head_dim,
                )
                for i, (proj_path, proj, mlp) in enumerate(parts)
            ]
    raise UnsupportedModelError(
        f"{type(model).__name__}: no decoder layers with self_attn.o_proj (Llama-like), "
        "attn.c_proj (GPT-2) or attention.dense (GPT-NeoX) and an mlp, so its heads and MLPs "
        "cannot be located"
    )


def all_components(model: nn.Module) -> list[Component]:
    """Every head and MLP, layer by layer: heads in order, then the layer's MLP."""
    return [
        component
        for site in layer_sites(model)
        for component in (
            *(Component(site.index, h) for h in range(site.n_heads)),
            Component(site.index),
        )
    ]


def parse_components(
    model: nn.Module, components: Sequence[str | Component] | None
) -> list[Component]:
    """Components in the given order (all of them for None), checked against the model."""
    everything = all_components(model)
    if components is None:
        return everything
    known = set(everything)
    parsed = [c if isinstance(c, Component) else Component.parse(c) for c in components]
    for component in parsed:
        if component not in known:
            raise MyopiaError(
                f"the model has no component {component.name}: it has layers "
                f"0..{everything[-1].layer} with heads 0..{everything[-2].head} each"
            )
    if len(set(parsed)) != len(parsed):
        raise MyopiaError("a component is named twice")
    return parsed


@contextmanager
def edit_outputs(
    model: nn.Module, heads: Edit | None = None, mlp: Edit | None = None
) -> Iterator[list[LayerSite]]:
    """Inside, every forward pass calls ``heads(layer, z)`` on each layer's head outputs
    z (B, T, H * hd) and ``mlp(layer, m)`` on each MLP output m (B, T, D); what they return
    replaces the tensor. Yields the layer sites."""
    sites = layer_sites(model)
    handles = []

    def head_hook(site: LayerSite):
        def hook(_module, args):
            (z, *rest) = args
            if z.shape[-1] != site.n_heads * site.head_dim:
                raise UnsupportedModelError(
                    f"{site.head_input_path} takes inputs of width {z.shape[-1]}, not "
                    f"n_heads * head_dim = {site.n_heads * site.head_dim}: cannot split heads"
                )
            return (heads(site.index, z), *rest)

        return hook

    def mlp_hook(site: LayerSite):
        def hook(_module, _args, output):
            if not isinstance(output, torch.Tensor):
                raise UnsupportedModelError(
                    f"{site.mlp_path} returns {type(output).__name__}, not a tensor"
                )
            return mlp(site.index, output)

        return hook

    try:
        for site in sites:
            if heads is not None:
                handles.append(site.head_input.register_forward_pre_hook(head_hook(site)))
            if mlp is not None:
                handles.append(site.mlp.register_forward_hook(mlp_hook(site)))
        yield sites
    finally:
        for handle in handles:
            handle.remove()


ABLATIONS = ("mean", "zero")


def ablated_value(
    outputs: torch.Tensor, attention_mask: torch.Tensor | None, ablation: str
) -> torch.Tensor:
    """(D,) what replaces an output of width D: zeros, or its mean over the real (unpadded)
    positions of every sequence of the batch. ``outputs``: (B, T, D), the clean run's."""
    if ablation == "zero":
        return torch.zeros(outputs.shape[-1], dtype=outputs.dtype, device=outputs.device)
    if ablation != "mean":
        raise MyopiaError(f"unknown ablation {ablation!r}: choose one of {', '.join(ABLATIONS)}")
    if attention_mask is None:
        return outputs.mean((0, 1))
    weights = attention_mask.to(outputs.dtype)[..., None]  # (B, T, 1)
    return (outputs * weights).sum((0, 1)) / weights.sum().clamp(min=1)
