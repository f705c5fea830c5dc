"""C9: pure self-generation drifts off the distribution of natural text, and the model's
state can tell.

Data: windows of the corpus's eval split drawn by the report's seed (the verdict seed
20261201 by default; design used pilot seeds 1, 2, 3 only), each a ``prompt_len``-token
prompt and its natural continuation; the model continues every prompt by pure sampling
(temperature 1) for as many tokens (``myopia.drift``). Measurements: per-position NLL of
both continuations under the model, the slope of their gap against position, and a linear
probe on the mean hidden state over a fixed window of 8 tokens ending at token k (layer
chosen on train prompts) that tells self-generated from natural, scored on held-out
prompts, for k = 8, 16, 32, 64.

Control (CLAIMS.md v2): the same probe telling natural continuations from natural
continuations of other windows of the same text; it must stay at chance (95% CI
containing 0.5), else the verdict is inconclusive.

Verdict rule (CLAIMS.md v2 C9), fixed before measuring: supported if the probe's held-out
accuracy at k = 64 (the longest k) has its 95% CI above 0.7 AND the paired rise
accuracy(64) − accuracy(8) has its CI above 0; refuted if the accuracy CI at k = 64 lies
below 0.6; otherwise inconclusive. CIs are percentile bootstraps over held-out prompts.
"""

from __future__ import annotations

from dataclasses import replace

from myopia.drift.measure import DriftConfig, measure
from myopia.drift.plots import plot_nll_by_position, plot_probe_accuracy
from myopia.protocol import preset
from myopia.report.context import ReportContext
from myopia.report.registry import MEASURED, Plot, SectionResult, claim_rule, section
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

ACCURACY_THRESHOLD = 0.7  # supported above this
REFUTED_BELOW = 0.6  # refuted below this
CHANCE = 0.5


def drift_config(quick: bool, seed: int) -> DriftConfig:
    """What section C9 measures: the report's preset at the report's seed."""
    return replace(preset(DriftConfig, quick), seed=seed)


def drift_verdict(longest: Interval, rise: Interval, k: int, shortest: int = 8) -> Verdict:
    """CLAIMS.md v2 C9 on measured intervals (see the module docstring)."""
    described = (
        f"held-out probe accuracy on the window ending at token {k} = {longest.text('.3f')}; "
        f"rise from k = {shortest} = {rise.text('+.3f')}"
    )
    if longest.low > ACCURACY_THRESHOLD and rise.low > 0:
        return Verdict(SUPPORTED, f"{described}: above {ACCURACY_THRESHOLD} and rising")
    if longest.high < REFUTED_BELOW:
        return Verdict(REFUTED, f"{described}: the accuracy lies below {REFUTED_BELOW}")
    return Verdict(
        INCONCLUSIVE,
        f"{described}: not both above {ACCURACY_THRESHOLD} and rising, nor below {REFUTED_BELOW}",
    )


def drift_control(control: Interval | None) -> Control:
    """Natural vs natural must be at chance: its CI contains 0.5."""
    if control is None:
        return Control(False, "the natural-vs-natural control was not measured")
    passed = control.low <= CHANCE <= control.high
    return Control(
        passed,
        f"natural vs natural probe accuracy {control.text('.3f')} "
        + ("contains" if passed else "excludes")
        + f" chance ({CHANCE})",
    )


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

    longest, shortest = max(config.lengths), min(config.lengths)
    accuracy, rise = result.accuracy[longest], result.rise
    gap = Interval.from_dict(numbers["mean_nll"]["natural_minus_generated"])
    slope = result.gap_slope()
    early, late = result.gap_quarters()
    rows = [
        {
            "label": f"probe accuracy, window of {config.window} tokens ending at token {k} "
            f"(layer {result.layer[k]})",
            "value": f"{result.accuracy[k].mean:.3f}",
            "ci": f"[{result.accuracy[k].low:.3f}, {result.accuracy[k].high:.3f}]",
        }
        for k in config.lengths
    ]
    rows += [
        {
            "label": f"rise: accuracy at k = {longest} − at k = {shortest} (paired)",
            "value": f"{rise.mean:+.3f}",
            "ci": f"[{rise.low:+.3f}, {rise.high:+.3f}]",
        },
    ]
    if result.control is not None:
        rows.append(
            {
                "label": f"control: natural vs natural, k = {longest} "
                f"(layer {result.control_layer}); chance is 0.5",
                "value": f"{result.control.mean:.3f}",
                "ci": f"[{result.control.low:.3f}, {result.control.high:.3f}]",
            }
        )
    for label, value in (
        ("mean NLL per token, natural − self-generated continuation", gap),
        ("NLL gap over the first quarter of positions", early),
        ("NLL gap over the last quarter of positions", late),
        ("slope of the NLL gap against position (nats per token)", slope),
    ):
        fmt = "+.4f" if value is slope else "+.3f"
        rows.append(
            {
                "label": label,
                "value": format(value.mean, fmt),
                "ci": f"[{format(value.low, fmt)}, {format(value.high, fmt)}]",
            }
        )
    control = result.control
    summary = (
        f"{config.n_prompts} prompts of {config.prompt_len} tokens from {ctx.corpus_name()}, "
        f"each continued by the text itself and by the model's own sample (temperature 1) for "
        f"{config.continuation_len} tokens. A linear probe on the mean hidden state over the "
        f"{config.window} tokens ending at token k tells the two apart on held-out prompts "
        f"with accuracy {accuracy.text('.3f')} at k = {longest}, against "
        f"{result.accuracy[shortest].text('.3f')} at k = {shortest} (rise "
        f"{rise.text('+.3f')}); the same probe telling natural text from other natural "
        f"text scores {control.text('.3f') if control else 'not measured'} (chance 0.5). "
        f"The model finds its own text more likely: per-token NLL natural − generated = "
        f"{gap.text('+.3f')}; over the first quarter of positions {early.text('+.3f')}, over "
        f"the last quarter {late.text('+.3f')}; slope against position "
        f"{slope.text('+.4f')} nats per token."
    )
    notes = [
        "The samples are pure generation at temperature 1 with no top-p, so the expected NLL "
        "of the model's own tokens is its entropy; the end-of-text token is suppressed so "
        "that every continuation has the full length.",
        f"Probe: standardised logistic regression (C = 0.05) on the mean hidden state over the "
        f"{config.window} continuation tokens ending at token k (the same width at every k, "
        "so a rise with k is not evidence accumulating over more tokens); the layer is "
        f"chosen per k by {config.cv_folds}-fold "
        f"cross-validation grouped by prompt on the {result.n_train} train prompts; accuracy "
        f"is scored on the other {result.n_test} prompts (both versions of each), with 95% "
        "percentile-bootstrap CIs over those prompts.",
        "The probe may read any difference between the model's samples and the corpus "
        "(style, spelling, how likely the text is), not only accumulated errors: the NLL "
        "curves show which positions carry the difference. A gap slope whose CI contains 0 "
        "says the difference is a constant offset from the first token, not errors that "
        "accumulate.",
        "Control: the natural continuations against the natural continuations of "
        f"{config.n_prompts} other windows of the same text, with the same train/test split "
        "and layer choice; a probe that beat chance there would be reading noise.",
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
            "probe_window": config.window,
            "control_windows": config.n_prompts,
            "text": "eval split",
        },
    )


@claim_rule("C9")
def c9_rule(results: dict[str, SectionResult]) -> Verdict:
    measured = results.get("C9")
    if measured is None or measured.status != MEASURED:
        return Verdict(NOT_RUN, "the drift measurement (section C9) was not run")
    accuracy = measured.numbers["accuracy"]
    longest, shortest = max(accuracy, key=int), min(accuracy, key=int)
    verdict = drift_verdict(
        Interval.from_dict(accuracy[longest]),
        Interval.from_dict(measured.numbers["rise"]),
        int(longest),
        int(shortest),
    )
    control = measured.numbers.get("control", {}).get("accuracy")
    return with_control(
        verdict, drift_control(None if control is None else Interval.from_dict(control))
    )
