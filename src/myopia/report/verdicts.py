"""Verdicts, and the one way a confidence interval turns into one.

A verdict is ``supported``, ``refuted`` or ``inconclusive`` (CLAIMS.md), or ``not run``
when the measurement its rule needs was not made. Rules live beside the experiments that
measure them and receive only measured numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from myopia.stats import Interval

SUPPORTED, REFUTED, INCONCLUSIVE, NOT_RUN = "supported", "refuted", "inconclusive", "not run"
VERDICTS = (SUPPORTED, REFUTED, INCONCLUSIVE, NOT_RUN)


@dataclass(frozen=True)
class Verdict:
    value: str
    reason: str

    def __post_init__(self):
        if self.value not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {self.value!r}")

    def to_dict(self) -> dict:
        return {"verdict": self.value, "reason": self.reason}


def compare_interval(interval: Interval, threshold: float, what: str) -> Verdict:
    """``supported`` if the whole CI lies above ``threshold``, ``refuted`` if below,
    ``inconclusive`` if it straddles it."""
    described = (
        f"{what} = {interval.mean:.4g}, {interval.level:.0%} CI "
        f"[{interval.low:.4g}, {interval.high:.4g}]"
    )
    if interval.low > threshold:
        return Verdict(SUPPORTED, f"{described} lies above {threshold:g}")
    if interval.high < threshold:
        return Verdict(REFUTED, f"{described} lies below {threshold:g}")
    return Verdict(INCONCLUSIVE, f"{described} straddles {threshold:g}")
