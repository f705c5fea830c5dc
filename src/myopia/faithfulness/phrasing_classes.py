"""Classes of continuations: C7 and C8 compare the probability of two classes of replies,
each given as a few phrasings (continuations of the same prompt)."""

from __future__ import annotations

import math
from collections.abc import Sequence


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
