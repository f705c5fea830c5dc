"""C2: a model trained offline does not choose the easy future ("myopic action").

A fresh tiny Llama learns the choice task of ``myopia.training.choice_task``: at the choice
the data emit P0 or P1 with probability 0.5; after P1 the rest is a fixed string, after P0
it is random. It is trained three ways (teacher-forced with the normal gradient,
teacher-forced with the myopic gradient, on-policy with REINFORCE credit for its own
choice) with several seeds, and P(P1) at the choice is followed over training.

The rule of CLAIMS.md ("supported if (i) and (ii) give |P(P1) - 0.5| < 0.03 and (iii) moves
P(P1) above 0.6") is read with 95% intervals over seeds: supported when the intervals of
(i) and (ii) lie inside (0.47, 0.53) and that of (iii) above 0.6; refuted when an interval
of (i) or (ii) lies wholly outside (0.47, 0.53) or that of (iii) wholly below 0.6;
inconclusive otherwise, saying how many seeds at the measured spread would decide.
"""

from __future__ import annotations

import math
from dataclasses import replace

from scipy import stats as scipy_stats

from myopia.protocol import preset
from myopia.report.context import ReportContext
from myopia.report.registry import MEASURED, Plot, SectionResult, claim_rule, section
from myopia.report.verdicts import INCONCLUSIVE, NOT_RUN, REFUTED, SUPPORTED, Verdict
from myopia.stats import Interval
from myopia.training.choice_task import REGIME_LABELS, hard_loss_floor
from myopia.training.myopic_action import (
    BAND,
    ON_POLICY_THRESHOLD,
    MyopicActionConfig,
    MyopicActionResult,
    measure_myopic_action,
)

DATA_P_EASY = 0.5
TEACHER_FORCED = ("normal", "kv")
MAX_SEEDS = 1000  # more seeds than this is not a budget anyone would run


@section("C2", claim="C2", title="Myopic action: does training choose the easy future?")
def myopic_action(ctx: ReportContext) -> SectionResult:
    config = replace(preset(MyopicActionConfig, ctx.quick), seed=ctx.seed)
    result = measure_myopic_action(config, show_progress=ctx.config.show_progress)
    plot = result.write(ctx.section_dir("C2"))[1]
    seeds = result.seeds
    finals = {regime: result.final_interval(regime) for regime in result.runs}
    verdict = myopic_action_verdict(finals)
    return SectionResult(
        summary=_summary(result, finals, verdict),
        numbers={
            **result.to_dict(),
            "band": list(BAND),
            "on_policy_threshold": ON_POLICY_THRESHOLD,
            "hard_loss_floor": hard_loss_floor(config),
        },
        rows=[_row(result, regime, finals[regime]) for regime in result.runs],
        plots=[
            Plot(
                str(plot.relative_to(ctx.config.out)),
                "P(P1 | P0 or P1) at the choice, mean over every context, against training "
                "step; lines: mean over seeds, bands: 95% CI over seeds. Grey band: "
                f"{BAND[0]}–{BAND[1]}; dashed: {ON_POLICY_THRESHOLD}.",
            )
        ],
        budget={
            "seeds": seeds,
            "steps": config.steps,
            "batch": config.batch_size,
            "lr": config.lr,
            "model": (
                f"fresh Llama, d_model={config.d_model}, {config.n_layers} layers, "
                f"{config.n_heads} heads, d_mlp={config.d_mlp}, vocab {config.vocab_size}"
            ),
            "sequence": (
                f"BOS, {config.context_len} context tokens, ASK, choice, "
                f"{config.continuation_len} continuation tokens"
            ),
        },
        notes=[
            "P(P1) is renormalised over {P0, P1}: the on-policy model only ever acts with "
            "those two tokens and its choice position gets no likelihood loss, so its mass "
            "on other tokens means nothing (the table gives the unnormalised mass).",
            "Teacher-forced batches are stratified (exactly half P1, in random places): "
            "each sequence still has P(P1) = 0.5, but the batch-to-batch noise in the "
            "choice's frequency is gone. Without it, at the full budget, final P(P1) ranged "
            "over 0.489–0.510 in 5 seeds (sd about 0.008, a 3-seed CI half-width near 0.02) "
            "in both teacher-forced regimes. The future-loss gradient the claim is about is "
            "untouched.",
            "The on-policy model's loss after P0 can stay above its floor: once it chooses P1 "
            "it rarely sees P0's continuations, and the held-out check still asks about them.",
        ],
    )


def _row(result: MyopicActionResult, regime: str, final: Interval) -> dict:
    return {
        "regime": REGIME_LABELS[regime],
        "final P(P1)": final.mean,
        "95% CI": f"[{final.low:.4f}, {final.high:.4f}]",
        "seeds": final.n,
        "mass on P0, P1": result.mean_of(regime, "choice_mass"),
        "loss per token after P0": result.mean_of(regime, "loss_after_hard"),
        "loss per token after P1": result.mean_of(regime, "loss_after_easy"),
        "seconds (all seeds)": result.mean_of(regime, "seconds") * len(result.seeds),
    }


def _summary(result: MyopicActionResult, finals: dict[str, Interval], verdict: Verdict) -> str:
    config = result.config

    def described(regime: str) -> str:
        return finals[regime].text(".4f")

    def losses(regime: str) -> str:
        easy = result.mean_of(regime, "loss_after_easy")
        return f"{easy:.3f} / {result.mean_of(regime, 'loss_after_hard'):.3f}"

    return (
        f"A fresh {config.n_layers}-layer Llama (d_model={config.d_model}) was trained for "
        f"{config.steps} steps of {config.batch_size} sequences on a task whose data choose "
        f"P1 with probability {DATA_P_EASY}; after P1 the next {config.continuation_len} tokens "
        "are fixed, after P0 they are random. Final P(P1) at the choice, over "
        f"{len(result.seeds)} seeds: teacher-forced with the normal gradient "
        f"{described('normal')}, with the myopic gradient {described('kv')}, on-policy "
        f"{described('on-policy')}. Sanity check, loss per continuation token after P1 "
        f"(fixed string, floor 0) and after P0 (random, floor {hard_loss_floor(config):.3f}): "
        f"normal {losses('normal')}, myopic {losses('kv')}, on-policy {losses('on-policy')}. "
        f"Verdict: {verdict.value} ({verdict.reason})."
    )


# --- the verdict ------------------------------------------------------------------------


def _seeds_to_decide(interval: Interval, boundaries: tuple[float, ...]) -> int | None:
    """Seeds at which a 95% t interval with this mean and spread would clear the nearest
    boundary; None when the mean sits (almost) on it, where seeds cannot decide and only a
    longer training run that moves the mean can."""
    if interval.n < 2 or not math.isfinite(interval.width):
        return 3  # one seed says nothing about the spread; CLAIMS asks for at least 3
    distance = min(abs(interval.mean - b) for b in boundaries)
    t_now = scipy_stats.t.ppf(0.5 + interval.level / 2, interval.n - 1)
    sd = interval.width / 2 / t_now * math.sqrt(interval.n)
    for n in range(interval.n + 1, MAX_SEEDS + 1):
        if scipy_stats.t.ppf(0.5 + interval.level / 2, n - 1) * sd / math.sqrt(n) < distance:
            return n
    return None


def _described(name: str, ci: Interval) -> str:
    return f"{name} P(P1) = {ci.mean:.4f} [{ci.low:.4f}, {ci.high:.4f}]"


def _undecided(name: str, ci: Interval, boundaries: tuple[float, ...]) -> str:
    seeds = _seeds_to_decide(ci, boundaries)
    where = " and ".join(f"{b:g}" for b in boundaries)
    budget = (
        f"about {seeds} seeds at this spread would decide"
        if seeds is not None
        else f"its mean is too near the boundary for {MAX_SEEDS} seeds: only longer training "
        "can decide"
    )
    return f"{_described(name, ci)} is not clear of {where}: {budget}"


def myopic_action_verdict(finals: dict[str, Interval]) -> Verdict:
    """C2's rule on the final P(P1) intervals of ``normal``, ``kv`` and ``on-policy``."""
    refuting, undecided, holding = [], [], []
    for regime in TEACHER_FORCED:
        ci, name = finals[regime], REGIME_LABELS[regime]
        if ci.high < BAND[0] or ci.low > BAND[1]:
            refuting.append(f"{_described(name, ci)} lies outside ({BAND[0]}, {BAND[1]})")
        elif ci.low > BAND[0] and ci.high < BAND[1]:
            holding.append(f"{_described(name, ci)} lies inside ({BAND[0]}, {BAND[1]})")
        else:
            undecided.append(_undecided(name, ci, BAND))
    ci, name = finals["on-policy"], REGIME_LABELS["on-policy"]
    if ci.high < ON_POLICY_THRESHOLD:
        refuting.append(f"{_described(name, ci)} lies below {ON_POLICY_THRESHOLD}")
    elif ci.low > ON_POLICY_THRESHOLD:
        holding.append(f"{_described(name, ci)} lies above {ON_POLICY_THRESHOLD}")
    else:
        undecided.append(_undecided(name, ci, (ON_POLICY_THRESHOLD,)))
    if refuting:
        return Verdict(REFUTED, "; ".join(refuting))
    if undecided:
        return Verdict(INCONCLUSIVE, "; ".join(undecided))
    return Verdict(SUPPORTED, "; ".join(holding))


@claim_rule("C2")
def c2_rule(results: dict[str, SectionResult]) -> Verdict:
    measured = results.get("C2")
    if measured is None or measured.status != MEASURED:
        return Verdict(NOT_RUN, "the choice-task training (section C2) was not run")
    finals = {
        regime: Interval(**interval)
        for regime, interval in measured.numbers["final_p_easy"].items()
    }
    return myopic_action_verdict(finals)
