"""Figures. Each function draws one figure, saves it atomically, and writes the numbers
it shows as JSON beside it (same name, ``.json``), so a plot never stands without its data.

This module sits at the bottom of the package (it imports matplotlib and ``myopia.io``
only, never torch): figures specific to one measurement live beside it, as
``myopia.gradients.plots`` or ``myopia.drift.plots``, and import ``plt`` from here."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

# Files only, no display on servers and CI. Every module that draws imports ``plt`` from
# here, so the backend is chosen in this one place, before pyplot is first imported.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from myopia.io import atomic_write_json, save_figure  # noqa: E402


def plot_loss_curve(
    log: list[dict], path: Path, title: str, ylabel: str = "next-token loss (nats)"
) -> Path:
    """Training loss per step and evaluation loss where measured."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    ax.plot(
        [e["step"] for e in log],
        [e["train_loss"] for e in log],
        lw=1,
        alpha=0.8,
        label="train (batch)",
    )
    evals = [e for e in log if "eval_loss" in e]
    ax.plot([e["step"] for e in evals], [e["eval_loss"] for e in evals], "o-", label="eval")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(path.with_suffix(".json"), {"log": log})
    return path


MODE_COLOURS = {"normal": "C0", "kv": "C3", "residual": "C1", "bigram": "C7"}


def plot_losses_by_setting(
    settings: dict[str, dict[str, dict]],
    path: Path,
    title: str,
    ylabel: str,
    reference: dict[str, float] | None = None,
) -> Path:
    """Held-out loss per setting (x) and gradient mode (colour): mean and 95% CI over seeds,
    seeds as dots. ``settings[label][mode]`` is ``{"values": [...], "ci": Interval.to_dict()}``;
    ``reference[label]``, if given, is drawn as a dash (e.g. the trivial loss)."""
    path = Path(path)
    labels = list(settings)
    modes = list(dict.fromkeys(m for s in settings.values() for m in s))
    width = 0.8 / len(modes)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 + 1.6 * len(labels)), 3.8))
    for j, mode in enumerate(modes):
        for i, label in enumerate(labels):
            if mode not in settings[label]:
                continue
            entry = settings[label][mode]
            x = i + (j - (len(modes) - 1) / 2) * width
            ci = entry["ci"]
            low, high = ci["low"], ci["high"]
            err = [[ci["mean"] - low], [high - ci["mean"]]] if low > -1e300 else None
            ax.errorbar(
                x,
                ci["mean"],
                yerr=err,
                fmt="o",
                color=MODE_COLOURS.get(mode),
                capsize=3,
                label=mode if i == 0 else None,
            )
            ax.plot([x] * len(entry["values"]), entry["values"], ".", color="k", alpha=0.35, ms=4)
    for i, label in enumerate(labels):
        if reference and label in reference:
            ax.hlines(
                reference[label],
                i - 0.45,
                i + 0.45,
                colors="grey",
                linestyles="--",
                label="trivial" if i == 0 else None,
            )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel(ylabel)
    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(path.with_suffix(".json"), {"settings": settings, "reference": reference})
    return path


def plot_probe_r2(r2: dict[str, list[list[float]]], path: Path, title: str) -> Path:
    """Probe R² against lag i, one line per layer; one panel per gradient mode.
    ``r2[mode][layer][lag]``; layer 0 is the embedding."""
    path = Path(path)
    fig, axes = plt.subplots(1, len(r2), figsize=(3.4 * len(r2), 3.2), sharey=True, squeeze=False)
    for ax, (mode, table) in zip(axes[0], r2.items(), strict=True):
        for layer, row in enumerate(table):
            name = "embedding" if layer == 0 else f"after block {layer}"
            ax.plot(range(len(row)), row, "o-", ms=3, label=name)
        ax.set_title(f"gradient: {mode}", fontsize=9)
        ax.set_xlabel("lag i (target: sin(f·x[n−i]))")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("held-out R²")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(path.with_suffix(".json"), {"r2": r2})
    return path


def plot_loss_by_position(curves: dict[str, list[list[float]]], path: Path, title: str) -> Path:
    """Held-out next-token loss at each position, mean over seeds with a 95% CI band.
    ``curves[mode][seed][position]``; position 1 is the first predicted token."""
    from myopia.stats import mean_ci

    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    summary = {}
    for mode, per_seed in curves.items():
        intervals = [mean_ci(column) for column in zip(*per_seed, strict=True)]
        x = list(range(1, len(intervals) + 1))
        mean = [ci.mean for ci in intervals]
        ax.plot(x, mean, lw=1.2, color=MODE_COLOURS.get(mode), label=mode)
        if len(per_seed) > 1:
            ax.fill_between(
                x,
                [ci.low for ci in intervals],
                [ci.high for ci in intervals],
                color=MODE_COLOURS.get(mode),
                alpha=0.2,
            )
        summary[mode] = [ci.to_dict() for ci in intervals]
    ax.set_xscale("log")
    ax.set_xlabel("position of the predicted token")
    ax.set_ylabel("held-out loss (nats)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(path.with_suffix(".json"), {"curves": curves, "intervals": summary})
    return path
