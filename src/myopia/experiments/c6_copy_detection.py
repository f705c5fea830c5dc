"""C6: can a detector tell a quote copied from the context from an invented one?

Data (``myopia.faithfulness.quote_data``, seed ``ctx.seed``): passages of 4-5 consecutive
lines of the corpus's eval split, each with requests to quote the line that mentions a word: three
words that occur in the passage once, one that does not, in five rotating wordings. The
model (greedy) writes each quote after an opening quote mark; it stops at the closing
mark, a line break or ``max_new_tokens``. Labels are by exact match against the context
(whitespace-normalised, CLAIMS.md); quotes under 4 words are not labelled. A fuzzy match
(case and punctuation folded, 80% of the words in long matching blocks) gives a second
labelling that does not vote.

Detector, baselines and verdict (CLAIMS.md v2), fixed before measuring. The detector is a
logistic regression on the lookback ratio (Lookback Lens, Chuang et al. 2024) of every
(layer, head), averaged over the quote's tokens. It is scored on contexts it never saw:
contexts are dealt into 5 folds and every request is scored by the detector fitted on the
other 4 folds. Two baselines, both held out the same way: the best single feature (any one
head's lookback ratio, or one output-only feature, chosen with its sign on the training
folds) and an output-only logistic model (quote length in tokens, mean log probability,
mean entropy: what anyone sees without opening the model). CIs: 95% percentile cluster
bootstrap over contexts, paired for the differences. The AUROC is also given per request
type (word present in the passage or absent).

Control: the detector refitted on 20 independent shufflings of the labels; the 95% t
interval of their mean held-out AUROC must contain 0.5, else the instrument fails (a leak
between folds would show here) and the verdict is inconclusive. (Until 2026-12-02 one
shuffling with its context-bootstrap CI; that CI leaves out the shuffle's own randomness
and is too narrow, so a sound pipeline failed about one time in seven: seed 7 did, 0.414.)

Rule: **supported** if the held-out AUROC CI lies above 0.8 and the detector beats both
baselines (paired-difference CIs above 0); **refuted** if the AUROC CI lies below 0.7;
otherwise **inconclusive**, also when too few quotes of one label were produced.

Nothing here reads verse: a passage is any text, a quote is labelled by exact match of
its words against the passage (whitespace folded), and ``myopia detect-copy --data`` runs
the same detector on a user's prose passages (``tests/data/prose_quotes.jsonl``).

Reported, not voting: a residual-stream probe (the span-mean hidden state of the layer
chosen inside the training folds), the detector on fuzzy labels, the detector refitted on
shuffled labels (should sit at 0.5), and which heads carry the signal against the
induction heads found on repeated random tokens.
"""

from __future__ import annotations

from dataclasses import replace

from myopia.faithfulness.copy_detection import (
    ContextFit,
    CopyDetectionConfig,
    CopyDetectionResult,
    NothingFits,
    measure,
    plot_detector_aurocs,
    plot_head_signal,
)
from myopia.faithfulness.quote_data import PHRASINGS
from myopia.protocol import preset
from myopia.report.context import ReportContext
from myopia.report.registry import (
    MEASURED,
    NOT_MEASURED,
    Plot,
    SectionResult,
    claim_rule,
    section,
)
from myopia.report.verdicts import (
    INCONCLUSIVE,
    NOT_RUN,
    REFUTED,
    SUPPORTED,
    Control,
    Verdict,
    with_control,
)
from myopia.stats import Interval

AUROC_THRESHOLD = 0.8  # supported above this
REFUTE_THRESHOLD = 0.7  # refuted below this


@section("C6", claim="C6", title="Copy or hallucination: a detector from lookback ratios")
def copy_detection(ctx: ReportContext) -> SectionResult:
    config = replace(preset(CopyDetectionConfig, ctx.quick), seed=ctx.seed)
    try:
        result = measure(
            ctx.model,
            ctx.tokenizer,
            config,
            documents=ctx.documents(),
            show_progress=ctx.config.show_progress,
            workers=ctx.workers,
        )
    except NothingFits as error:  # a small model's context holds no passage
        return _not_run(ctx, config, error.fit, 0)
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
    numbers = {
        **result.to_dict(),
        "rule_threshold": AUROC_THRESHOLD,
        "refute_threshold": REFUTE_THRESHOLD,
    }
    return SectionResult(
        summary=_summary(ctx, result),
        numbers=numbers,
        rows=_rows(result),
        plots=plots,
        notes=_notes(ctx, result),
        budget={**_budget(config), "n_requests": len(result.requests)},
    )


def _budget(config: CopyDetectionConfig) -> dict:
    return {
        "n_contexts": config.n_contexts,
        "n_present": config.n_present,
        "n_absent": config.n_absent,
        "lines": list(config.lines),
        "max_new_tokens": config.max_new_tokens,
        "n_folds": config.n_folds,
        "residual_layer_stride": config.residual_layer_stride,
    }


def _not_run(
    ctx: ReportContext, config: CopyDetectionConfig, fit: ContextFit, passages: int
) -> SectionResult:
    """The section when too few passages fit the model's context to hold detectors out."""
    reason = (
        f"the passages do not fit the model's context: {fit.reason()}, leaving {passages} "
        f"passage(s), fewer than the {config.n_folds} folds the detectors are held out on"
    )
    return SectionResult(
        summary=f"Not run on {ctx.config.model}: {reason}.",
        numbers={
            "not_run": reason,
            "n_requests_made": len(fit.prompt_tokens),
            "dropped": fit.to_dict(),
        },
        budget={**_budget(config), "n_requests": len(fit.kept)},
        status=NOT_MEASURED,
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
    if result.dropped.get("n"):
        head += f" Left out before generating: {result.dropped['reason']}."
    exact = result.exact
    if exact is None:
        return f"{head} The detectors could not be scored: {result.reasons.get('exact')}."
    return (
        f"{head} On contexts held out from training, the lookback-ratio detector reaches "
        f"AUROC {exact.lookback.text('.3f')}, the best single feature "
        f"{exact.baseline.text('.3f')} (difference {exact.difference.text('+.3f')}), the "
        f"output-only model (length, log-probability, entropy) "
        f"{exact.output_only.text('.3f')} (difference "
        f"{exact.difference_output.text('+.3f')}); the control, the detector refitted on "
        f"{exact.shuffled.n} shufflings of the labels, scores {exact.shuffled.text('.3f')} "
        f"on average."
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
            ("output only: length, log-prob, entropy", outcome.output_only),
            ("detector − output only", outcome.difference_output),
            ("residual-stream probe (does not vote)", outcome.residual),
            ("detector on shuffled labels, mean of the shufflings (the control)", outcome.shuffled),
        ]
        entries += [
            (f"detector, {kind}-word requests only", value)
            for kind, value in outcome.by_type.items()
            if value is not None
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
        notes.append(
            "AUROC per request type (the same held-out scores, within one type): "
            + "; ".join(
                f"{kind} word {value.text('.3f')}"
                if value is not None
                else f"{kind} word: not estimable (almost all quotes have one label)"
                for kind, value in result.exact.by_type.items()
            )
            + ". Within a type the detector cannot lean on the request's wording alone."
        )
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


def copy_verdict(detector: Interval, vs_single: Interval, vs_output: Interval) -> Verdict:
    """CLAIMS.md C6 (v2) on the held-out AUROC of the lookback detector and its paired
    differences from the best single feature and from the output-only model."""
    described = (
        f"held-out AUROC {detector.text('.3f')}, detector − best single feature "
        f"{vs_single.text('+.3f')}, detector − output only {vs_output.text('+.3f')}"
    )
    if detector.low > AUROC_THRESHOLD and vs_single.low > 0 and vs_output.low > 0:
        return Verdict(SUPPORTED, f"{described}: AUROC CI above 0.8 and both differences above 0")
    if detector.high < REFUTE_THRESHOLD:
        return Verdict(REFUTED, f"{described}: AUROC CI below {REFUTE_THRESHOLD:g}")
    return Verdict(
        INCONCLUSIVE,
        f"{described}: neither above 0.8 while beating both baselines nor below "
        f"{REFUTE_THRESHOLD:g}",
    )


def shuffled_control(shuffled: Interval) -> Control:
    """The detector refitted on shuffled labels must sit at chance: the CI of its mean
    AUROC over the shufflings contains 0.5."""
    passed = shuffled.low <= 0.5 <= shuffled.high
    return Control(
        passed,
        f"detector refitted on {shuffled.n} shufflings of the labels: mean held-out AUROC "
        f"{shuffled.text('.3f')}, " + ("contains 0.5" if passed else "excludes 0.5"),
    )


@claim_rule("C6")
def c6_rule(results: dict[str, SectionResult]) -> Verdict:
    measured = results.get("C6")
    if measured is not None and measured.numbers.get("not_run"):
        return Verdict(NOT_RUN, f"section C6 was not run: {measured.numbers['not_run']}")
    if measured is None or measured.status != MEASURED:
        return Verdict(NOT_RUN, "the copy-detection experiment (section C6) was not run")
    exact = measured.numbers.get("exact")
    if not exact:
        reason = measured.numbers.get("reasons", {}).get("exact", "no detector was scored")
        return with_control(
            Verdict(INCONCLUSIVE, f"too small to tell: {reason}"),
            Control(False, "no detector was scored, so the shuffled-label control was not run"),
        )
    verdict = copy_verdict(
        Interval.from_dict(exact["lookback"]),
        Interval.from_dict(exact["difference"]),
        Interval.from_dict(exact["difference_output"]),
    )
    return with_control(verdict, shuffled_control(Interval.from_dict(exact["shuffled"])))
