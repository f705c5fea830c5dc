"""The result of an attribution: each component's current and future effect at each position.

``current[c, b, p]`` is ΔL_t in sequence b when component c's output is ablated at position
t = ``positions[p]``; ``future[c, b, p]`` is Σ_{s>t} ΔL_s (ΔL: read-out with the ablation
minus without). Positions are those that predict a next token, 0..T-2.

Future share of a component: ``F / (C + F)`` with ``C = Σ_{b,p} |current[c, b, p]|`` and
``F = Σ_{b,p} |future[c, b, p]|``: sums of absolute per-position effects. Why absolute
values per position rather than the absolute value of summed effects: a head can help at
one position and hurt at another (mean ablation especially moves outputs both ways), and
the question "does its work at t serve token t or later tokens" is about how much each
token depends on it, not about whether its helps and harms cancel over a text. The same
rule is applied to both methods, so their shares are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from scipy import stats as _scipy_stats

from myopia.attribution.components import Component

__all__ = ["Attribution", "agreement"]

SHARE_DEFINITION = (
    "future_share = F / (C + F), C = sum over sequences and positions of |current effect|, "
    "F = the same sum of |future effect|; current effect = change of the read-out at t when "
    "the component's output at t is ablated, future effect = sum of the changes at s > t"
)


@dataclass
class Attribution:
    """Per-component, per-sequence, per-position effects, float64 tensors (C, B, P)."""

    components: list[Component]
    positions: list[int]
    current: torch.Tensor
    future: torch.Tensor
    method: str  # "first_order" or "ablation"
    ablation: str  # "mean" or "zero"
    readout: str  # "loss" or "logit"
    n_layers: int
    n_heads: int
    readouts: torch.Tensor  # (B, T-1) the clean read-outs

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.components]

    @property
    def n_sequences(self) -> int:
        return int(self.current.shape[1])

    @property
    def seq_len(self) -> int:
        return int(self.readouts.shape[1]) + 1

    def index(self, component: str | Component) -> int:
        name = component if isinstance(component, str) else component.name
        return self.names.index(name)

    def magnitudes(self, per_sequence: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(C, F)``: per component, sums over sequences and positions of |current| and
        of |future|, each shape (n_components,); with ``per_sequence``, sums over
        positions only, (n_components, B)."""
        dims = 2 if per_sequence else (1, 2)
        return self.current.abs().sum(dims), self.future.abs().sum(dims)

    def future_shares(self, per_sequence: bool = False) -> torch.Tensor:
        """(n_components,) F / (C + F), or (n_components, B) with ``per_sequence``; NaN
        where a component has no effect at all."""
        current, future = self.magnitudes(per_sequence)
        total = current + future
        return torch.where(total > 0, future / total.clamp(min=1e-300), float("nan"))

    def future_share(self) -> dict[str, float]:
        """``{component name: F / (C + F)}`` (see the module docstring)."""
        return dict(zip(self.names, self.future_shares().tolist(), strict=True))

    def select(
        self,
        components: Sequence[str | Component] | None = None,
        positions: Sequence[int] | None = None,
    ) -> Attribution:
        """The same attribution restricted to some components and positions (in that order)."""
        rows = (
            list(range(len(self.components)))
            if components is None
            else [self.index(c) for c in components]
        )
        cols = (
            list(range(len(self.positions)))
            if positions is None
            else [self.positions.index(int(t)) for t in positions]
        )
        return replace(
            self,
            components=[self.components[i] for i in rows],
            positions=[self.positions[j] for j in cols],
            current=self.current[rows][:, :, cols],
            future=self.future[rows][:, :, cols],
        )

    def share_grid(self) -> np.ndarray:
        """(n_layers, n_heads + 1) future shares: heads, then the MLP in the last column;
        NaN for components not attributed."""
        grid = np.full((self.n_layers, self.n_heads + 1), np.nan)
        for component, share in zip(self.components, self.future_shares().tolist(), strict=True):
            grid[component.layer, self.n_heads if component.is_mlp else component.head] = share
        return grid

    def by_position(self) -> dict[str, list[float]]:
        """Per position: the mean over sequences of Σ over components of |current| and
        |future|, for heads and for MLPs separately."""
        is_mlp = torch.tensor([c.is_mlp for c in self.components], dtype=torch.bool)
        out: dict[str, list[float]] = {"positions": list(self.positions)}
        for kind, rows in (("heads", ~is_mlp), ("mlps", is_mlp)):
            for part, effects in (("current", self.current), ("future", self.future)):
                out[f"{kind}_{part}"] = effects[rows].abs().sum(0).mean(0).tolist()
        return out

    def to_dict(self, per_position: bool = True) -> dict[str, Any]:
        """Plain JSON: settings, per-component totals and shares, and (``per_position``)
        the per-position effects averaged over sequences."""
        current, future = self.magnitudes()
        shares = self.future_shares()
        data: dict[str, Any] = {
            "method": self.method,
            "ablation": self.ablation,
            "readout": self.readout,
            "n_sequences": self.n_sequences,
            "seq_len": self.seq_len,
            "positions": list(self.positions),
            "definition": SHARE_DEFINITION,
            "mean_readout": float(self.readouts.mean()),
            "components": {
                c.name: {
                    "current_abs": float(current[i]),
                    "future_abs": float(future[i]),
                    "current_net": float(self.current[i].sum()),
                    "future_net": float(self.future[i].sum()),
                    "future_share": float(shares[i]),
                }
                for i, c in enumerate(self.components)
            },
            "by_position": self.by_position(),
        }
        if per_position:
            data["per_position"] = {
                c.name: {
                    "current": self.current[i].mean(0).tolist(),
                    "future": self.future[i].mean(0).tolist(),
                }
                for i, c in enumerate(self.components)
            }
        return data


def _spearman(a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor | None = None) -> float:
    """Spearman's rho over the finite pairs (and ``keep``); NaN with under 3 pairs or a
    constant side."""
    a, b = a.flatten().numpy(), b.flatten().numpy()
    mask = np.isfinite(a) & np.isfinite(b)
    if keep is not None:
        mask &= keep.flatten().numpy()
    a, b = a[mask], b[mask]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(_scipy_stats.spearmanr(a, b).statistic)


def agreement(fast: Attribution, exact: Attribution) -> dict[str, float]:
    """Spearman rank correlations between two attributions, on ``exact``'s components and
    positions: over components, of the summed magnitudes C = Σ|current| and F = Σ|future|
    and of the future share; over every (component, sequence, position), of the signed
    effects. Components whose future effect is zero in both (the last layer's, exactly)
    are left out of the future and share correlations: their tied zeros would only inflate
    the agreement."""
    fast = fast.select(exact.components, exact.positions)
    fast_c, fast_f = fast.magnitudes()
    exact_c, exact_f = exact.magnitudes()
    has_future = (fast_f > 0) | (exact_f > 0)
    entry_future = (fast.future != 0) | (exact.future != 0)
    return {
        "n_components": len(exact.components),
        "n_components_with_future": int(has_future.sum()),
        "n_positions": len(exact.positions),
        "current_over_components": _spearman(fast_c, exact_c),
        "future_over_components": _spearman(fast_f, exact_f, has_future),
        "share_over_components": _spearman(fast.future_shares(), exact.future_shares(), has_future),
        "current_per_entry": _spearman(fast.current, exact.current),
        "future_per_entry": _spearman(fast.future, exact.future, entry_future),
    }
