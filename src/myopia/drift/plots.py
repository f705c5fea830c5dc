"""Plots of a drift measurement, each saved with its data as JSON beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from myopia.drift.measure import DriftResult
from myopia.io import atomic_write_json, save_figure
from myopia.plots import plt  # the one place that picks the file-only backend


def plot_nll_by_position(result: DriftResult, path: Path, model_name: str) -> Path:
    curves = result.nll_by_position()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, colour in (("natural", "C0"), ("generated", "C3")):
        series = curves[name]
        x = np.arange(1, len(series) + 1)
        ax.plot(x, [c["mean"] for c in series], color=colour, label=name)
        ax.fill_between(
            x, [c["low"] for c in series], [c["high"] for c in series], color=colour, alpha=0.2
        )
    ax.set_xlabel("continuation position (tokens generated so far + 1)")
    ax.set_ylabel("NLL under the model (nats)")
    ax.set_title(f"{model_name}: natural vs self-generated continuations", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(path.with_suffix(".json"), curves)
    return path


def plot_probe_accuracy(
    result: DriftResult, path: Path, model_name: str, threshold: float | None = None
) -> Path:
    """Held-out probe accuracy by generated length with 95% CIs; ``threshold`` (a verdict
    rule's) is drawn dashed when given."""
    lengths = sorted(result.accuracy)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    means = [result.accuracy[k].mean for k in lengths]
    lows = [result.accuracy[k].mean - result.accuracy[k].low for k in lengths]
    highs = [result.accuracy[k].high - result.accuracy[k].mean for k in lengths]
    ax.errorbar(lengths, means, yerr=[lows, highs], fmt="o-", capsize=3, label="natural vs own")
    if result.control is not None:
        c = result.control
        ax.errorbar(
            [lengths[-1]], [c.mean], yerr=[[c.mean - c.low], [c.high - c.mean]],
            fmt="s", color="C2", capsize=3, label="control: natural vs natural",
        )  # fmt: skip
        ax.legend(fontsize=8, loc="lower right")
    if threshold is not None:
        ax.axhline(threshold, ls="--", color="grey", lw=1)
    ax.axhline(0.5, ls=":", color="grey", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [str(k) for k in lengths])
    ax.set_xlabel(f"k: the probe reads the {result.config.window} tokens ending at token k")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0.3, 1.02)
    ax.set_title(f"{model_name}: telling self-generated from natural text", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(
        path.with_suffix(".json"),
        {
            "accuracy": {str(k): result.accuracy[k].to_dict() for k in lengths},
            "layer": {str(k): result.layer[k] for k in lengths},
            "rise": result.rise.to_dict(),
            "control": None if result.control is None else result.control.to_dict(),
        },
    )
    return path
