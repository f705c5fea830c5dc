"""C1's v2 rule on hand-made numbers: the pre-caching gap decides, the lags = 0 null must
be equivalent to 0 (CI inside ±0.03) or the verdict is inconclusive."""

import json

import pytest

import myopia.experiments.c1a_precaching as c1a
from myopia.report.registry import SectionResult
from myopia.report.verdicts import INCONCLUSIVE, NOT_RUN, REFUTED, SUPPORTED
from myopia.stats import Interval
from myopia.training.precaching_gap import PrecachingGapConfig, measure_precaching_gap


def interval(mean: float, low: float, high: float, n: int = 3) -> dict:
    return Interval(mean=mean, low=low, high=high, level=0.95, n=n).to_dict()


GOOD_NULL = interval(0.002, -0.01, 0.014)


def verdict(gap: dict, null: dict | None = GOOD_NULL):
    numbers = {"primary_gap": gap, "null_gap": null}
    return c1a.c1_rule({"C1a": SectionResult(summary="hand-made", numbers=numbers)})


@pytest.mark.parametrize(
    "gap, expected",
    [
        (interval(0.4, 0.3, 0.5), SUPPORTED),
        (interval(-0.2, -0.3, -0.1), REFUTED),
        (interval(0.05, -0.02, 0.12), INCONCLUSIVE),
        (interval(0.4, 0.3, 0.5, n=2), INCONCLUSIVE),  # fewer than 3 seeds
    ],
)
def test_the_gap_decides_when_the_null_holds(gap, expected):
    result = verdict(gap)
    assert result.value == expected, result.reason
    assert result.control.passed and "inside" in result.control.summary


@pytest.mark.parametrize(
    "null",
    [
        interval(0.1, 0.05, 0.15),  # the null shows a gap: the instrument sees one anywhere
        interval(0.0, -0.05, 0.05),  # too wide to call equivalent to 0
        interval(0.0, -0.01, 0.01, n=2),  # too few seeds
        None,  # not run
    ],
)
def test_a_failing_null_makes_even_a_clear_gap_inconclusive(null):
    result = verdict(interval(0.4, 0.3, 0.5), null)
    assert result.value == INCONCLUSIVE
    assert not result.control.passed
    assert "failed its control" in result.reason and "supported" in result.reason


def test_nothing_measured_is_not_run():
    assert c1a.c1_rule({}).value == NOT_RUN


def tiny_config(**changes) -> PrecachingGapConfig:
    settings = {
        "modes_at_primary": ("normal", "kv", "residual"),
        "lags": 2,
        "seq_len": 8,
        "d_model": 16,
        "steps": 6,
        "batch_size": 4,
        "warmup_steps": 2,
        "max_lag": 3,
        "eval_every": 2,
        "seed": 0,
    }
    return PrecachingGapConfig(**{**settings, **changes})


def test_the_measurement_holds_the_null_and_the_gap_by_step(tmp_path):
    result = measure_precaching_gap(tiny_config())
    numbers = result.to_dict()
    assert numbers["null_gap"]["n"] == 3 and result.NULL_LABEL in numbers["settings"]
    assert set(numbers["settings"][result.NULL_LABEL]) == {"normal", "kv"}
    curves = numbers["curves"]
    assert curves["steps"] == [2, 4, 6]
    assert set(curves["tasks"]["p = 1"]) == {"normal", "kv", "residual"}
    # The last point of each curve is the held-out loss the gap is computed from.
    assert [c[-1] for c in curves["tasks"]["p = 1"]["kv"]] == numbers["settings"]["p = 1"]["kv"][
        "values"
    ]
    written = result.write(tmp_path)
    assert (tmp_path / "gap_by_step.png").exists() and (tmp_path / "gap_by_step.json").exists()
    assert len(written) == 4
    # The rule reads the stored numbers: it recomputes from the JSON.
    section = SectionResult(summary="", numbers=json.loads(json.dumps(numbers)))
    assert c1a.c1_rule({"C1a": section}).control is not None


@pytest.mark.slow
def test_the_null_passes_and_the_task_shows_a_gap_at_small_size():
    """Planted and absent effect through the report's own measurement and rule: lags = 3
    must give a clear gap, lags = 0 a gap inside ±0.03 (the control passes)."""
    config = tiny_config(
        modes_at_primary=("normal", "kv"),
        lags=3,
        seq_len=16,
        d_model=64,
        steps=150,
        batch_size=32,
        lr=3e-3,
        warmup_steps=20,
        max_lag=4,
        eval_every=None,
    )
    numbers = measure_precaching_gap(config).to_dict()
    section = SectionResult(summary="", numbers=numbers)
    verdict = c1a.c1_rule({"C1a": section})
    assert verdict.control.passed, verdict.control.summary
    assert verdict.value == SUPPORTED, verdict.reason
