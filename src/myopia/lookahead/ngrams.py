"""The baselines: unigram and offset-k bigram (and trigram) tables, counted on text the
probes never see."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sparse
import torch


@dataclass
class NgramTables:
    """Unigram and offset-k bigram counts of a text, and the baselines they give."""

    vocab_size: int
    unigram_counts: np.ndarray  # (V,) int64
    pair_counts: dict[int, sparse.csr_matrix]  # k -> (V, V): count of (x_t, x_{t+k})
    smoothing: float = 1.0
    # k -> (sorted keys x_{t-1} * V + x_t, the most frequent x_{t+k} after each key)
    triple_modes: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
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
        for k in offsets:
            if k + 1 < ids.shape[1]:
                tables.triple_modes[k] = tables._count_triples(ids, k)
        return tables

    def _count_triples(self, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        v = self.vocab_size
        before, now, later = ids[:, : -k - 1], ids[:, 1:-k], ids[:, k + 1 :]  # (N, T - k - 1)
        key = before.ravel() * v + now.ravel()
        triples, count = np.unique(key * v + later.ravel(), return_counts=True)
        key, later = triples // v, triples % v
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
        keys, modes = self.triple_modes[k]
        query = before.astype(np.int64) * self.vocab_size + current
        at = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
        seen = keys[at] == query if len(keys) else np.zeros(len(query), dtype=bool)
        return np.where(seen, modes[at] if len(keys) else 0, self.bigram_predictions(current, k))

    def bigram_probabilities(self, current: np.ndarray, k: int, classes: np.ndarray):
        """``p_k(c | x_t)`` for the tokens ``current`` (n,) and ``classes`` (K,), smoothed
        towards the unigram distribution: (n, K) float32."""
        unigram = self.unigram_counts[classes] / self.unigram_counts.sum()  # (K,)
        rows = self.pair_counts[k][current][:, classes].toarray()  # (n, K)
        totals = np.asarray(self.pair_counts[k][current].sum(axis=1)).ravel()  # (n,)
        s = self.smoothing
        return ((rows + s * unigram) / (totals + s)[:, None]).astype(np.float32)
