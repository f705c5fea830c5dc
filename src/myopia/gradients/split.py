"""Split a gradient into its current-token and future-token parts.

For a batch with per-position losses L_t, the full gradient of the mean loss is
``current + future``: ``current`` is the myopic gradient (each L_t differentiated with
everything computed at earlier positions held constant), ``future`` is the rest, the part
of the training signal that asks position s's computation to serve later tokens. Two
passes: one ordinary backward, one myopic backward (exact, see ``myopia.attention``).

>>> split = split_gradient(model, batch)              # doctest: +SKIP
>>> for row in split.layer_shares():                   # doctest: +SKIP
...     print(row.group, f"{row.future_share:.2f}")
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import nn

from myopia.attention import myopic
from myopia.errors import MyopiaError
from myopia.gradients.loss import mean_token_loss, parameter_gradients

_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")


def parameter_group(name: str) -> str:
    """The report group of a parameter: ``embeddings``, ``layer N`` or ``head``."""
    match = _LAYER_INDEX.search(name)
    if match:
        return f"layer {int(match.group(1))}"
    if any(key in name for key in ("embed", "wte", "wpe")):
        return "embeddings"
    return "head"


def parameter_kind(name: str) -> str:
    """``attention``, ``mlp`` or ``other`` (norms, embeddings, head)."""
    if any(key in name for key in ("attn", "attention")):
        return "attention"
    if "mlp" in name:
        return "mlp"
    return "other"


@dataclass
class GroupShare:
    """Norms of one group's gradient parts. ``future_share`` = |future| / (|current| + |future|):
    0 when all of the gradient serves the current token, 1 when all serves later ones."""

    group: str
    current_norm: float
    future_norm: float
    full_norm: float

    @property
    def future_share(self) -> float:
        total = self.current_norm + self.future_norm
        return self.future_norm / total if total > 0 else float("nan")


NORM_ROW = 256


def squared_norm(tensor: torch.Tensor) -> float:
    """The squared 2-norm of ``tensor``: norms of rows of ``NORM_ROW`` elements in at
    least float32, their squares summed in float64. One float32 norm over 28M numbers
    (SmolLM2's embedding) is off by 3e-3 relative; a float64 cast takes nearly 40 times
    as long as these rows (1.5 s of each C1b sequence). Short rows keep rounding from
    piling up: they agree with float64 to 1e-7 relative on bfloat16 values and 1e-9 on
    float32 ones, where rows of 4096 drift to 1e-6 on bfloat16."""
    flat = tensor.detach().reshape(-1)
    if flat.dtype != torch.float64:
        flat = flat.to(torch.promote_types(flat.dtype, torch.float32))
    whole = flat.numel() // NORM_ROW * NORM_ROW
    rows = torch.linalg.vector_norm(flat[:whole].view(-1, NORM_ROW), dim=1)
    return float(rows.double().square().sum() + flat[whole:].double().square().sum())


@dataclass
class GradientSplit:
    """Per parameter: ``current`` (myopic) and ``future`` gradient, and ``full``, the
    ordinary gradient they split (their sum up to rounding; summed when not given)."""

    current: dict[str, torch.Tensor]
    future: dict[str, torch.Tensor]
    mode: str
    full: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self):
        if not self.full:
            self.full = {name: self.current[name] + self.future[name] for name in self.current}

    @cached_property
    def squared_norms(self) -> dict[str, tuple[float, float, float]]:
        """Per parameter: the squared norms of its current, future and full gradient.
        Computed once, since every grouping of ``shares`` sums the same numbers (three
        passes over the model's gradients instead of nine)."""
        return {
            name: tuple(squared_norm(part[name]) for part in (self.current, self.future, self.full))
            for name in self.current
        }

    def shares(self, key=parameter_group) -> list[GroupShare]:
        """Norms per group of parameters, groups in order of first appearance."""
        groups: dict[str, list[str]] = {}
        for name in self.current:
            groups.setdefault(key(name), []).append(name)
        squares = self.squared_norms
        return [
            GroupShare(
                group, *(math.sqrt(sum(squares[n][part] for n in names)) for part in range(3))
            )
            for group, names in groups.items()
        ]

    def layer_shares(self) -> list[GroupShare]:
        return self.shares(parameter_group)


def loss_gradient(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Gradient of the mean token loss, without touching the parameters' ``.grad``."""
    return parameter_gradients(model, mean_token_loss(model, batch))


def split_gradient(
    model: nn.Module, batch: Mapping[str, torch.Tensor], mode: str = "kv", backend: str = "fast"
) -> GradientSplit:
    """Current (myopic, by ``mode``) and future parts of the gradient of the mean token loss."""
    if mode == "bigram":
        raise MyopiaError(
            "mode 'bigram' changes the model's forward pass, so it does not split a gradient: "
            "use 'kv' or 'residual'"
        )
    full = loss_gradient(model, batch)
    with myopic(model, mode, backend):
        current = loss_gradient(model, batch)
    future = {n: full[n] - current[n] for n in full}
    # The full gradient is kept as computed: a second copy summed from the parts would
    # cost another model's worth of memory (540 MB on SmolLM2) for the same numbers.
    return GradientSplit(current=current, future=future, mode=mode, full=full)
