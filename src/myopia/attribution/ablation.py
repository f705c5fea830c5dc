"""Exact attribution by ablation: the slow, literal reference for the first-order method.

For each component c and each position t: replace c's output at t (in every sequence of
the batch) by the ablated value, run the model forward again, and read the change of the
per-position read-outs, ΔL_s = L_s(ablated) − L_s(clean). Current effect: ΔL_t; future
effect: Σ_{s>t} ΔL_s. One forward pass per (component, position); the sequences of the
batch are independent, so they share it.

Several ablations share one forward pass as copies of the batch stacked along the batch
dimension (copy k carries ablation k; copies do not interact), and each copy is compared
with the same copy of a clean pass of the same shape, so the differences contain no
rounding noise from a change of batch size. A full sweep of SmolLM2 is 30 × 10 components
× T positions passes: use ``components`` and ``positions`` to sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from myopia.attribution.components import (
    Component,
    ablated_value,
    edit_outputs,
    layer_sites,
    parse_components,
)
from myopia.attribution.readout import parse_positions, position_readouts
from myopia.attribution.result import Attribution
from myopia.progress import track

__all__ = ["ablation_attribution"]

# Default number of tokens in one forward pass (copies × B × T) when ``chunk`` is None.
TOKENS_PER_PASS = 4096


def _repeat(batch: Mapping[str, torch.Tensor], copies: int) -> dict[str, torch.Tensor]:
    return {k: v.repeat(copies, *([1] * (v.dim() - 1))) for k, v in batch.items()}


def ablation_attribution(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    ablation: str = "mean",
    components: Sequence[str | Component] | None = None,
    positions: Sequence[int] | None = None,
    readout: str = "loss",
    chunk: int | None = None,
    show_progress: bool = False,
) -> Attribution:
    """Exact current and future effects of ``components`` (default all) at ``positions``
    (default 0..T-2), by re-running the model once per pair. ``chunk``: ablations per
    forward pass (default: about ``TOKENS_PER_PASS`` tokens per pass)."""
    input_ids = batch["input_ids"]
    n_seq, seq_len = input_ids.shape
    chosen = parse_components(model, components)
    kept = parse_positions(positions, seq_len)
    sites = layer_sites(model)
    jobs = [(ci, pi) for ci in range(len(chosen)) for pi in range(len(kept))]
    copies = chunk or max(1, TOKENS_PER_PASS // (n_seq * seq_len))
    copies = max(1, min(copies, len(jobs)))
    stacked = _repeat(batch, copies)
    mask = batch.get("attention_mask")

    # Clean pass, same shape as every ablated pass: the reference read-outs and the outputs
    # the mean ablation averages (over the first copy, i.e. the batch itself).
    clean_outputs: dict[tuple[str, int], torch.Tensor] = {}

    def record(kind: str):
        def edit(layer: int, value: torch.Tensor) -> torch.Tensor:
            clean_outputs[kind, layer] = value[:n_seq].detach()
            return value

        return edit

    with torch.no_grad():
        with edit_outputs(model, record("heads"), record("mlp")):
            clean = position_readouts(model, stacked, readout).view(copies, n_seq, -1)
        replacement = {}
        for component in chosen:
            site = sites[component.layer]
            kind = "mlp" if component.is_mlp else "heads"
            value = ablated_value(clean_outputs[kind, component.layer], mask, ablation)
            replacement[component] = (
                value if component.is_mlp else value[site.head_slice(component.head)]
            )

        current = torch.zeros(len(chosen), n_seq, len(kept), dtype=torch.float64)
        future = torch.zeros_like(current)
        groups = [jobs[i : i + copies] for i in range(0, len(jobs), copies)]
        for group in track(
            groups,
            f"ablation: {len(jobs)} (component, position) pairs",
            total=math.ceil(len(jobs) / copies),
            enabled=show_progress,
        ):
            placed = [(k, chosen[ci], kept[pi]) for k, (ci, pi) in enumerate(group)]

            def ablate(kind: str, placed=placed):
                def edit(layer: int, value: torch.Tensor) -> torch.Tensor:
                    here = [
                        (k, c, t)
                        for k, c, t in placed
                        if c.layer == layer and c.is_mlp == (kind == "mlp")
                    ]
                    if not here:
                        return value
                    value = value.clone()
                    for k, component, t in here:
                        cols = (
                            slice(None)
                            if component.is_mlp
                            else sites[layer].head_slice(component.head)
                        )
                        value[k * n_seq : (k + 1) * n_seq, t, cols] = replacement[component]
                    return value

                return edit

            with edit_outputs(model, ablate("heads"), ablate("mlp")):
                ablated = position_readouts(model, stacked, readout).view(copies, n_seq, -1)
            delta = (ablated - clean).double()  # (copies, B, T-1)
            for k, (ci, pi) in enumerate(group):
                t = kept[pi]
                current[ci, :, pi] = delta[k, :, t]
                future[ci, :, pi] = delta[k, :, t + 1 :].sum(-1)
    return Attribution(
        components=chosen,
        positions=kept,
        current=current,
        future=future,
        method="ablation",
        ablation=ablation,
        readout=readout,
        n_layers=len(sites),
        n_heads=sites[0].n_heads,
        readouts=clean[0].double().cpu(),
    )
