"""Figures of an attribution. Each function draws one figure, saves it atomically, and
writes the numbers it shows as JSON beside it (same name, ``.json``), as ``myopia.plots``
does, so a plot never stands without its data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from myopia.attribution.result import SHARE_DEFINITION, Attribution
from myopia.io import atomic_write_json, save_figure
from myopia.plots import plt  # the one place that picks the file-only backend

__all__ = ["plot_effect_by_position", "plot_share_heatmap"]


def _nan_to_none(rows: np.ndarray) -> list[list[float | None]]:
    return [[None if math.isnan(v) else float(v) for v in row] for row in rows]


def plot_share_heatmap(result: Attribution, path: Path, title: str) -> Path:
    """Future share per head (layer × head) with each layer's MLP as a last column; cells
    not attributed are left blank."""
    path = Path(path)
    grid = result.share_grid()  # (L, H + 1)
    columns = [f"H{h}" for h in range(result.n_heads)] + ["MLP"]
    fig, ax = plt.subplots(
        figsize=(max(4.0, 0.5 * len(columns) + 2.2), max(3.0, 0.24 * result.n_layers + 1.4))
    )
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.axvline(result.n_heads - 0.5, color="white", lw=2)  # heads | MLP
    ax.set_xticks(range(len(columns)), columns, fontsize=8)
    step = max(1, result.n_layers // 15)
    ax.set_yticks(
        range(0, result.n_layers, step), [str(i) for i in range(0, result.n_layers, step)]
    )
    ax.set_xlabel("head (query head index) | MLP")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="future share  F / (C + F)")
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(
        path.with_suffix(".json"),
        {
            "rows": [f"layer {i}" for i in range(result.n_layers)],
            "columns": columns,
            "future_share": _nan_to_none(grid),
            "definition": SHARE_DEFINITION,
            "method": result.method,
            "ablation": result.ablation,
            "readout": result.readout,
            "n_sequences": result.n_sequences,
            "seq_len": result.seq_len,
        },
    )
    return path


def plot_effect_by_position(result: Attribution, path: Path, title: str) -> Path:
    """Current and future effect by position: per position t, the mean over sequences of
    Σ over components of |effect|, heads and MLPs separately."""
    path = Path(path)
    data = result.by_position()
    x = data["positions"]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    styles = {
        "heads_current": ("C0", "-", "heads: current"),
        "heads_future": ("C0", "--", "heads: future"),
        "mlps_current": ("C3", "-", "MLPs: current"),
        "mlps_future": ("C3", "--", "MLPs: future"),
    }
    marker = "o" if len(x) <= 40 else None
    for key, (colour, line, label) in styles.items():
        ax.plot(x, data[key], line, color=colour, marker=marker, ms=3, lw=1.2, label=label)
    ax.set_xlabel("position t of the ablated output")
    ax.set_ylabel(f"Σ |Δ{result.readout}| over components")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(
        path.with_suffix(".json"),
        {
            **data,
            "definition": "per position t: mean over sequences of the sum over components of "
            "|current effect| (change at t) and |future effect| (sum of changes at s > t)",
            "method": result.method,
            "ablation": result.ablation,
            "readout": result.readout,
        },
    )
    return path
