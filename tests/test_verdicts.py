"""The shared verdict machinery of CLAIMS.md v2: controls and interval comparisons."""

from __future__ import annotations

import pytest

from myopia.report.verdicts import (
    FAILED_CONTROL,
    INCONCLUSIVE,
    NOT_RUN,
    REFUTED,
    SUPPORTED,
    Control,
    Verdict,
    compare_equivalence,
    compare_interval,
    inside,
    with_control,
)
from myopia.stats import Interval


def interval(low: float, high: float) -> Interval:
    return Interval(mean=(low + high) / 2, low=low, high=high, n=8, level=0.95)


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(0.1, 0.3, SUPPORTED), (-0.3, -0.1, REFUTED), (-0.1, 0.2, INCONCLUSIVE)],
)
def test_compare_interval_each_way(low, high, expected):
    assert compare_interval(interval(low, high), 0.0, "gap").value == expected


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (-0.02, 0.02, SUPPORTED),  # inside the band: equivalent to no effect
        (0.05, 0.2, REFUTED),  # wholly above the band
        (-0.2, -0.04, REFUTED),  # wholly below it
        (-0.01, 0.08, INCONCLUSIVE),  # overlaps its edge
    ],
)
def test_compare_equivalence_each_way(low, high, expected):
    assert compare_equivalence(interval(low, high), -0.03, 0.03, "Δ").value == expected


def test_inside_is_strict():
    assert inside(interval(-0.02, 0.02), -0.03, 0.03)
    assert not inside(interval(-0.03, 0.02), -0.03, 0.03)


def test_failed_control_makes_any_verdict_inconclusive():
    failed = Control(passed=False, summary="the null gap was 0.2")
    for value in (SUPPORTED, REFUTED, INCONCLUSIVE):
        verdict = with_control(Verdict(value, "main number"), failed)
        assert verdict.value == INCONCLUSIVE
        assert verdict.reason.startswith(FAILED_CONTROL)
        assert "the null gap was 0.2" in verdict.reason
        assert verdict.to_dict()["control"] == {"passed": False, "summary": "the null gap was 0.2"}


def test_passed_control_keeps_the_verdict_and_is_recorded():
    passed = Control(passed=True, summary="null gap 0.001")
    verdict = with_control(Verdict(REFUTED, "below 0"), passed)
    assert (verdict.value, verdict.reason) == (REFUTED, "below 0")
    assert Control.from_dict(verdict.to_dict()["control"]) == passed


def test_not_run_stays_not_run():
    assert with_control(Verdict(NOT_RUN, "x"), Control(False, "y")).value == NOT_RUN
