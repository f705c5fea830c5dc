"""C5: linear probes from the hidden state at t (each layer) to the token at t + k.

Data: windows of the corpus's train split are drawn at random (seed ``ctx.seed``); the
first ``n_fit`` fit the probes, the next ``n_val`` choose among them, and all the other
train windows are the text on which the unigram and bigram baselines are counted. The
held-out windows come from the eval split (disjoint text), and score everything.

Probes (``myopia.lookahead``): two families of closed-form ridge probes, both linear in
the hidden state, over the ``n_classes`` most frequent tokens: "residual" (the bigram
table's distribution of x_{t+k} given x_t plus a linear function of h_t, so it measures
what h_t adds to token t) and "lens" (h_t mapped linearly to the final state at t + k - 1
and decoded by the model's own unembedding; at k = 1 from the last layer this is the
model's own prediction, the sanity check). Top-1 accuracy over all held-out positions; a
target outside the classes counts as wrong for the probes, while the baselines predict
over the whole vocabulary.

Multiple comparisons, fixed before measuring: at each k the (family, layer) with the
highest accuracy on the validation windows is the only probe scored for the verdict,
against the better of unigram and bigram on the same windows. The rule reads k = 2 only:
supported if that probe's held-out accuracy minus the baseline's has its 95% CI above 0
(refuted if below, inconclusive if it straddles 0). CIs: percentile bootstrap over
held-out windows (positions of one window share context, so they are not the unit),
paired for differences. The per-layer curves are description; their maximum over
layers is biased upward and is not used.

Two references that do not vote: "trigram" predicts from tokens t - 1 and t together
(a probe that beats the bigram but not the trigram may only know a two-token context, not
anything computed for later), and "model-chain" takes the model's own top-1 next token and
reads the bigram table from it for the remaining k - 1 steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from myopia.data.text import token_chunks, token_windows
from myopia.errors import MyopiaError
from myopia.io import atomic_write_json, save_figure
from myopia.lookahead import (
    REFERENCES,
    LookaheadConfig,
    LookaheadResult,
    measure_lookahead,
)
from myopia.plots import plt  # the one place that picks the file-only backend
from myopia.report.context import ReportContext
from myopia.report.registry import (
    MEASURED,
    Plot,
    SectionResult,
    claim_rule,
    section,
)
from myopia.report.verdicts import NOT_RUN, Verdict, compare_interval
from myopia.stats import Interval

RULE_OFFSET = 2
FULL = {
    "seq_len": 128,
    "n_fit": 64,
    "n_val": 24,
    "n_eval": 64,
    "n_classes": 1024,
    "layer_stride": 1,
    "train_documents": "all",
}
# A smoke run: a quarter of the documents for the train text, every third layer.
QUICK = {
    "seq_len": 64,
    "n_fit": 20,
    "n_val": 10,
    "n_eval": 20,
    "n_classes": 512,
    "layer_stride": 3,
    "train_documents": "every 4th",
}
FAMILY_LABELS = {"residual": "bigram + linear(h)", "lens": "linear map to final state"}
BASELINE_LABELS = {
    "unigram": "unigram",
    "bigram": "bigram (token t alone)",
    "trigram": "trigram (tokens t - 1 and t)",
    "model-chain": "model's next token, then bigram",
}


def _layers(n_states: int, stride: int) -> tuple[int, ...]:
    """Every ``stride``-th hidden state, always with the embedding and the last one."""
    return tuple(sorted({*range(0, n_states, stride), n_states - 1}))


def split_windows(ctx: ReportContext, budget: dict):
    """(fit, validation, baseline-table) windows of the train split, held-out windows of
    the eval split."""
    documents = ctx.documents()
    train_documents = documents if budget["train_documents"] == "all" else documents[::4]
    train = token_windows(train_documents, ctx.tokenizer, budget["seq_len"], "train")
    n_probe = budget["n_fit"] + budget["n_val"]
    if len(train) <= n_probe:
        raise MyopiaError(
            f"the train split has only {len(train)} windows of {budget['seq_len']} tokens; "
            f"C5 needs more than {n_probe}: give more text"
        )
    order = np.random.default_rng(ctx.seed).permutation(len(train))
    fit = train[order[: budget["n_fit"]]]
    val = train[order[budget["n_fit"] : n_probe]]
    table = train[np.sort(order[n_probe:])]
    held_out = token_chunks(
        documents, ctx.tokenizer, budget["seq_len"], budget["n_eval"], seed=ctx.seed
    )
    return fit, val, table, held_out


@section("C5", claim="C5", title="Future-token probes: the token at t + k from the state at t")
def future_token_probes(ctx: ReportContext) -> SectionResult:
    budget = QUICK if ctx.quick else FULL
    n_states = ctx.model_info["n_layers"] + 1
    config = LookaheadConfig(
        n_classes=budget["n_classes"],
        layers=_layers(n_states, budget["layer_stride"]),
        seed=ctx.seed,
    )
    fit, val, table, held_out = split_windows(ctx, budget)
    result = measure_lookahead(
        ctx.model, fit, val, held_out, table, config, show_progress=ctx.config.show_progress
    )
    out = ctx.section_dir("C5")
    curves = result.curves()
    plot = plot_lookahead(
        result,
        curves,
        out / "accuracy_by_layer.png",
        f"{ctx.config.model}: held-out top-1 accuracy of the token at t + k from the state "
        f"at t ({result.sizes['held_out_windows']} windows × "
        f"{result.sizes['positions_per_window']} positions, 95% bootstrap CI)",
    )

    per_k = {}
    for k in result.offsets:
        chosen = result.selected[k]
        per_k[str(k)] = {
            **chosen,
            "probe": result.selected_accuracy(k).to_dict(),
            "baseline_accuracy": result.baseline_accuracy(chosen["baseline"], k).to_dict(),
            "difference": result.selected_difference(k).to_dict(),
            "baselines": {
                name: result.baseline_accuracy(name, k).to_dict() for name in result.baseline_eval
            },
        }
    numbers = {**result.to_dict(), "per_k": per_k, "rule_offset": RULE_OFFSET, "curves": curves}

    rows, phrases = [], []
    for k in result.offsets:
        entry = per_k[str(k)]
        probe, base, diff = (
            Interval(**entry[key]) for key in ("probe", "baseline_accuracy", "difference")
        )
        label = f"{entry['family']} probe, layer {entry['layer']}"
        rows.append(
            {
                "k": k,
                "predictor": f"{label} (chosen on validation)",
                "held-out top-1 accuracy": probe.text(".3f"),
                "minus the best baseline": f"{diff.text('+.3f')} vs {entry['baseline']}",
            }
        )
        for name, interval in entry["baselines"].items():
            rows.append(
                {
                    "k": k,
                    "predictor": BASELINE_LABELS[name]
                    + (" (reference; does not vote)" if name in REFERENCES else ""),
                    "held-out top-1 accuracy": Interval(**interval).text(".3f"),
                    "minus the best baseline": "",
                }
            )
        phrases.append(
            f"at k = {k} the {label} reaches {probe.mean:.3f} against {base.mean:.3f} for the "
            f"{entry['baseline']} baseline (difference {diff.text('+.3f')})"
        )
    own = per_k["1"]["baselines"].get("model-chain") if "1" in per_k else None
    low, high = (f"{c:.0%}" for c in (result.coverage.min(), result.coverage.max()))
    coverage = low if low == high else f"{low}–{high}"
    summary = (
        f"Linear probes read the token at t + k from the hidden state at t of "
        f"{ctx.config.model}, on {ctx.corpus_name()}: fitted on {len(fit)} train windows, "
        f"chosen on {len(val)} others, scored on {len(held_out)} held-out windows of "
        f"{budget['seq_len']} tokens, over the {result.n_classes} most frequent tokens "
        f"(which hold {coverage} of the targets). With the probe and the baseline chosen on "
        "the validation windows, "
        + "; ".join(phrases)
        + ". "
        + (
            f"The model's own next-token prediction scores {own['mean']:.3f} at k = 1. "
            if own
            else ""
        )
        + f"The verdict reads k = {RULE_OFFSET} only: one probe against one baseline."
        + _context_caveat(per_k.get(str(RULE_OFFSET)))
    )
    references = per_k.get(str(RULE_OFFSET), {}).get("baselines", {})
    notes = [
        "Probes are ridge regressions in closed form (penalty by generalised "
        "cross-validation on the fitting positions). 'residual' = the bigram table's "
        "distribution of x_{t+k} given x_t plus a linear function of h_t; 'lens' = h_t mapped "
        "linearly to the final state at t + k − 1, decoded by the model's unembedding. Both are "
        "linear in h_t; a plain linear probe without the table would have to relearn the "
        "bigram statistics from a few thousand positions.",
        "Baselines are counted on the train windows not used by the probes "
        f"({len(table)} windows); a target outside the probe's {result.n_classes} classes "
        "counts as wrong for the probes, but the baselines predict over the whole vocabulary.",
        "CIs: 95% percentile bootstrap over held-out windows, paired for differences. The "
        "per-layer curves are descriptive: their maximum over layers is biased upward.",
        "For scale: Future Lens (Pal et al. 2023) reports over 48% with a learned prompt on "
        "GPT-J-6B against a 20.1% bigram baseline, and lower numbers for linear methods.",
    ]
    if ctx.quick:
        notes.insert(
            0,
            f"Quick budget (a smoke run): the probes are fitted on "
            f"{len(fit) * result.sizes['positions_per_window']} positions, a fraction of the "
            "full run's, and see a quarter of the documents; a verdict here says little.",
        )
    for name in REFERENCES:
        if name in references:
            notes.append(
                f"Reference that does not vote, at k = {RULE_OFFSET}: {BASELINE_LABELS[name]} "
                f"scores {Interval(**references[name]).text('.3f')}."
            )
    return SectionResult(
        summary=summary,
        numbers=numbers,
        rows=rows,
        plots=[
            Plot(
                str(plot.relative_to(ctx.config.out)),
                "Held-out top-1 accuracy per layer (0 = embeddings), one colour per k, 95% "
                "bootstrap bands (marginal: the paired differences in the table are narrower); "
                "dashed: bigram baseline, dotted: unigram, dash-dot: trigram (a reference that "
                "does not vote); stars: the probes chosen on validation.",
            )
        ],
        notes=notes,
        budget={
            **budget,
            "layers": list(result.layers),
            "baseline_windows": len(table),
            "text": "train split for fitting, validation and baselines; eval split held out",
        },
    )


def _context_caveat(entry: dict | None) -> str:
    """A sentence comparing the verdict's probe with the trigram reference, which knows
    token t - 1 as well: the rule's baseline knows token t alone."""
    if not entry or "trigram" not in entry["baselines"]:
        return ""
    probe, trigram = Interval(**entry["probe"]), Interval(**entry["baselines"]["trigram"])
    if trigram.mean > probe.mean:
        relation = (
            "above the probe, so what the probe reads beyond token t is less than what "
            "two tokens of context give; it shows information about later tokens in the state, "
            "not that the state holds more than the recent context"
        )
    else:
        relation = "at or below the probe"
    return (
        f" For context, a trigram table (tokens t - 1 and t; a reference that does not vote) "
        f"reaches {trigram.mean:.3f} at k = {RULE_OFFSET}, {relation}."
    )


def plot_lookahead(result: LookaheadResult, curves: dict, path: Path, title: str) -> Path:
    """One panel per probe family: accuracy against layer, one line per k with its CI
    band, the baselines as horizontal lines in the same colour."""
    path = Path(path)
    families = result.families
    fig, axes = plt.subplots(
        1, len(families), figsize=(5.2 * len(families), 3.8), sharey=True, squeeze=False
    )
    styles = {"bigram": "--", "unigram": ":", "trigram": "-."}
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


def lookahead_verdict(difference: Interval) -> Verdict:
    """CLAIMS.md C5: supported if the probe beats the baseline at k = 2 with the CI of the
    difference excluding 0 (above it); refuted if the CI lies below 0; else inconclusive."""
    return compare_interval(
        difference,
        0.0,
        f"held-out top-1 accuracy at k = {RULE_OFFSET}, validation-chosen probe − baseline",
    )


@claim_rule("C5")
def c5_rule(results: dict[str, SectionResult]) -> Verdict:
    measured = results.get("C5")
    if measured is None or measured.status != MEASURED:
        return Verdict(NOT_RUN, "the future-token probes (section C5) were not run")
    entry = measured.numbers.get("per_k", {}).get(str(RULE_OFFSET))
    if entry is None:
        return Verdict(NOT_RUN, f"section C5 did not measure k = {RULE_OFFSET}")
    return lookahead_verdict(Interval(**entry["difference"]))
