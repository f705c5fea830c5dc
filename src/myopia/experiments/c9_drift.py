"""C9: pure self-generation drifts off the distribution of natural text, and the model's
state can tell.

Data: windows of the corpus's eval split, each a ``prompt_len``-token prompt and its
natural continuation; the model continues every prompt by pure sampling (temperature 1)
for as many tokens (``myopia.drift``). Measurements: per-position NLL of both
continuations under the model, and a linear probe on the model's hidden states (mean over
the first k continuation tokens, layer chosen on train prompts) that tells
self-generated from natural, scored on held-out prompts, for each k.

Verdict rule (CLAIMS.md C9), fixed before measuring: supported if the probe's held-out
accuracy at the longest k has its 95% CI above 0.7 AND the paired rise accuracy(longest
k) − accuracy(k = 1) has its CI above 0; refuted if the accuracy CI at the longest k lies
below 0.7 or the rise CI lies below 0; otherwise inconclusive. CIs are percentile
bootstraps over held-out prompts.
"""

from __future__ import annotations

from dataclasses import replace

from myopia.drift.measure import DriftConfig, DriftResult, measure
from myopia.drift.plots import plot_nll_by_position, plot_probe_accuracy
from myopia.protocol import preset
from myopia.report.context import ReportContext
from myopia.report.registry import MEASURED, Plot, SectionResult, claim_rule, section
from myopia.report.verdicts import INCONCLUSIVE, NOT_RUN, REFUTED, SUPPORTED, Verdict
from myopia.stats import Interval, mean_ci

ACCURACY_THRESHOLD = 0.7


def drift_config(quick: bool, seed: int) -> DriftConfig:
    """What section C9 measures: the report's preset at the report's seed."""
    return replace(preset(DriftConfig, quick), seed=seed)


def drift_verdict(longest: Interval, rise: Interval, k: int) -> Verdict:
    """CLAIMS.md C9 on measured intervals (see the module docstring)."""
    described = (
        f"held-out probe accuracy after {k} generated tokens = {longest.text('.3f')}; "
        f"rise from 1 token = {rise.text('+.3f')}"
    )
    if longest.low > ACCURACY_THRESHOLD and rise.low > 0:
        return Verdict(SUPPORTED, f"{described}: above {ACCURACY_THRESHOLD} and rising")
    if longest.high < ACCURACY_THRESHOLD or rise.high < 0:
        return Verdict(REFUTED, f"{described}: below {ACCURACY_THRESHOLD} or falling")
    return Verdict(INCONCLUSIVE, f"{described}: a CI straddles its threshold")


@section("C9", claim="C9", title="Self-generation drift: NLL by position and a probe")
def self_generation_drift(ctx: ReportContext) -> SectionResult:
    config = drift_config(ctx.quick, ctx.seed)
    result = measure(
        ctx.model, ctx.tokenizer, config, ctx.documents(), show_progress=ctx.config.show_progress
    )
    out = ctx.section_dir("C9")
    numbers = result.to_dict()
    nll_plot = plot_nll_by_position(result, out / "nll_by_position.png", ctx.config.model)
    probe_plot = plot_probe_accuracy(
        result, out / "probe_accuracy.png", ctx.config.model, threshold=ACCURACY_THRESHOLD
    )

    longest = max(config.lengths)
    accuracy, rise = result.accuracy[longest], result.rise
    gap = Interval(**numbers["mean_nll"]["natural_minus_generated"])
    rows = [
        {
            "label": f"probe accuracy after {k} generated token{'s' if k > 1 else ''} "
            f"(layer {result.layer[k]})",
            "value": f"{result.accuracy[k].mean:.3f}",
            "ci": f"[{result.accuracy[k].low:.3f}, {result.accuracy[k].high:.3f}]",
        }
        for k in config.lengths
    ]
    rows += [
        {
            "label": f"rise: accuracy after {longest} − after 1 token (paired)",
            "value": f"{rise.mean:+.3f}",
            "ci": f"[{rise.low:+.3f}, {rise.high:+.3f}]",
        },
        {
            "label": "mean NLL per token, natural − self-generated continuation",
            "value": f"{gap.mean:+.3f}",
            "ci": f"[{gap.low:+.3f}, {gap.high:+.3f}]",
        },
    ]
    early, late = _nll_gap_early_late(result)
    summary = (
        f"{config.n_prompts} prompts of {config.prompt_len} tokens from {ctx.corpus_name()}, "
        f"each continued by the text itself and by the model's own sample (temperature 1) for "
        f"{config.continuation_len} tokens. A linear probe on the model's hidden states tells "
        f"the two apart on held-out prompts with accuracy {accuracy.text('.3f')} after "
        f"{longest} tokens, against {result.accuracy[min(config.lengths)].text('.3f')} after "
        f"1 (rise {rise.text('+.3f')}). The model finds its own text more likely: per-token "
        f"NLL natural − generated = {gap.text('+.3f')}; over the first quarter of positions "
        f"{early.text('+.3f')}, over the last quarter {late.text('+.3f')}."
    )
    notes = [
        "The samples are pure generation at temperature 1 with no top-p, so the expected NLL "
        "of the model's own tokens is its entropy; the end-of-text token is suppressed so "
        "that every continuation has the full length.",
        f"Probe: standardised logistic regression (C = 0.05) on the mean hidden state over the "
        f"first k continuation tokens; the layer is chosen per k by {config.cv_folds}-fold "
        f"cross-validation grouped by prompt on the {result.n_train} train prompts; accuracy "
        f"is scored on the other {result.n_test} prompts (both versions of each), with 95% "
        "percentile-bootstrap CIs over those prompts.",
        "The probe may read any difference between the model's samples and the corpus "
        "(style, spelling, how likely the text is), not only accumulated errors: the NLL "
        "curves show which positions carry the difference.",
    ]
    if ctx.quick:
        notes.insert(0, "Quick budget (a smoke run): few prompts and short continuations.")
    return SectionResult(
        summary=summary,
        numbers=numbers,
        rows=rows,
        plots=[
            Plot(
                str(nll_plot.relative_to(ctx.config.out)),
                "Per-token NLL under the model at each continuation position, natural text "
                "and the model's own samples, with 95% t bands over prompts.",
            ),
            Plot(
                str(probe_plot.relative_to(ctx.config.out)),
                "Held-out accuracy of the probe telling self-generated from natural text, "
                f"by the number of generated tokens it sees (95% bootstrap CI); dashed: "
                f"{ACCURACY_THRESHOLD}, the rule's threshold; dotted: chance.",
            ),
        ],
        notes=notes,
        budget={
            "prompts": config.n_prompts,
            "prompt_tokens": config.prompt_len,
            "continuation_tokens": config.continuation_len,
            "probe_lengths": list(config.lengths),
            "text": "eval split",
        },
    )


def _nll_gap_early_late(result: DriftResult) -> tuple[Interval, Interval]:
    """Mean NLL gap (natural − generated) over the first and the last quarter of positions."""
    gap = result.nll_natural - result.nll_generated  # (N, L)
    quarter = max(1, gap.shape[1] // 4)
    return mean_ci(gap[:, :quarter].mean(1)), mean_ci(gap[:, -quarter:].mean(1))


@claim_rule("C9")
def c9_rule(results: dict[str, SectionResult]) -> Verdict:
    measured = results.get("C9")
    if measured is None or measured.status != MEASURED:
        return Verdict(NOT_RUN, "the drift measurement (section C9) was not run")
    accuracy = measured.numbers["accuracy"]
    longest = max(accuracy, key=int)
    return drift_verdict(
        Interval(**accuracy[longest]), Interval(**measured.numbers["rise"]), int(longest)
    )
