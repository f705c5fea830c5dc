"""Verdicts, their controls, and the ways a confidence interval turns into a verdict.

A verdict is ``supported``, ``refuted`` or ``inconclusive`` (CLAIMS.md), or ``not run``
when the measurement its rule needs was not made. Rules live beside the experiments that
measure them and receive only measured numbers.

CLAIMS.md version 2, rule 1: every verdict carries the control that was run beside it (a
null where the effect must vanish, or a positive control where it must appear). A failed
control makes the verdict ``inconclusive`` whatever the main number says:
``with_control`` is the one place that happens.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from myopia.stats import Interval

SUPPORTED, REFUTED, INCONCLUSIVE, NOT_RUN = "supported", "refuted", "inconclusive", "not run"
VERDICTS = (SUPPORTED, REFUTED, INCONCLUSIVE, NOT_RUN)
FAILED_CONTROL = "the instrument failed its control"


@dataclass(frozen=True)
class Control:
    """The outcome of a claim's control: did the instrument give the known answer?"""

    passed: bool
    summary: str  # what was run and what it gave, in plain words with the numbers

    def to_dict(self) -> dict:
        return {"passed": self.passed, "summary": self.summary}

    @classmethod
    def from_dict(cls, data: dict) -> Control:
        return cls(passed=bool(data["passed"]), summary=str(data["summary"]))


@dataclass(frozen=True)
class Verdict:
    value: str
    reason: str
    control: Control | None = None

    def __post_init__(self):
        if self.value not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {self.value!r}")

    def to_dict(self) -> dict:
        return {
            "verdict": self.value,
            "reason": self.reason,
            "control": None if self.control is None else self.control.to_dict(),
        }


def with_control(verdict: Verdict, control: Control) -> Verdict:
    """``verdict`` with its control attached; ``inconclusive`` if the control failed.

    A verdict that was already ``not run`` stays so: nothing was measured to doubt.
    """
    if verdict.value == NOT_RUN:
        return replace(verdict, control=control)
    if not control.passed:
        return Verdict(
            INCONCLUSIVE,
            f"{FAILED_CONTROL} ({control.summary}); the main measurement said "
            f"{verdict.value}: {verdict.reason}",
            control,
        )
    return replace(verdict, control=control)


def describe(interval: Interval, what: str) -> str:
    """``what = mean, 95% CI [low, high]``: how every rule quotes an interval."""
    return (
        f"{what} = {interval.mean:.4g}, {interval.level:.0%} CI "
        f"[{interval.low:.4g}, {interval.high:.4g}]"
    )


def compare_interval(interval: Interval, threshold: float, what: str) -> Verdict:
    """``supported`` if the whole CI lies above ``threshold``, ``refuted`` if below,
    ``inconclusive`` if it straddles it."""
    described = describe(interval, what)
    if interval.low > threshold:
        return Verdict(SUPPORTED, f"{described} lies above {threshold:g}")
    if interval.high < threshold:
        return Verdict(REFUTED, f"{described} lies below {threshold:g}")
    return Verdict(INCONCLUSIVE, f"{described} straddles {threshold:g}")


def inside(interval: Interval, low: float, high: float) -> bool:
    """True when the whole CI lies strictly inside ``(low, high)``: the quantity is
    equivalent to the band's centre at this confidence level (an equivalence test)."""
    return low < interval.low and interval.high < high


def compare_equivalence(interval: Interval, low: float, high: float, what: str) -> Verdict:
    """``supported`` if the whole CI lies inside ``(low, high)`` (no effect, to within the
    band), ``refuted`` if it lies wholly outside the band, ``inconclusive`` otherwise."""
    described = describe(interval, what)
    band = f"({low:g}, {high:g})"
    if inside(interval, low, high):
        return Verdict(SUPPORTED, f"{described} lies inside {band}")
    if interval.low >= high or interval.high <= low:
        return Verdict(REFUTED, f"{described} lies wholly outside {band}")
    return Verdict(INCONCLUSIVE, f"{described} overlaps the edge of {band}")
