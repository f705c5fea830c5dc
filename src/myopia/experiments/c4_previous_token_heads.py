"""C4: previous-token heads work for later positions.

On the report's model (SmolLM2 by default), on repeated random tokens:
- detect the previous-token heads (TransformerLens's pattern and "mul" metric; the top
  3 with score ≥ 0.3: ``PreviousTokenHeadsConfig``);
- first-order current/future attribution of every head at every position (mean
  ablation): per sequence, median future share of the detected heads − median over all
  heads;
- mean-ablate the detected heads: loss rise on the first copy (where no induction can
  help) against the second copy.
CLAIMS.md's rule: supported if the median future share of the detected heads exceeds the
median over all heads, and the ablation raises second-repeat loss at least 3× as much as
first-repeat loss, CIs excluding equality. Read here, fixed before running: the 95% CI
over sequences of (median share of detected − median of all) lies above 0, and that of
(Δsecond − 3·Δfirst) lies above 0; refuted if either lies wholly below 0.
The verdict is read on the report's model: the claim is about trained GPT-like models.
Section C4-small repeats the measurement on a 2-layer attention-only model trained here,
as a description (its induction heads form too slowly on a CPU to decide anything).
The future share of the same heads on natural text is shown beside it.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import torch

from myopia.heads.previous_token_role import (
    RATIO,
    PreviousTokenHeadsConfig,
    PreviousTokenRole,
    measure,
    previous_token_role,
)
from myopia.plots import plot_losses_by_setting
from myopia.protocol import preset
from myopia.report.context import ReportContext
from myopia.report.registry import MEASURED, Plot, SectionResult, claim_rule, section
from myopia.report.verdicts import INCONCLUSIVE, NOT_RUN, REFUTED, SUPPORTED, Verdict
from myopia.stats import Interval, mean_ci
from myopia.training.induction_task import InductionTask, repeated_segments, train_induction_model


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


def _loss_plot(roles: dict[str, PreviousTokenRole], path, title):
    settings = {
        label: {
            copy: {"values": values, "ci": mean_ci(values).to_dict()}
            for copy, values in (
                ("first copy", r.loss_rise_first),
                ("second copy", r.loss_rise_second),
            )
        }
        for label, r in roles.items()
    }
    return plot_losses_by_setting(settings, path, title, "loss rise when ablated (nats)")


@section("C4", claim="C4", title="Previous-token heads: future share and ablation")
def previous_token_heads(ctx: ReportContext) -> SectionResult:
    config = _config(ctx)
    result = measure(ctx.model, ctx.tokenizer, config, ctx.documents())
    budget = _budget(config)
    role, text_difference = result.role, result.natural_text_share_difference
    if role is None:
        return SectionResult(
            summary=f"No head of {ctx.config.model} has a previous-token score ≥ "
            f"{config.threshold}: nothing to measure.",
            budget=budget,
        )
    out = ctx.section_dir("C4")
    plot = _loss_plot(
        {ctx.config.model: role},
        out / "ablation_loss_rise.png",
        f"Mean-ablating the previous-token heads {role.heads_text()}: loss rise per copy, "
        f"{budget['batch']} sequences of 2 × {budget['n']} repeated random tokens",
    )
    d = role.to_dict()
    summary = (
        f"On {budget['batch']} sequences of {budget['n']} random tokens repeated once, the "
        f"previous-token heads of {ctx.config.model} are {role.heads_text()}. Their median "
        f"future share is {d['share_detected']['mean']:.3f} against "
        f"{d['share_all']['mean']:.3f} for all heads: a difference of "
        f"{role.share_gap.text()}. Mean-ablating them raises the loss on the first copy by "
        f"{mean_ci(role.loss_rise_first).text()} nats and on the second copy by "
        f"{mean_ci(role.loss_rise_second).text()} nats (Δsecond − {RATIO:g}·Δfirst = "
        f"{role.ratio_margin.text()}). On natural text ({budget['text_batch']} × "
        f"{budget['text_len']} tokens of {ctx.corpus_name()}), their median future share "
        f"exceeds that of all heads by {text_difference.text()}."
    )
    return SectionResult(
        summary=summary,
        numbers=result.to_dict(),
        rows=_role_rows(ctx.config.model, role),
        plots=[
            Plot(
                str(plot.relative_to(ctx.config.out)),
                "Loss rise on each copy when the detected previous-token heads output "
                "their mean (per-sequence dots; mean and 95% CI).",
            )
        ],
        notes=[
            f"Detected: the top {config.top_k} heads by TransformerLens's previous-token score "
            f"(mul metric, BOS kept) with score ≥ {config.threshold}, on the same repeated "
            "tokens.",
            "Future share per head and sequence: Σ|future| / (Σ|current| + Σ|future|) over "
            "positions, first order (one ordinary and one myopic backward pass), mean "
            "ablation; see `myopia attribute`.",
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


@claim_rule("C4")
def c4_rule(results: dict[str, SectionResult]) -> Verdict:
    measured = results.get("C4")
    if measured is None or "ratio_margin" not in measured.numbers:
        return Verdict(NOT_RUN, "the previous-token head measurement (section C4) was not made")
    share = Interval(**measured.numbers["share_difference"])
    margin = Interval(**measured.numbers["ratio_margin"])
    described = (
        f"median future share, detected − all heads = {share.text()}; "
        f"Δsecond − {RATIO:g}·Δfirst = {margin.text()}"
    )
    if not (np.isfinite(share.low) and np.isfinite(margin.low)):
        return Verdict(INCONCLUSIVE, f"{described}: too few sequences for an interval")
    if share.above(0) and margin.above(0):
        return Verdict(SUPPORTED, f"{described}: both above 0")
    if share.below(0) or margin.below(0):
        return Verdict(REFUTED, f"{described}: one lies below 0")
    return Verdict(INCONCLUSIVE, f"{described}: an interval straddles 0")
