"""Confidence intervals for experiment results.

Every number an experiment reports (a loss difference, a fraction of gradient norm) is
an estimate from a finite sample of sequences, seeds or layers. A verdict such as "the
myopic model is worse" is only as good as the interval around that estimate, so
experiments report an ``Interval`` and decide with ``above``/``below``/``excludes``
rather than by comparing point estimates.

Three constructors:

- ``mean_ci``: Student's t interval for a mean; the default for roughly normal,
  independent measurements (per-seed or per-batch means usually are).
- ``bootstrap_ci``: percentile bootstrap for any statistic (median, trimmed mean) or for
  skewed data where the t interval is doubtful.
- ``paired_difference_ci``: t interval for the mean of ``a - b`` when ``a[i]`` and
  ``b[i]`` were measured on the same item (same sequence, same seed). Pairing removes
  the shared variation, which usually makes the interval much narrower than comparing
  two independent intervals.

Example (per-sequence losses of two models on the same eval sequences)::

    diff = paired_difference_ci(loss_myopic, loss_full)
    if diff.above(0.0):
        ...  # the myopic model's loss is higher, at 95% confidence
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

ArrayLike = Sequence[float] | np.ndarray

__all__ = [
    "Interval",
    "bootstrap_ci",
    "cluster_bootstrap_mean",
    "mean_ci",
    "n_for_half_width",
    "paired_difference_ci",
]


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval ``[low, high]``.

    ``mean`` is the point estimate: the sample mean for ``mean_ci`` and
    ``paired_difference_ci``, the statistic on the full sample for ``bootstrap_ci``.
    ``n`` is the sample size and ``level`` the confidence level (0.95 for 95%). With one
    observation nothing is known about the spread, so ``low``/``high`` are infinite: an
    honest "no information" rather than a zero-width interval that looks certain.
    """

    mean: float
    low: float
    high: float
    n: int
    level: float

    @property
    def width(self) -> float:
        """``high - low``; infinite when ``n == 1``."""
        return self.high - self.low

    def excludes(self, value: float) -> bool:
        """True when ``value`` lies outside the interval, i.e. the data reject it at
        this confidence level (two-sided)."""
        return value < self.low or value > self.high

    def above(self, value: float) -> bool:
        """True when the whole interval lies above ``value``: the quantity is confidently
        larger than ``value`` (e.g. ``diff.above(0)`` for "a is larger than b")."""
        return self.low > value

    def below(self, value: float) -> bool:
        """True when the whole interval lies below ``value``."""
        return self.high < value

    def text(self, spec: str = "+.3f") -> str:
        """The estimate and interval in words for reports: ``+0.435 (95% CI [+0.257, +0.613])``;
        ``spec`` is the format of each number. An unbounded interval (one sample) says so."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f"{self.mean:{spec}} (n = {self.n}: too few for a {self.level:.0%} CI)"
        return f"{self.mean:{spec}} ({self.level:.0%} CI [{self.low:{spec}}, {self.high:{spec}}])"

    @classmethod
    def from_dict(cls, data: dict) -> Interval:
        """The interval ``to_dict`` gave, also as read back from a JSON file, where an
        unbounded end was written as ``null`` (JSON has no infinity)."""

        def number(key: str, missing: float) -> float:
            value = data[key]
            return missing if value is None else float(value)

        return cls(
            mean=number("mean", math.nan),
            low=number("low", -math.inf),
            high=number("high", math.inf),
            n=int(data["n"]),
            level=float(data["level"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON reports. Infinite bounds stay ``float('inf')`` here;
        ``myopia.io.atomic_write_json`` writes them as ``null``, which ``from_dict`` reads
        back."""
        return asdict(self)


def _as_sample(values: ArrayLike, name: str = "values") -> np.ndarray:
    """Flat float64 array; rejects empty and non-finite input, which would otherwise
    produce a NaN interval that silently fails every comparison."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: a confidence interval needs at least one value")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1, got {level}")


def mean_ci(values: ArrayLike, level: float = 0.95) -> Interval:
    """Student's t confidence interval for the mean of ``values``.

    Assumes independent draws from a roughly normal distribution; the t quantile (not
    the normal 1.96) keeps coverage right for the small samples experiments have (a
    handful of seeds). With ``n == 1`` the interval is ``(-inf, inf)``.
    """
    _check_level(level)
    x = _as_sample(values)
    n = int(x.size)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean=mean, low=-math.inf, high=math.inf, n=1, level=level)
    sem = float(x.std(ddof=1)) / math.sqrt(n)
    half = float(_scipy_stats.t.ppf((1.0 + level) / 2.0, df=n - 1)) * sem
    return Interval(mean=mean, low=mean - half, high=mean + half, n=n, level=level)


def bootstrap_ci(
    values: ArrayLike,
    statistic: Callable[[np.ndarray], float] = np.mean,
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap confidence interval for ``statistic(values)``.

    Resamples ``values`` with replacement ``n_resamples`` times from a
    ``numpy.random.Generator`` seeded with ``seed``, so the interval is reproducible.
    ``statistic`` receives a 1-D float array and returns a number. The percentile
    bootstrap under-covers for very small samples (it cannot see tails it has not
    sampled); prefer ``mean_ci`` for a mean of fewer than ~20 values. With ``n == 1``
    every resample is identical, so the interval is ``(-inf, inf)`` as in ``mean_ci``.
    """
    _check_level(level)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    x = _as_sample(values)
    n = int(x.size)
    estimate = float(statistic(x))
    if n == 1:
        return Interval(mean=estimate, low=-math.inf, high=math.inf, n=1, level=level)
    rng = np.random.default_rng(seed)
    # One resample at a time: memory stays O(n) for large samples, and any statistic
    # works, including ones without an ``axis`` argument.
    replicates = np.empty(n_resamples, dtype=np.float64)
    for i in range(n_resamples):
        replicates[i] = statistic(x[rng.integers(0, n, size=n)])
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
    return Interval(mean=estimate, low=float(low), high=float(high), n=n, level=level)


def paired_difference_ci(a: ArrayLike, b: ArrayLike, level: float = 0.95) -> Interval:
    """t interval for the mean of ``a - b``, where ``a[i]`` and ``b[i]`` are paired.

    Use it when both conditions were measured on the same items (the same eval
    sequences, the same seeds): the per-item differences cancel what the items share.
    """
    x = _as_sample(a, "a")
    y = _as_sample(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired samples must have equal length, got {x.size} and {y.size}")
    return mean_ci(x - y, level=level)


def cluster_bootstrap_mean(
    values: ArrayLike,
    clusters: Sequence[str],
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Mean of ``values`` with a percentile bootstrap CI that resamples whole ``clusters``.

    Use it when items come in groups that share most of their input (the questions about
    one article, the outputs of one command): they are not independent, and an interval
    that treats them as independent would be too narrow. Each resample draws clusters
    with replacement and recomputes the pooled mean (sum over drawn clusters / count).

    ``values[i]`` belongs to cluster ``clusters[i]``; a 0/1 ``values`` gives a rate, a
    per-item difference gives a paired difference. One cluster: the interval is
    ``(-inf, inf)``, as ``myopia.stats`` does for one observation."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or len(clusters) != x.size:
        raise ValueError("values must be a non-empty list with one cluster name per value")
    names, index = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.bincount(index, weights=x, minlength=len(names))  # (K,)
    counts = np.bincount(index, minlength=len(names)).astype(np.float64)  # (K,)
    estimate = float(x.mean())
    if len(names) == 1:
        return Interval(estimate, -math.inf, math.inf, int(x.size), level)
    draws = np.random.default_rng(seed).integers(0, len(names), size=(n_resamples, len(names)))
    replicates = sums[draws].sum(1) / counts[draws].sum(1)  # (R,)
    alpha = (1 - level) / 2
    low, high = np.quantile(replicates, [alpha, 1 - alpha])
    return Interval(estimate, float(low), float(high), int(x.size), level)


def n_for_half_width(
    pilot_sd: float, half_width: float, level: float = 0.95, minimum: int = 2, maximum: int = 10_000
) -> int:
    """The smallest sample size whose Student's t interval for a mean has half-width at
    most ``half_width``, for independent draws with standard deviation ``pilot_sd``.

    This is the power argument CLAIMS.md v2 asks every budget to carry: measure the spread
    on pilot seeds, decide how narrow the verdict's CI must be (e.g. half the distance
    from the expected effect to the threshold, or the half-width of an equivalence band),
    and take this n, never fewer than ``minimum``. ``maximum`` caps it so that a nonsense
    pilot (a huge spread) errs loudly instead of planning a year-long run.
    """
    _check_level(level)
    if not (pilot_sd >= 0 and half_width > 0):
        raise ValueError(f"need pilot_sd >= 0 and half_width > 0, got {pilot_sd}, {half_width}")
    quantile = (1.0 + level) / 2.0
    for n in range(max(minimum, 2), maximum + 1):
        t = float(_scipy_stats.t.ppf(quantile, df=n - 1))
        if t * pilot_sd / math.sqrt(n) <= half_width:
            return n
    raise ValueError(
        f"a CI half-width of {half_width:g} needs more than {maximum} draws at sd {pilot_sd:g}"
    )
