"""A crossed bootstrap: resample articles and questions at once (C8).

Each item of C8 is one question asked of one article. Items share their article (all the
questions about it see the same text) and share their question (one off-topic question is
asked of many articles): both are sources of variation, and a bootstrap that resampled
only articles would treat the question list as fixed and give too narrow an interval for
a claim about questions in general. Each replicate draws articles with replacement and,
independently, questions with replacement within each question pool (off-topic questions
and control questions are drawn separately, so no draw lacks either kind); an item then
weighs (times its article was drawn) × (times its question was drawn), and a rate is the
weighted mean of its items (the pigeonhole bootstrap of Owen, 2007, for crossed random
effects). Statistics computed from the same replicates (a framing's rate and plain's) are
paired.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from myopia.stats import Interval


def _draw_counts(rng: np.random.Generator, n_resamples: int, size: int) -> np.ndarray:
    """``(n_resamples, size)``: how often each of ``size`` units is drawn, ``size`` draws."""
    draws = rng.integers(0, size, size=(n_resamples, size))  # (R, size)
    counts = np.zeros((n_resamples, size))
    np.add.at(counts, (np.arange(n_resamples)[:, None], draws), 1.0)
    return counts


class CrossedBootstrap:
    """Replicate weights for items keyed by ``article_id`` and ``question`` (and ``kind``,
    the question pool)."""

    def __init__(self, items: Sequence[dict], n_resamples: int = 2000, seed: int = 0):
        rng = np.random.default_rng(seed)
        articles = sorted({r["article_id"] for r in items})
        self._article = {a: j for j, a in enumerate(articles)}
        self._article_weights = _draw_counts(rng, n_resamples, len(articles))  # (R, A)
        self._question: dict[tuple[str, str], int] = {}
        blocks = []
        for kind in sorted({r["kind"] for r in items}):
            questions = sorted({r["question"] for r in items if r["kind"] == kind})
            for q in questions:
                self._question[(kind, q)] = len(self._question)
            blocks.append(_draw_counts(rng, n_resamples, len(questions)))
        self._question_weights = np.concatenate(blocks, axis=1) if blocks else None  # (R, Q)

    def replicates(self, rows: Sequence[dict], values: Sequence[float]) -> np.ndarray:
        """``(R,)`` weighted means of ``values`` (one per row); NaN where a replicate drew
        none of the rows."""
        a = np.array([self._article[r["article_id"]] for r in rows])
        q = np.array([self._question[(r["kind"], r["question"])] for r in rows])
        weights = self._article_weights[:, a] * self._question_weights[:, q]  # (R, m)
        total = weights.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, weights @ np.asarray(values, float) / total, np.nan)


def interval(estimate: float, replicates: np.ndarray, n: int, level: float = 0.95) -> Interval:
    """Percentile interval of ``replicates`` (NaN replicates left out) around ``estimate``."""
    alpha = (1 - level) / 2
    low, high = np.nanquantile(replicates, [alpha, 1 - alpha])
    return Interval(float(estimate), float(low), float(high), int(n), level)
