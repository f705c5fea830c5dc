"""C1(a)'s figure of the gap against training steps: the pre-caching task and its null
side by side, each myopic mode's gap (myopic − normal held-out loss, paired by seed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from myopia.io import atomic_write_json, save_figure
from myopia.plots import plt  # the one place that picks the file-only backend
from myopia.stats import paired_difference_ci


def gap_intervals(curves: dict) -> dict:
    """task -> mode -> [gap interval at each step], from ``PrecachingGapResult.curves()``."""
    out = {}
    for task, by_mode in curves["tasks"].items():
        normal = np.asarray(by_mode["normal"])  # (seeds, steps)
        out[task] = {
            mode: [
                paired_difference_ci(np.asarray(losses)[:, k], normal[:, k]).to_dict()
                for k in range(normal.shape[1])
            ]
            for mode, losses in by_mode.items()
            if mode != "normal"
        }
    return out


def plot_gap_by_step(curves: dict, path: Path, title: str) -> Path:
    """One panel per task (the task, then its null): the gap of each myopic mode against
    training steps, mean over seeds with its 95% CI; the dashed band is the null's
    equivalence margin (±0.03)."""
    path = Path(path)
    steps, intervals = curves["steps"], gap_intervals(curves)
    fig, axes = plt.subplots(1, len(intervals), figsize=(5 * len(intervals), 3.6), sharey=True)
    for ax, (task, by_mode) in zip(np.atleast_1d(axes), intervals.items(), strict=True):
        for mode, cis in by_mode.items():
            mean = [c["mean"] for c in cis]
            ax.plot(steps, mean, "o-", label=f"{mode} − normal")
            ax.fill_between(steps, [c["low"] for c in cis], [c["high"] for c in cis], alpha=0.2)
        ax.axhline(0, color="black", lw=0.8)
        for edge in (-0.03, 0.03):
            ax.axhline(edge, color="grey", lw=0.8, ls="--")
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("myopia gap (held-out Huber loss)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(path.with_suffix(".json"), {**curves, "gaps": intervals})
    return path
