"""The gradient split's figure: the future share of the gradient norm per layer."""

from __future__ import annotations

from pathlib import Path

from myopia.gradients.future_share import KINDS, FutureShareResult
from myopia.io import atomic_write_json, save_figure
from myopia.plots import plt  # the one place that picks the file-only backend


def plot_future_share(result: FutureShareResult, path: Path, title: str) -> Path:
    """Future share of the gradient norm per layer, with 95% CIs over sequences."""
    path = Path(path)
    intervals = result.group_intervals()
    groups = result.groups
    x = list(range(len(groups)))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(groups) + 2), 3.8))
    means = [intervals[g].mean for g in groups]
    lows = [intervals[g].mean - intervals[g].low for g in groups]
    highs = [intervals[g].high - intervals[g].mean for g in groups]
    ax.errorbar(
        x,
        means,
        yerr=[lows, highs],
        fmt="o-",
        color="black",
        capsize=2,
        label="all parameters of the group",
    )
    if result.reference is not None:
        reference = result.reference.group_intervals()
        xs = [i for i, g in enumerate(groups) if g in reference]
        ax.errorbar(
            xs,
            [reference[groups[i]].mean for i in xs],
            yerr=[
                [reference[groups[i]].mean - reference[groups[i]].low for i in xs],
                [reference[groups[i]].high - reference[groups[i]].mean for i in xs],
            ],
            fmt="o--",
            color="tab:red",
            capsize=2,
            label="same architecture at random initialisation",
        )
    markers = {"attention": "s", "mlp": "^"}
    for kind in KINDS:
        kind_ci = result.kind_intervals(kind)
        xs = [i for i, g in enumerate(groups) if g in kind_ci]
        ax.plot(
            xs,
            [kind_ci[groups[i]].mean for i in xs],
            markers[kind],
            alpha=0.6,
            label=f"{kind} parameters",
        )
    short = [g.removeprefix("layer ") for g in groups]
    ax.set_xticks(x, short, rotation=90 if len(groups) > 12 else 0, fontsize=8)
    ax.set_xlabel("parameter group (layer index)")
    ax.set_ylabel("future share  |f| / (|c| + |f|)")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(path.with_suffix(".json"), result.to_dict())
    return path
