"""The baselines: unigram, offset-k bigram, and trigram and 4-gram tables with back-off,
counted on text the probes never see."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sparse
import torch

CONTEXTS = (2, 3)  # context lengths of the trigram and 4-gram tables


@dataclass
class NgramTables:
    """Unigram and offset-k bigram counts of a text, and the baselines they give."""

    vocab_size: int
    unigram_counts: np.ndarray  # (V,) int64
    pair_counts: dict[int, sparse.csr_matrix]  # k -> (V, V): count of (x_t, x_{t+k})
    smoothing: float = 1.0
    # (context length m, k) -> (sorted keys of the m tokens x_{t-m+1..t} in base V, the
    # most frequent x_{t+k} after each key); m = 2: trigram, m = 3: 4-gram
    context_modes: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )
    _modes: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def count(
        cls, windows: torch.Tensor, vocab_size: int, offsets: tuple[int, ...], smoothing=1.0
    ) -> NgramTables:
        """Count ``windows`` (N, T) of token ids below ``vocab_size``."""
        ids = windows.cpu().numpy().astype(np.int64)
        if ids.size == 0:
            raise ValueError("the table text is empty")
        if ids.min() < 0 or ids.max() >= vocab_size:
            raise ValueError(f"token ids must lie in [0, {vocab_size})")
        unigram = np.bincount(ids.ravel(), minlength=vocab_size)
        pairs = {}
        for k in offsets:
            if k >= ids.shape[1]:
                raise ValueError(f"offset {k} does not fit in windows of {ids.shape[1]} tokens")
            a, b = ids[:, :-k].ravel(), ids[:, k:].ravel()
            matrix = sparse.csr_matrix(
                (np.ones(a.size, dtype=np.int64), (a, b)), shape=(vocab_size, vocab_size)
            )
            matrix.sum_duplicates()
            pairs[k] = matrix
        tables = cls(vocab_size, unigram, pairs, smoothing)
        for m in CONTEXTS:
            if vocab_size ** (m + 1) >= 2**63:
                continue  # keys would overflow int64: no table of this order
            for k in offsets:
                if k + m - 1 < ids.shape[1]:
                    tables.context_modes[m, k] = tables._count_contexts(ids, m, k)
        return tables

    def _count_contexts(self, ids: np.ndarray, m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        v, t = self.vocab_size, ids.shape[1]
        span = t - k - m + 1  # positions whose m-token context and target t + k fit
        key = np.zeros(ids.shape[0] * span, dtype=np.int64)
        for j in range(m):  # x_{t-m+1+j}, oldest first
            key = key * v + ids[:, j : j + span].ravel()
        later = ids[:, m - 1 + k : m - 1 + k + span].ravel()
        combined, count = np.unique(key * v + later, return_counts=True)
        key, later = combined // v, combined % v
        # Per key: highest count, then the more frequent token, then the lower id.
        order = np.lexsort((later, -self.unigram_counts[later], -count, key))
        key, later = key[order], later[order]
        first = np.r_[True, key[1:] != key[:-1]]
        return key[first], later[first]

    @property
    def unigram_prediction(self) -> int:
        """The most frequent token (ties: the lowest id)."""
        return int(np.argmax(self.unigram_counts))

    def top_classes(self, n: int) -> np.ndarray:
        """The ``n`` most frequent token ids, most frequent first (ties: lower id first)."""
        order = np.lexsort((np.arange(self.vocab_size), -self.unigram_counts))
        return order[: min(n, self.vocab_size)]

    def bigram_mode(self, k: int) -> np.ndarray:
        """(V,) the bigram prediction at offset ``k`` for every value of token t."""
        if k not in self._modes:
            coo = self.pair_counts[k].tocoo()
            src, dst, count = coo.row, coo.col, coo.data
            # Per source: highest count, then the more frequent token, then the lower id.
            order = np.lexsort((dst, -self.unigram_counts[dst], -count, src))
            src_sorted = src[order]
            first = np.r_[True, src_sorted[1:] != src_sorted[:-1]] if src.size else []
            mode = np.full(self.vocab_size, self.unigram_prediction, dtype=np.int64)
            mode[src_sorted[first]] = dst[order][first]
            self._modes[k] = mode
        return self._modes[k]

    def bigram_predictions(self, current: np.ndarray, k: int) -> np.ndarray:
        return self.bigram_mode(k)[current]

    def trigram_predictions(self, before: np.ndarray, current: np.ndarray, k: int):
        """The most frequent x_{t+k} after the pair (x_{t-1}, x_t); the bigram prediction
        for a pair the table text never shows."""
        return self.context_predictions(np.stack([before, current], axis=1), k)

    def context_predictions(self, context: np.ndarray, k: int) -> np.ndarray:
        """The most frequent x_{t+k} after the m tokens ``context`` (n, m), oldest first,
        backing off to the last m - 1 tokens where the table text never shows them, down
        to the bigram. A context entry < 0 (before the window's start) is never seen."""
        context = np.asarray(context, dtype=np.int64)
        m = context.shape[1]
        if m == 1:
            return self.bigram_predictions(context[:, 0], k)
        shorter = self.context_predictions(context[:, 1:], k)
        if (m, k) not in self.context_modes:
            return shorter
        keys, modes = self.context_modes[m, k]
        if not len(keys):
            return shorter
        query = np.zeros(len(context), dtype=np.int64)
        for j in range(m):
            query = query * self.vocab_size + np.maximum(context[:, j], 0)
        at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        seen = (keys[at] == query) & (context >= 0).all(1)
        return np.where(seen, modes[at], shorter)

    def bigram_probabilities(self, current: np.ndarray, k: int, classes: np.ndarray):
        """``p_k(c | x_t)`` for the tokens ``current`` (n,) and ``classes`` (K,), smoothed
        towards the unigram distribution: (n, K) float32."""
        unigram = self.unigram_counts[classes] / self.unigram_counts.sum()  # (K,)
        rows = self.pair_counts[k][current][:, classes].toarray()  # (n, K)
        totals = np.asarray(self.pair_counts[k][current].sum(axis=1)).ravel()  # (n,)
        s = self.smoothing
        return ((rows + s * unigram) / (totals + s)[:, None]).astype(np.float32)
