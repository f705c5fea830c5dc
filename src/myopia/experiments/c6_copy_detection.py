"""C6: can a detector tell a quote copied from the context from an invented one?

Data (``myopia.faithfulness.quote_data``, seed ``ctx.seed``): passages of 4-5 consecutive
lines of the corpus's eval split, each with requests to quote the line that mentions a word: three
words that occur in the passage once, one that does not, in five rotating wordings. The
model (greedy) writes each quote after an opening quote mark; it stops at the closing
mark, a line break or ``max_new_tokens``. Labels are by exact match against the context
(whitespace-normalised, CLAIMS.md); quotes under 4 words are not labelled. A fuzzy match
(case and punctuation folded, 80% of the words in long matching blocks) gives a second
labelling that does not vote.

Detector and verdict, fixed before measuring. The detector is a logistic regression on
the lookback ratio (Lookback Lens, Chuang et al. 2024) of every (layer, head), averaged
over the quote's tokens. It is scored on contexts it never saw: contexts are dealt into 5
folds and every request is scored by the detector fitted on the other 4 folds. The
baseline is the single feature (any one head's lookback ratio, the quote's length in
tokens, or its mean log probability) with the best AUROC on the training folds, its sign
fixed there. CIs: 95% percentile cluster bootstrap over contexts, paired for the
difference.

Rule (CLAIMS.md C6): **supported** if the detector's held-out AUROC has its CI at or above
0.8 (low >= 0.8) and the paired difference detector - baseline has its CI above 0;
**refuted** if the AUROC CI lies below 0.8 or the difference CI lies below 0; otherwise
**inconclusive**, also when too few quotes of one label were produced to fit and test.

Reported, not voting: a residual-stream probe (the span-mean hidden state of the layer
chosen inside the training folds), the detector on fuzzy labels, the detector refitted on
shuffled labels (should sit at 0.5), and which heads carry the signal against the
induction heads found on repeated random tokens.
"""

from __future__ import annotations

from dataclasses import replace

from myopia.faithfulness.copy_detection import (
    CopyDetectionConfig,
    CopyDetectionResult,
    measure,
    plot_detector_aurocs,
    plot_head_signal,
)
from myopia.faithfulness.quote_data import PHRASINGS
from myopia.protocol import preset
from myopia.report.context import ReportContext
from myopia.report.registry import MEASURED, Plot, SectionResult, claim_rule, section
from myopia.report.verdicts import INCONCLUSIVE, NOT_RUN, REFUTED, SUPPORTED, Verdict
from myopia.stats import Interval

AUROC_THRESHOLD = 0.8


@section("C6", claim="C6", title="Copy or hallucination: a detector from lookback ratios")
def copy_detection(ctx: ReportContext) -> SectionResult:
    config = replace(preset(CopyDetectionConfig, ctx.quick), seed=ctx.seed)
    result = measure(
        ctx.model,
        ctx.tokenizer,
        config,
        documents=ctx.documents(),
        show_progress=ctx.config.show_progress,
    )
    out = ctx.section_dir("C6")
    model = ctx.config.model
    plots = []
    bars = plot_detector_aurocs(
        result,
        out / "detector_auroc.png",
        f"{model}: held-out AUROC, copied vs hallucinated quotes (95% cluster-bootstrap CI)",
        AUROC_THRESHOLD,
    )
    if bars is not None:
        plots.append(
            Plot(
                str(bars.relative_to(ctx.config.out)),
                "Held-out AUROC (hallucinated = positive) of the lookback-ratio detector, the "
                "best single feature chosen on the training folds, the residual-stream probe, "
                "the detector refitted on shuffled labels, and the detector on fuzzy labels; "
                "95% cluster-bootstrap CIs over contexts; dashed: the rule's 0.8.",
            )
        )
    heads = plot_head_signal(
        result,
        out / "head_signal.png",
        f"{model}: each head's lookback ratio alone, AUROC − 0.5; boxes: top induction heads",
    )
    if heads is not None:
        plots.append(
            Plot(
                str(heads.relative_to(ctx.config.out)),
                "Per (layer, query head): AUROC − 0.5 of that head's lookback ratio alone, over "
                "all labelled quotes (descriptive, not held out; blue: the head looks back at "
                "the context more when copying). Boxed: the top induction heads on repeated "
                "random tokens (TransformerLens's induction score).",
            )
        )
    numbers = {**result.to_dict(), "rule_threshold": AUROC_THRESHOLD}
    return SectionResult(
        summary=_summary(ctx, result),
        numbers=numbers,
        rows=_rows(result),
        plots=plots,
        notes=_notes(ctx, result),
        budget={
            "n_contexts": config.n_contexts,
            "n_present": config.n_present,
            "n_absent": config.n_absent,
            "lines": list(config.lines),
            "max_new_tokens": config.max_new_tokens,
            "n_folds": config.n_folds,
            "residual_layer_stride": config.residual_layer_stride,
            "n_requests": len(result.requests),
        },
    )


def _summary(ctx: ReportContext, result: CopyDetectionResult) -> str:
    counts = result.label_counts()["exact"]
    copied = sum(row.get("copied", 0) for row in counts.values())
    invented = sum(row.get("hallucinated", 0) for row in counts.values())
    head = (
        f"{ctx.config.model} was asked for {len(result.requests)} quotes from "
        f"{len({r.context_id for r in result.requests})} passages of {ctx.corpus_name()} "
        f"(the word asked about in the passage or not, {len(PHRASINGS)} wordings); by exact "
        f"match it copied {copied} and invented {invented}."
    )
    exact = result.exact
    if exact is None:
        return f"{head} The detectors could not be scored: {result.reasons.get('exact')}."
    return (
        f"{head} On contexts held out from training, the lookback-ratio detector reaches "
        f"AUROC {exact.lookback.text('.3f')}, the best single feature "
        f"{exact.baseline.text('.3f')} (difference {exact.difference.text('+.3f')}); "
        f"the detector refitted on shuffled labels scores {exact.shuffled.mean:.3f}."
    )


def _rows(result: CopyDetectionResult) -> list[dict]:
    rows = []
    for scheme, outcome in (("exact", result.exact), ("fuzzy", result.fuzzy)):
        if outcome is None:
            continue
        suffix = "" if scheme == "exact" else " (fuzzy labels; does not vote)"
        entries = [
            ("lookback-ratio detector", outcome.lookback),
            ("best single feature (chosen on training folds)", outcome.baseline),
            ("detector − best single feature", outcome.difference),
            ("residual-stream probe (does not vote)", outcome.residual),
            ("detector on shuffled labels (sanity check)", outcome.shuffled),
        ]
        for label, interval in entries:
            if interval is not None:
                spec = "+.3f" if "−" in label else ".3f"
                rows.append(
                    {
                        "labels": scheme,
                        "measure": label + suffix,
                        "held-out AUROC": interval.text(spec),
                        "copied / hallucinated": f"{outcome.n_copied} / {outcome.n_hallucinated}",
                    }
                )
    return rows


def _notes(ctx: ReportContext, result: CopyDetectionResult) -> list[str]:
    counts = result.label_counts()
    notes = [
        "Labels by request (exact): "
        + "; ".join(
            f"{kind} word: " + ", ".join(f"{n} {label}" for label, n in sorted(row.items()))
            for kind, row in counts["exact"].items()
        )
        + ". Fuzzy: "
        + "; ".join(
            f"{kind} word: " + ", ".join(f"{n} {label}" for label, n in sorted(row.items()))
            for kind, row in counts["fuzzy"].items()
        )
        + ". The label is what the quote is, not whether the right line was quoted: asked "
        "about an absent word the model sometimes copies some other line.",
        "Held out: contexts, not requests. Contexts are dealt into folds at random; every "
        "request is scored by detectors fitted without its context, and the penalty C, "
        "the residual layer and the baseline feature are chosen inside the training folds.",
        "The lookback ratio uses the whole prompt (passage and request) as context, as in "
        "Lookback Lens; the generated quote's own tokens (each query's own position "
        "included) are the new tokens.",
    ]
    if result.exact is not None:
        chosen = sorted(set(result.exact.chosen["baseline"]))
        notes.append(f"Baseline feature chosen per fold: {', '.join(chosen)}.")
    if result.overlap:
        o = result.overlap
        notes.append(
            f"Heads: rank correlation of |single-head AUROC − 0.5| with the induction score "
            f"{o['spearman']:+.2f}; {o['top_k_shared']} of the top {o['k']} signal heads are "
            f"top-{o['k']} induction heads ({o['expected_by_chance']:.1f} expected by chance)."
        )
    if ctx.quick:
        notes.insert(
            0,
            "Quick budget (a smoke run): few contexts, so the CIs are wide and the detector "
            "sees few training quotes; a verdict here says little.",
        )
    return notes


def copy_verdict(detector: Interval, difference: Interval) -> Verdict:
    """CLAIMS.md C6 on the held-out AUROC of the lookback detector and its paired
    difference from the best single-feature baseline."""
    described = (
        f"held-out AUROC {detector.text('.3f')}, detector − best single feature "
        f"{difference.text('+.3f')}"
    )
    if detector.low >= AUROC_THRESHOLD and difference.low > 0:
        return Verdict(SUPPORTED, f"{described}: AUROC CI at or above 0.8 and difference above 0")
    if detector.high < AUROC_THRESHOLD or difference.high < 0:
        return Verdict(REFUTED, f"{described}: AUROC CI below 0.8 or difference below 0")
    return Verdict(INCONCLUSIVE, f"{described}: a CI straddles its threshold")


@claim_rule("C6")
def c6_rule(results: dict[str, SectionResult]) -> Verdict:
    measured = results.get("C6")
    if measured is None or measured.status != MEASURED:
        return Verdict(NOT_RUN, "the copy-detection experiment (section C6) was not run")
    exact = measured.numbers.get("exact")
    if not exact:
        reason = measured.numbers.get("reasons", {}).get("exact", "no detector was scored")
        return Verdict(INCONCLUSIVE, f"too small to tell: {reason}")
    return copy_verdict(Interval(**exact["lookback"]), Interval(**exact["difference"]))
