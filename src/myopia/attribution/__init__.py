"""Current/future attribution: how much each head and MLP at each position serves the
token predicted there, and how much the tokens after it.

Ablating component c's output at position t (zeros, or its mean over the batch) changes
the per-position losses L_s; the current effect is ΔL_t and the future effect Σ_{s>t} ΔL_s.
Two methods:

- ``"first_order"`` (fast): every component at every position from one ordinary and one
  myopic backward pass (``first_order.py``);
- ``"ablation"`` (exact, slow): one forward pass per (component, position) (``ablation.py``).

>>> model, tokenizer = myopia.load_model("smollm2")                          # doctest: +SKIP
>>> ids = tokenizer("The cat sat on the mat. The cat", return_tensors="pt").input_ids
>>> result = attribute(model, ids)                                           # doctest: +SKIP
>>> result.future_share()["L3.H5"]                                           # doctest: +SKIP
0.41
>>> exact = attribute(model, ids, method="ablation", components=["L3.H5"])   # doctest: +SKIP
>>> agreement(result, exact)["future_per_entry"]                             # doctest: +SKIP
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import nn

from myopia.attention import current_mode
from myopia.attribution.ablation import ablation_attribution
from myopia.attribution.components import ABLATIONS, Component, all_components
from myopia.attribution.first_order import first_order_attribution
from myopia.attribution.readout import READOUTS, check_readout
from myopia.attribution.result import Attribution, agreement
from myopia.errors import MyopiaError

__all__ = [
    "ABLATIONS",
    "METHODS",
    "READOUTS",
    "Attribution",
    "Component",
    "agreement",
    "all_components",
    "attribute",
    "sample",
]

METHODS = ("first_order", "ablation")


def attribute(
    model: nn.Module,
    input_ids: torch.Tensor,
    method: str = "first_order",
    ablation: str = "mean",
    components: Sequence[str | Component] | None = None,
    positions: Sequence[int] | None = None,
    *,
    attention_mask: torch.Tensor | None = None,
    readout: str = "loss",
    chunk: int | None = None,
    show_progress: bool = False,
) -> Attribution:
    """Current and future effect of each of ``components`` (names such as ``"L3.H5"``,
    ``"L3.MLP"``; default all) at each of ``positions`` (default 0..T-2) of ``input_ids``
    (B, T) or (T,).

    ``ablation``: ``"mean"`` (the output's mean over the real positions of the batch) or
    ``"zero"``. ``readout``: ``"loss"`` (cross-entropy) or ``"logit"`` (minus the target
    logit). ``chunk`` and ``show_progress`` concern the ablation method only.
    """
    if method not in METHODS:
        raise MyopiaError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if ablation not in ABLATIONS:
        raise MyopiaError(f"unknown ablation {ablation!r}: choose one of {', '.join(ABLATIONS)}")
    check_readout(readout)
    if current_mode(model) is not None:
        raise MyopiaError(
            f"the model is in myopic mode {current_mode(model)!r}: attribution needs its "
            "ordinary attention; call myopia.set_myopic(model, None) first"
        )
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
        attention_mask = None if attention_mask is None else attention_mask.reshape(1, -1)
    if input_ids.dim() != 2:
        raise MyopiaError(f"input_ids must be (B, T) or (T,), not shape {tuple(input_ids.shape)}")
    device = next(model.parameters()).device
    batch = {"input_ids": input_ids.to(device)}
    if attention_mask is not None:
        batch["attention_mask"] = attention_mask.to(device)
    if method == "first_order":
        return first_order_attribution(model, batch, ablation, components, positions, readout)
    return ablation_attribution(
        model, batch, ablation, components, positions, readout, chunk, show_progress
    )


def sample(
    model: nn.Module,
    seq_len: int,
    n_components: int | None = None,
    n_positions: int | None = None,
    heads_only: bool = False,
    seed: int = 0,
) -> tuple[list[str], list[int]]:
    """A random subset of component names and positions (0..T-2), both sorted, for an
    ablation sweep that would be too slow in full. None: all of them."""
    rng = random.Random(seed)
    names = [c.name for c in all_components(model) if not (heads_only and c.is_mlp)]
    positions = list(range(seq_len - 1))
    if n_components is not None and n_components < len(names):
        keep = set(rng.sample(range(len(names)), n_components))
        names = [n for i, n in enumerate(names) if i in keep]
    if n_positions is not None and n_positions < len(positions):
        positions = sorted(rng.sample(positions, n_positions))
    return names, positions
