"""Rates and their confidence intervals when items come in clusters.

C7 shows one command with several outputs and C8 asks several questions about one
article: items of a cluster share most of their prompt, so they are not independent, and
an interval that treats them as independent would be too narrow. Here the bootstrap
resamples whole clusters (commands, articles) and recomputes the pooled mean
(sum over the drawn clusters / count), which keeps the within-cluster correlation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from myopia.stats import Interval


def cluster_bootstrap_mean(
    values: Sequence[float],
    clusters: Sequence[str],
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Mean of ``values`` with a percentile bootstrap CI over ``clusters``.

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


def log_sum_exp(values: Sequence[float]) -> float:
    """log(sum(exp(values))): the log-probability of a class of disjoint continuations."""
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def disjoint_phrasings(phrasings: Sequence[str]) -> list[str]:
    """Drop duplicates and any phrasing that another one is a prefix of.

    A continuation's probability is that of every text that starts with it, so " Dumbledore"
    already holds " Dumbledore." and summing both would count that text twice."""
    unique = list(dict.fromkeys(p for p in phrasings if p.strip()))
    return [p for p in unique if not any(q != p and p.startswith(q) for q in unique)]
