"""C3's effort task: targets as defined, the incentive the myopic gradient removes, the
pairing of runs, the verdict rule, and the report section's files."""

import json
import math
from dataclasses import replace

import pytest
import torch

import myopia.experiments.c3_effort_allocation as c3
from myopia.errors import MyopiaError
from myopia.report.context import ReportConfig, ReportContext
from myopia.report.registry import FAILED, MEASURED, SectionResult
from myopia.stats import mean_ci
from myopia.training.continuous import ContinuousFit
from myopia.training.effort_allocation import EffortAllocationConfig, measure_effort_allocation
from myopia.training.effort_task import (
    EffortTask,
    incentive_at,
    train_effort,
)


def test_targets_follow_their_formula():
    task = EffortTask(
        current_inputs=2, current_frequency=1.5, later_frequency=2.5, lags=3, seq_len=6
    )
    inputs, targets = task.batch(torch.Generator().manual_seed(3), 2)
    assert inputs.shape == (2, 6, 2) and targets.shape == (2, 6, 2)
    offset = math.exp(-(2.5**2) / 2)  # E[cos(2.5 x)], x ~ N(0, 1)
    for b in range(2):
        for n in range(6):
            x = inputs[b].tolist()  # [position][input]
            current = sum(math.sin(1.5 * v) for v in x[n]) / math.sqrt(2)
            later = sum(math.cos(2.5 * x[n - i][0]) - offset for i in (1, 2, 3) if n - i >= 0)
            assert targets[b, n, 0].item() == pytest.approx(current, abs=1e-5)
            assert targets[b, n, 1].item() == pytest.approx(later, abs=1e-5)
    assert task.model()(inputs).shape == (2, 6, 2)


@pytest.mark.parametrize("mode", ["kv", "residual"])
def test_myopic_gradient_gives_no_incentive_for_later_positions(mode):
    """The first block's MLP output at s gets gradient from later positions' losses under
    normal training only; its own position's loss reaches it under both."""
    task = EffortTask(d_model=4, seq_len=6)
    torch.manual_seed(0)
    model = task.model()
    inputs, targets = task.batch(torch.Generator().manual_seed(0), 3)
    for position in range(5):  # the last position has no later positions
        own_normal, later_normal = incentive_at(model, inputs, targets, position, "normal")
        own_myopic, later_myopic = incentive_at(model, inputs, targets, position, mode)
        assert later_normal > 1e-6
        assert later_myopic == 0.0
        assert own_myopic == pytest.approx(own_normal, rel=1e-5) and own_myopic > 0


def test_normal_training_learns_the_later_part_and_myopic_training_and_the_control_do_not():
    task = EffortTask(d_model=8)
    fit = dict(steps=400, batch_size=32, lr=5e-3, warmup_steps=20, eval_batches=4, seed=1)
    normal = train_effort(task, ContinuousFit(gradient="normal", **fit))
    myopic = train_effort(task, ContinuousFit(gradient="kv", **fit))
    assert normal.later_loss < 0.6 * normal.zero_later_loss
    assert myopic.later_loss > 0.85 * myopic.zero_later_loss
    # Both learn the current part, which needs nothing from earlier positions.
    assert max(normal.current_loss, myopic.current_loss) < 0.5 * normal.zero_current_loss
    # Absent: on the control task there is nothing to pre-compute, normal training included.
    control = train_effort(
        replace(task, shuffled_later=True), ContinuousFit(gradient="normal", **fit)
    )
    assert control.later_loss > 0.85 * control.zero_later_loss


def test_control_task_keeps_the_inputs_and_moves_the_later_target_to_another_sequence():
    task, control = EffortTask(seq_len=6), EffortTask(seq_len=6, shuffled_later=True)
    inputs, targets = task.batch(torch.Generator().manual_seed(4), 5)
    same, shuffled = control.batch(torch.Generator().manual_seed(4), 5)
    assert torch.equal(inputs, same) and torch.equal(targets[..., 0], shuffled[..., 0])
    assert torch.equal(shuffled[..., 1], targets[..., 1].roll(1, dims=0))
    with pytest.raises(MyopiaError, match="batches of 2"):
        control.batch(torch.Generator().manual_seed(4), 1)


def test_runs_are_paired_by_seed_across_gradients_and_tasks():
    config = EffortAllocationConfig(
        widths=(4, 8), n_seeds=2, steps=2, batch_size=4, eval_batches=1, seed=0
    )
    result = measure_effort_allocation(config, task=EffortTask(seq_len=4))
    assert set(result.runs) == {
        (t, w, g, s)
        for t in ("task", "control")
        for w in (4, 8)
        for g in ("normal", "kv")
        for s in (0, 1)
    }
    for width in (4, 8):
        for seed in (0, 1):
            normal, myopic = (result.runs["task", width, g, seed] for g in ("normal", "kv"))
            # Same initial weights and first batch: myopia changes the backward pass only.
            assert normal.curve[0][1] == pytest.approx(myopic.curve[0][1], rel=1e-6)
            assert normal.zero_later_loss == myopic.zero_later_loss  # same held-out data
            control = result.runs["control", width, "normal", seed]
            assert control.zero_current_loss == normal.zero_current_loss  # same inputs
        did = [
            result.current_differences(width, "task")[i]
            - result.current_differences(width, "control")[i]
            for i in range(2)
        ]
        assert result.difference_in_differences(width).mean == pytest.approx(sum(did) / 2)
        assert result.width_summary(width, "control")["total_normal"].n == 2
    json.dumps(result.to_dict())


def test_bad_settings_are_refused():
    for bad in (
        dict(lags=0),
        dict(lags=8, seq_len=8),
        dict(d_model=6, n_heads=4),
        dict(current_inputs=0),
    ):
        with pytest.raises(MyopiaError):
            EffortTask(**bad)
    config = EffortAllocationConfig(widths=(4,), steps=1)
    with pytest.raises(MyopiaError, match="2 seeds"):
        measure_effort_allocation(replace(config, n_seeds=1))
    with pytest.raises(MyopiaError, match="myopic_gradient"):
        measure_effort_allocation(replace(config, myopic_gradient="bigram"))


def at_width(did, task_total, control_total, control_current=(-0.004, -0.003, -0.005)):
    """One width's numbers as results.json holds them, from hand-made per-seed values."""
    return {
        "difference_in_differences": mean_ci(did).to_dict(),
        "task": {"total_difference": mean_ci(task_total).to_dict()},
        "control": {
            "total_difference": mean_ci(control_total).to_dict(),
            "current_difference": mean_ci(control_current).to_dict(),
        },
    }


EFFECT, NONE, BELOW = [0.02, 0.025, 0.03], [-0.01, 0.0, 0.012], [-0.03, -0.025, -0.02]
BETTER, WORSE = [-0.2, -0.25, -0.22], [0.2, 0.25, 0.22]
QUIET, LOUD = [-0.003, -0.004, -0.002], [0.03, 0.04, 0.035]  # the control's total difference


def test_rule_gives_each_verdict_on_hand_made_numbers():
    supported = c3.c3_verdict(at_width(EFFECT, BETTER, QUIET))
    assert supported.value == "supported" and supported.control.passed
    refuted = c3.c3_verdict(at_width(BELOW, BETTER, QUIET))
    assert refuted.value == "refuted" and "less" in refuted.reason
    undecided = c3.c3_verdict(at_width(NONE, BETTER, QUIET))
    assert undecided.value == "inconclusive" and "contains 0" in undecided.reason
    # The task's total loss is not lower under normal training: not supported.
    assert c3.c3_verdict(at_width(EFFECT, WORSE, QUIET)).value == "inconclusive"


def test_a_failed_control_makes_any_verdict_inconclusive():
    for main in (EFFECT, BELOW):
        verdict = c3.c3_verdict(at_width(main, BETTER, LOUD))
        assert verdict.value == "inconclusive" and not verdict.control.passed
        assert "failed its control" in verdict.reason
    # A control whose CI reaches past the band edge fails too: equivalence must be shown.
    assert not c3.c3_verdict(at_width(EFFECT, BETTER, [-0.02, 0.0, 0.02])).control.passed


def test_claim_rule_decides_at_the_declared_width():
    by_width = {"8": at_width(EFFECT, BETTER, QUIET), "32": at_width(BELOW, BETTER, QUIET)}

    def verdict(width, status=MEASURED, quick=False):
        numbers = {"by_width": by_width, "verdict_width": width, "quick": quick}
        return c3.c3_rule({"C3": SectionResult(summary="", numbers=numbers, status=status)})

    assert verdict(8).value == "supported"
    assert verdict(32).value == "refuted"
    assert "smoke run" in verdict(8, quick=True).reason
    assert verdict(8, FAILED).value == "not run"
    assert c3.c3_rule({}).value == "not run"


def test_section_writes_its_plot_and_numbers(tmp_path, monkeypatch):
    tiny = EffortAllocationConfig(widths=(4, 8), n_seeds=2, steps=2, eval_batches=1)
    monkeypatch.setattr(EffortAllocationConfig, "quick", classmethod(lambda cls: tiny))
    config = ReportConfig(out=tmp_path, quick=True, seed=7, show_progress=False)
    result = c3.effort_allocation(ReportContext(config, model=None, tokenizer=None, model_info={}))
    assert result.budget["seeds"] == [7, 8] and result.numbers["verdict_width"] == 4
    plot = tmp_path / result.plots[0].path
    assert plot.stat().st_size > 0
    saved = json.loads(plot.with_suffix(".json").read_text())
    assert set(saved["by_width"]) == {"4", "8"} and len(saved["runs"]) == 16
    verdict = c3.c3_rule({"C3": result})
    assert verdict.value in ("supported", "refuted", "inconclusive") and verdict.control
