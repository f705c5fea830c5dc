"""The figure of a future-token probe measurement, saved with its data as JSON beside it."""

from __future__ import annotations

from pathlib import Path

from matplotlib.lines import Line2D

from myopia.io import atomic_write_json, save_figure
from myopia.lookahead.result import LookaheadResult
from myopia.plots import plt  # the one place that picks the file-only backend

FAMILY_LABELS = {"residual": "bigram + linear(h)", "lens": "linear map to final state"}


def plot_lookahead(result: LookaheadResult, curves: dict, path: Path, title: str) -> Path:
    """One panel per probe family: accuracy against layer, one line per k with its CI
    band, the baselines as horizontal lines in the same colour."""
    path = Path(path)
    families = result.families
    fig, axes = plt.subplots(
        1, len(families), figsize=(5.2 * len(families), 3.8), sharey=True, squeeze=False
    )
    styles = {"bigram": "--", "unigram": ":", "4-gram": "-.", "onehot-3": (0, (1, 3, 5, 3))}
    layers = curves["layers"]
    for ax, family in zip(axes[0], families, strict=True):
        for i, k in enumerate(result.offsets):
            colour = f"C{i}"
            series = curves["probes"][family][str(k)]
            ax.plot(layers, [c["mean"] for c in series], "o-", ms=3, color=colour, label=f"k={k}")
            ax.fill_between(
                layers,
                [c["low"] for c in series],
                [c["high"] for c in series],
                color=colour,
                alpha=0.2,
            )
            for name, style in styles.items():
                if name in curves["baselines"]:
                    value = curves["baselines"][name][str(k)]["mean"]
                    ax.axhline(value, ls=style, lw=1, color=colour, alpha=0.8)
            chosen = result.selected[k]
            if chosen["family"] == family:
                mean = series[layers.index(chosen["layer"])]["mean"]
                ax.plot([chosen["layer"]], [mean], "*", ms=12, color=colour, mec="black")
        ax.set_title(f"{family}: {FAMILY_LABELS[family]}", fontsize=9)
        ax.set_xlabel("layer (0 = embeddings)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("held-out top-1 accuracy")
    handles, _ = axes[0][0].get_legend_handles_labels()
    for name, style in styles.items():
        if name in curves["baselines"]:
            handles.append(Line2D([], [], ls=style, color="grey", label=name))
    axes[0][0].legend(handles=handles, fontsize=7, loc="upper left", ncol=2)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(
        path.with_suffix(".json"),
        {"curves": curves, "selected": {str(k): v for k, v in result.selected.items()}},
    )
    return path
