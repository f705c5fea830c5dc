"""Fast attribution: every head and MLP at every position from two backward passes.

To first order, ablating component c's output o_{c,t} at position t changes the read-out
at s by ΔL_s ≈ ∂L_s/∂o_{c,t} · (a_c − o_{c,t}), with a_c the ablated value (zeros, or the
mean output). Summed over s:

- total, Σ_{s≥t} ΔL_s: from ONE ordinary backward of Σ_s L_s, with the gradient read at
  every component's output (each layer's heads together, as the input of the output
  projection, sliced per head afterwards);
- current, ΔL_t: from ONE backward of Σ_s L_s under ``myopic(model, "kv")``. With the
  exact myopic gradient, L_s for s > t sends no gradient into anything computed at t (the
  keys and values of earlier positions are constants for later queries, and attention is
  the only place positions meet), while L_t's own path through position t is untouched.
  So the gradient that reaches o_{c,t} is exactly ∂L_t/∂o_{c,t};
- future = total − current.

Gradients are read by adding a zero leaf δ to each output (``z + δ``: same forward
values) and differentiating with respect to δ, so nothing about the model's parameters
(``requires_grad``, ``.grad``) is touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from myopia.attention import myopic
from myopia.attribution.components import (
    Component,
    ablated_value,
    edit_outputs,
    layer_sites,
    parse_components,
)
from myopia.attribution.readout import parse_positions, position_readouts
from myopia.attribution.result import Attribution

__all__ = ["OutputGradients", "first_order_attribution", "output_gradients"]


@dataclass
class OutputGradients:
    """Per layer: the clean outputs and d(Σ_s L_s)/d(output) of its heads (B, T, H * hd)
    and its MLP (B, T, D); ``readouts`` (B, T-1) are the read-outs L_s of that pass."""

    head_outputs: list[torch.Tensor]
    mlp_outputs: list[torch.Tensor]
    head_grads: list[torch.Tensor]
    mlp_grads: list[torch.Tensor]
    readouts: torch.Tensor


def output_gradients(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    readout: str = "loss",
    mode: str | None = None,
) -> OutputGradients:
    """One forward and one backward of Σ_s L_s (real targets only). ``mode="kv"`` runs
    both under the exact myopic gradient, which makes the gradient at position t's outputs
    ∂L_t/∂o_t alone; ``None``: the ordinary gradient, Σ_{s≥t} ∂L_s/∂o_t."""
    outputs: dict[str, dict[int, torch.Tensor]] = {"heads": {}, "mlp": {}}
    deltas: dict[str, dict[int, torch.Tensor]] = {"heads": {}, "mlp": {}}

    def recorder(kind: str):
        def edit(layer: int, value: torch.Tensor) -> torch.Tensor:
            outputs[kind][layer] = value.detach()
            delta = torch.zeros_like(value, requires_grad=True)
            deltas[kind][layer] = delta
            return value + delta

        return edit

    switch = myopic(model, mode) if mode is not None else nullcontext()
    with torch.enable_grad(), switch, edit_outputs(model, recorder("heads"), recorder("mlp")):
        readouts = position_readouts(model, batch, readout)
        n_layers = len(deltas["heads"])
        leaves = [deltas[k][i] for k in ("heads", "mlp") for i in range(n_layers)]
        grads = torch.autograd.grad(readouts.sum(), leaves, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves, strict=True)]
    return OutputGradients(
        head_outputs=[outputs["heads"][i] for i in range(n_layers)],
        mlp_outputs=[outputs["mlp"][i] for i in range(n_layers)],
        head_grads=grads[:n_layers],
        mlp_grads=grads[n_layers:],
        readouts=readouts.detach(),
    )


def first_order_attribution(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    ablation: str = "mean",
    components: Sequence[str | Component] | None = None,
    positions: Sequence[int] | None = None,
    readout: str = "loss",
) -> Attribution:
    """First-order current and future effects (see the module docstring). Every component
    at every position costs the same two passes; ``components``/``positions`` only select
    what is kept."""
    input_ids = batch["input_ids"]
    chosen = parse_components(model, components)
    kept = parse_positions(positions, input_ids.shape[1])
    sites = layer_sites(model)
    total = output_gradients(model, batch, readout)
    current = output_gradients(model, batch, readout, mode="kv")
    mask = batch.get("attention_mask")

    def effects(grads: list[torch.Tensor], outputs: list[torch.Tensor], kind: str):
        """Per layer (B, T, n) first-order ΔL: n = heads, or 1 for the MLP."""
        per_layer = []
        for site, grad, clean in zip(sites, grads, outputs, strict=True):
            step = (ablated_value(clean, mask, ablation) - clean).double()  # a − o, (B, T, W)
            product = grad.double() * step
            if kind == "heads":
                product = product.unflatten(-1, (site.n_heads, site.head_dim))  # (B,T,H,hd)
            else:
                product = product.unsqueeze(-2)  # (B, T, 1, D)
            per_layer.append(product.sum(-1))
        return per_layer

    heads_total = effects(total.head_grads, total.head_outputs, "heads")
    heads_current = effects(current.head_grads, total.head_outputs, "heads")
    mlp_total = effects(total.mlp_grads, total.mlp_outputs, "mlp")
    mlp_current = effects(current.mlp_grads, total.mlp_outputs, "mlp")

    cols = torch.tensor(kept, dtype=torch.long)
    current_rows, future_rows = [], []
    for component in chosen:
        layer, head = component.layer, component.head
        if component.is_mlp:
            tot, cur = mlp_total[layer][..., 0], mlp_current[layer][..., 0]  # (B, T)
        else:
            tot, cur = heads_total[layer][..., head], heads_current[layer][..., head]
        current_rows.append(cur[:, cols])
        future_rows.append((tot - cur)[:, cols])
    return Attribution(
        components=chosen,
        positions=kept,
        current=torch.stack(current_rows).cpu(),
        future=torch.stack(future_rows).cpu(),
        method="first_order",
        ablation=ablation,
        readout=readout,
        n_layers=len(sites),
        n_heads=sites[0].n_heads,
        readouts=total.readouts.double().cpu(),
    )
