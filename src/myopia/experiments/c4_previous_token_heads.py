"""C4: previous-token heads work for later positions (CLAIMS.md v2).

On the report's model (SmolLM2 by default): detect the previous-token heads on one set
of repeated random tokens (``PreviousTokenHeadsConfig``: the top 3 with score ≥ 0.3), then
compare them with layer-matched random head sets of the same size (the null,
``myopia.heads.matched_null``) on two statistics measured elsewhere:
(i) the median future share of the set's heads on natural text (first-order attribution);
(ii) the mean-ablation effect Δsecond − Δfirst on fresh repeated random tokens (exact
ablation of every set, batched; first order beside it only for its agreement).
Rule, fixed before running: supported if both detected values exceed the null's 95th
percentile (permutation p < 0.05); refuted if either lies below the null's median; else
inconclusive. Control, in the report: a random matched set standing in for the detected
heads, against the rest of the null, must not come out supported; and on two models built
by hand (``myopia.heads.planted``), a previous-token head that feeds an induction head must
come out supported and one that serves only its own position must not.
Section C4-small repeats the version-1 measurement on a 2-layer attention-only model
trained here, as a description.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import torch

from myopia.heads.plots import plot_null_distributions
from myopia.heads.previous_token_role import (
    RATIO,
    PreviousTokenHeadsConfig,
    PreviousTokenRole,
    measure,
    planted_control,
    previous_token_role,
)
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
from myopia.stats import mean_ci
from myopia.training.induction_task import InductionTask, repeated_segments, train_induction_model

LEVEL = 0.05  # permutation p below this = above the null's 95th percentile
STATISTICS = {
    "future_share": "median future share on natural text",
    "ablation_effect": "ablation Δsecond − Δfirst (nats)",
}


def _config(ctx: ReportContext) -> PreviousTokenHeadsConfig:
    return replace(preset(PreviousTokenHeadsConfig, ctx.quick), seed=ctx.seed)


def _budget(config: PreviousTokenHeadsConfig) -> dict:
    return {k: v for k, v in asdict(config).items() if k != "seed"}


def _role_rows(label: str, role: PreviousTokenRole) -> list[dict]:
    d = role.to_dict()
    return [
        {
            "model": label,
            "quantity": name,
            "mean": d[key]["mean"],
            "95% CI": f"[{d[key]['low']:.3f}, {d[key]['high']:.3f}]",
        }
        for name, key in (
            ("median future share, detected previous-token heads", "share_detected"),
            ("median future share, all heads", "share_all"),
            ("difference (detected − all)", "share_difference"),
            ("ablation: loss rise, first copy (nats)", "loss_rise_first"),
            ("ablation: loss rise, second copy (nats)", "loss_rise_second"),
            (f"Δsecond − {RATIO:g}·Δfirst", "ratio_margin"),
        )
    ]


def _heads_text(heads) -> str:
    return ", ".join(f"L{h.layer}.H{h.head} ({h.score:.2f})" for h in heads)


@section("C4", claim="C4", title="Previous-token heads against layer-matched random heads")
def previous_token_heads(ctx: ReportContext) -> SectionResult:
    config = _config(ctx)
    result = measure(ctx.model, ctx.tokenizer, config, ctx.documents())
    budget = _budget(config)
    if not result.heads:
        return SectionResult(
            summary=f"No head of {ctx.config.model} has a previous-token score ≥ "
            f"{config.threshold}: nothing to measure.",
            numbers=result.to_dict(),
            budget=budget,
        )
    if result.no_null is not None:
        return SectionResult(
            summary=f"The previous-token heads of {ctx.config.model} are "
            f"{_heads_text(result.heads)}, but {result.no_null}. Without random head sets "
            "of the same size from the same layers to compare them with, nothing was "
            "measured.",
            numbers=result.to_dict(),
            budget=budget,
        )
    numbers = result.to_dict()
    planted = {kind: r.to_dict() for kind, r in planted_control(config).items()}
    numbers["planted"] = planted
    heads = _heads_text(result.heads)
    out = ctx.section_dir("C4")
    plot = plot_null_distributions(
        {STATISTICS[k]: numbers[k] for k in STATISTICS},
        out / "matched_null.png",
        f"{ctx.config.model}: previous-token heads {heads} against {config.n_null} random "
        "head sets of the same size, matched by layer",
    )
    share, effect = numbers["future_share"], numbers["ablation_effect"]
    agree, text = numbers["agreement"], numbers["text_effects"]
    summary = (
        f"Detected on {config.detect_batch} sequences of 2 × {config.n} repeated random tokens, "
        f"the previous-token heads of {ctx.config.model} are {heads}. On "
        f"{config.text_batch} × {config.text_len} tokens of {ctx.corpus_name()}, their median "
        f"future share is {share['observed']:.3f}, against a median of "
        f"{share['null_median']:.3f} and a 95th percentile of {share['null_q95']:.3f} over "
        f"{share['n_null']} layer-matched random sets (p = {share['p']:.3f}). On "
        f"{config.batch} fresh sequences, mean-ablating them changes Δsecond − Δfirst by "
        f"{effect['observed']:+.3f} nats (exact; first order would say "
        f"{agree['detected_first_order']:+.3f}), "
        f"against a null median of {effect['null_median']:+.3f} and 95th percentile "
        f"{effect['null_q95']:+.3f} (p = {effect['p']:.3f}). For the current position on "
        f"natural text, ablating them changes the loss at the position itself by "
        f"{text['current_per_position']:+.4f} nats per position and at later positions by "
        f"{text['future_per_position']:+.4f} (first order, summed over the heads). "
        f"Known answers: {_planted_text(planted)}."
    )
    rows = [
        {
            "statistic": STATISTICS[key],
            "detected heads": f"{numbers[key]['observed']:+.4f}",
            "null median": f"{numbers[key]['null_median']:+.4f}",
            "null 95th percentile": f"{numbers[key]['null_q95']:+.4f}",
            "permutation p": f"{numbers[key]['p']:.3f}",
            "control (a random set) p": f"{numbers['control'][key]['p']:.3f}",
        }
        for key in STATISTICS
    ]
    return SectionResult(
        summary=summary,
        numbers=numbers,
        rows=rows,
        plots=[
            Plot(
                str(plot.relative_to(ctx.config.out)),
                "The null: each statistic for the layer-matched random head sets (grey); "
                "red: the detected heads; dashed: the null's 95th percentile; dotted: its median.",
            )
        ],
        notes=[
            f"Detected: the top {config.top_k} heads by TransformerLens's previous-token score "
            f"(mul metric, BOS kept) with score ≥ {config.threshold}, on sequences not used to "
            "measure.",
            "Null sets: for each detected head another head of its layer, never a detected "
            "head. Permutation p = (1 + #null ≥ detected) / (1 + sets).",
            f"First-order ablation against exact mean ablation on {agree['sets']} sets "
            f"(the detected set and the null): Pearson r = {agree['pearson']:.3f}, largest "
            f"difference {agree['max_abs_difference']:.3f} nats. The ablation statistic is the "
            "exact one; the future share (i) and the current-position effects are first order "
            "(every head at every position from two backward passes), which this agreement "
            "says to read with care for heads whose removal changes much.",
            "Control (rule 1): the first null set stands in for the detected heads against "
            "the others; the rule must not say supported on it (it can by chance, at most "
            "5% of seeds).",
            "Control (rule 2): two 2-layer GPT-2 models built by hand "
            "(`myopia.heads.planted`), each with a previous-token head at L0.H0 and small "
            "random heads elsewhere, measured with the same budgets and null on repeated "
            "random tokens: the head that feeds an induction head must come out supported, "
            "the one that serves only its own position must not.",
        ],
        budget=budget,
    )


@section("C4-small", claim="C4", title="The same on a 2-layer attention-only model trained here")
def small_model(ctx: ReportContext) -> SectionResult:
    config = _config(ctx)
    task = InductionTask(steps=config.small_steps)
    run = train_induction_model(task, seed=ctx.seed, show_progress=ctx.config.show_progress)
    n = task.half_len
    ids = repeated_segments(task.n_tokens, n, 16, torch.Generator().manual_seed(ctx.seed + 7))
    role = previous_token_role(run.model, ids, n, config.top_k, threshold=0.0)
    formed = run.second_copy_loss < 0.6 * run.first_copy_loss
    summary = (
        f"A 2-layer attention-only Llama (d {task.d_model}, {task.n_heads} heads) trained "
        f"{task.steps} steps on repeated random segments of varying length: held-out loss "
        f"{run.first_copy_loss:.3f} on the first copy and {run.second_copy_loss:.3f} on the "
        f"second ({'induction has formed' if formed else 'induction has not formed yet'}). "
        f"Its top previous-token heads: {role.heads_text()}; difference of median future "
        f"shares {role.share_gap.text()}; ablation loss rise first copy "
        f"{mean_ci(role.loss_rise_first).text()}, second copy "
        f"{mean_ci(role.loss_rise_second).text()}."
    )
    if role.heads[0].score < config.threshold:
        summary += (
            f" No head reaches the previous-token threshold {config.threshold}: the model carries "
            "the previous token without a head that attends mostly to it, so the heads "
            "above are only the highest-scoring ones, not previous-token heads."
        )
    return SectionResult(
        summary=summary,
        numbers={
            **role.to_dict(),
            "first_copy_loss": run.first_copy_loss,
            "second_copy_loss": run.second_copy_loss,
            "induction_formed": formed,
        },
        rows=_role_rows("2-layer attention-only", role),
        notes=[
            "Descriptive: C4's verdict is read on the report's model. On this CPU induction "
            "heads emerge only near 2000 steps; a clean previous-token head needs several "
            "thousand (`myopia.training.induction_task.train_induction_model` with more "
            "steps, or a GPU).",
        ],
        budget={"steps": task.steps, "n_tokens": task.n_tokens, "half_len": n, "seed": ctx.seed},
        status=MEASURED,
    )


def c4_main(numbers: dict) -> Verdict:
    """The v2 rule on the stored numbers: both p < 0.05 -> supported; either observed
    below its null median -> refuted; else inconclusive."""
    if not numbers.get("heads"):
        return Verdict(INCONCLUSIVE, "no previous-token head was detected")
    if numbers.get("no_null"):
        return Verdict(INCONCLUSIVE, numbers["no_null"])
    parts = [
        f"{STATISTICS[k]} {numbers[k]['observed']:+.4f} (null median "
        f"{numbers[k]['null_median']:+.4f}, 95th percentile {numbers[k]['null_q95']:+.4f}, "
        f"p = {numbers[k]['p']:.3f})"
        for k in STATISTICS
    ]
    described = "; ".join(parts)
    if any(numbers[k]["observed"] < numbers[k]["null_median"] for k in STATISTICS):
        return Verdict(REFUTED, f"{described}: one lies below the null's median")
    if all(numbers[k]["p"] < LEVEL for k in STATISTICS):
        return Verdict(SUPPORTED, f"{described}: both above the null's 95th percentile")
    return Verdict(INCONCLUSIVE, f"{described}: not both above the null's 95th percentile")


PLANTED_EXPECTED = {"feeds_induction": True, "current_only": False}  # supported?


def _planted_text(planted: dict) -> str:
    return "; ".join(
        f"the planted head that {PLANTED_NAMES[kind]}: {c4_main(numbers).value}"
        for kind, numbers in planted.items()
    )


PLANTED_NAMES = {
    "feeds_induction": "feeds an induction head",
    "current_only": "serves only its own position",
}


def c4_control(numbers: dict) -> Control:
    """Passes when a random matched set standing in for the detected heads does not come
    out supported, the planted head that feeds an induction head does, and the planted
    head that serves only its own position does not."""
    control = numbers["control"]
    stand_in = c4_main({"heads": numbers["heads"], **control})
    planted = numbers.get("planted", {})
    known = all(
        kind in planted and (c4_main(planted[kind]).value == SUPPORTED) == expected
        for kind, expected in PLANTED_EXPECTED.items()
    )
    return Control(
        stand_in.value != SUPPORTED and known,
        f"a layer-matched random set in place of the detected heads: {stand_in.value} "
        f"(p = {control['future_share']['p']:.3f}, {control['ablation_effect']['p']:.3f}); "
        f"{_planted_text(planted) if planted else 'the planted models were not measured'}",
    )


@claim_rule("C4")
def c4_rule(results: dict[str, SectionResult]) -> Verdict:
    measured = results.get("C4")
    if measured is None or "heads" not in measured.numbers:
        return Verdict(NOT_RUN, "the previous-token head measurement (section C4) was not made")
    numbers = measured.numbers
    if not numbers["heads"] or numbers.get("no_null"):
        return c4_main(numbers)  # nothing compared with a null, so no control either
    return with_control(c4_main(numbers), c4_control(numbers))
