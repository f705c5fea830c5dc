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
from myopia.stats import Interval, mean_ci
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


def test_normal_training_learns_the_later_part_and_myopic_training_does_not():
    task = EffortTask(d_model=8)
    fit = dict(steps=400, batch_size=32, lr=5e-3, warmup_steps=20, eval_batches=4, seed=1)
    normal = train_effort(task, ContinuousFit(gradient="normal", **fit))
    myopic = train_effort(task, ContinuousFit(gradient="kv", **fit))
    assert normal.later_loss < 0.6 * normal.zero_later_loss
    assert myopic.later_loss > 0.85 * myopic.zero_later_loss
    # Both learn the current part, which needs nothing from earlier positions.
    assert max(normal.current_loss, myopic.current_loss) < 0.5 * normal.zero_current_loss


def test_sweep_pairs_runs_by_seed():
    config = EffortAllocationConfig(widths=(4, 8), n_seeds=2, steps=2, batch_size=4, eval_batches=1)
    result = measure_effort_allocation(config, task=EffortTask(seq_len=4))
    assert set(result.runs) == {(w, g, s) for w in (4, 8) for g in ("normal", "kv") for s in (0, 1)}
    for width in (4, 8):
        for seed in (0, 1):
            normal, myopic = result.runs[width, "normal", seed], result.runs[width, "kv", seed]
            # Same initial weights and first batch: myopia changes the backward pass only.
            assert normal.curve[0][1] == pytest.approx(myopic.curve[0][1], rel=1e-6)
            assert normal.zero_later_loss == myopic.zero_later_loss  # same held-out data
        summary = result.width_summary(width)
        differences = [
            result.runs[width, "normal", s].current_loss - result.runs[width, "kv", s].current_loss
            for s in (0, 1)
        ]
        assert summary["current_difference"].mean == pytest.approx(sum(differences) / 2)
        assert summary["total_normal"].n == 2
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


def ci(low, high):
    return Interval(mean=(low + high) / 2, low=low, high=high, n=5, level=0.95)


def test_rule_gives_each_verdict_on_hand_made_intervals():
    assert c3.effort_verdict(ci(0.01, 0.03), ci(-0.3, -0.1), 8).value == "supported"
    assert c3.effort_verdict(ci(-0.03, -0.01), ci(-0.3, -0.1), 8).value == "refuted"
    assert c3.effort_verdict(ci(0.01, 0.03), ci(0.1, 0.3), 8).value == "refuted"
    undecided = c3.effort_verdict(ci(-0.01, 0.03), ci(-0.3, -0.1), 8)
    assert undecided.value == "inconclusive" and "seeds" in undecided.reason
    assert c3.effort_verdict(ci(0.01, 0.03), ci(-0.3, 0.1), 8).value == "inconclusive"


def test_claim_rule_decides_at_the_declared_width():
    by_width = {
        "8": {
            "current_difference": mean_ci([0.02, 0.025, 0.03]).to_dict(),
            "total_difference": mean_ci([-0.2, -0.25, -0.22]).to_dict(),
        },
        "32": {
            "current_difference": mean_ci([-0.02, -0.025, -0.03]).to_dict(),
            "total_difference": mean_ci([-0.2, -0.25, -0.22]).to_dict(),
        },
    }

    def verdict(width, status=MEASURED):
        numbers = {"by_width": by_width, "verdict_width": width, "quick": False}
        return c3.c3_rule({"C3": SectionResult(summary="", numbers=numbers, status=status)})

    assert verdict(8).value == "supported"
    assert verdict(32).value == "refuted"
    assert verdict(8, FAILED).value == "not run"
    assert c3.c3_rule({}).value == "not run"


def test_section_writes_its_plot_and_numbers(tmp_path, monkeypatch):
    tiny = EffortAllocationConfig(widths=(4, 8), n_seeds=2, steps=2)
    monkeypatch.setattr(EffortAllocationConfig, "quick", classmethod(lambda cls: tiny))
    config = ReportConfig(out=tmp_path, quick=True, seed=7, show_progress=False)
    result = c3.effort_allocation(ReportContext(config, model=None, tokenizer=None, model_info={}))
    assert result.budget["seeds"] == [7, 8] and result.numbers["verdict_width"] == 4
    plot = tmp_path / result.plots[0].path
    assert plot.stat().st_size > 0
    saved = json.loads(plot.with_suffix(".json").read_text())
    assert set(saved["by_width"]) == {"4", "8"} and len(saved["runs"]) == 8
    assert c3.c3_rule({"C3": result}).value in ("supported", "refuted", "inconclusive")
