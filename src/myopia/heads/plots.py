"""Heatmaps of head scores: layer x head, one panel per kind, with the numbers as JSON."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import torch

from myopia.io import atomic_write_json, save_figure
from myopia.plots import plt  # the one place that picks the file-only backend

__all__ = ["plot_head_scores", "plot_null_distributions"]


def plot_head_scores(
    panels: dict[str, torch.Tensor], path: Path, title: str, data: dict[str, Any]
) -> Path:
    """Save one heatmap per kind (``panels[kind]`` is ``(n_layers, n_heads)``, scores in
    [0, 1]) to ``path`` and ``data`` as JSON beside it (same name, ``.json``). The best
    head of each panel is circled."""
    path = Path(path)
    n_layers, n_heads = next(iter(panels.values())).shape
    height = max(3.0, 0.2 * n_layers + 1.6)
    width = max(2.4, 0.3 * n_heads + 1.4)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(width * len(panels), height), squeeze=False, sharey=True
    )
    for ax, (kind, table) in zip(axes[0], panels.items(), strict=True):
        values = table.float().cpu()
        image = ax.imshow(values.numpy(), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        best = int(values.flatten().argmax())
        ax.plot(best % n_heads, best // n_heads, "o", mfc="none", mec="red", ms=9, mew=1.5)
        ax.set_title(
            f"{kind.replace('_', ' ')}\nbest {best // n_heads}.{best % n_heads}: "
            f"{values.max():.2f}",
            fontsize=9,
        )
        ax.set_xlabel("head")
        ax.set_xticks(range(n_heads), [str(h) for h in range(n_heads)], fontsize=7)
        fig.colorbar(image, ax=ax, fraction=0.08, pad=0.03)
    axes[0][0].set_ylabel("layer")
    axes[0][0].set_yticks(range(n_layers), [str(layer) for layer in range(n_layers)], fontsize=7)
    fig.suptitle("\n".join(textwrap.wrap(title, 30 * len(panels) + 20)), fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(path.with_suffix(".json"), data)
    return path


def plot_null_distributions(panels: dict[str, dict[str, Any]], path: Path, title: str) -> Path:
    """One histogram per statistic: ``panels[name]`` is ``NullComparison.to_dict()``
    (its ``null`` values, ``observed``, ``null_q95``, ``null_median``, ``p``); the detected
    heads' value is the red line, the null's 95th percentile dashed, its median dotted.
    The data go as JSON beside the figure."""
    path = Path(path)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (name, d) in zip(axes[0], panels.items(), strict=True):
        ax.hist(d["null"], bins=25, color="0.7", label=f"{d['n_null']} matched random sets")
        ax.axvline(d["null_q95"], color="k", ls="--", lw=1, label="null 95th percentile")
        ax.axvline(d["null_median"], color="k", ls=":", lw=1, label="null median")
        ax.axvline(d["observed"], color="red", lw=2, label=f"detected heads (p = {d['p']:.3f})")
        ax.set_xlabel(name, fontsize=8)
        ax.legend(fontsize=6)
    fig.suptitle("\n".join(textwrap.wrap(title, 110)), fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(path.with_suffix(".json"), panels)
    return path
