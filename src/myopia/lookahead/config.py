"""What the future-token probes are made of and how they are scored (see ``myopia.lookahead``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAMILIES = ("residual", "lens")
# The token-only baselines a probe must beat (CLAIMS.md v2: the strongest of them, chosen
# on validation): token t alone (unigram, bigram), the last 2 and 3 tokens with back-off
# (trigram, 4-gram), and a linear probe on the one-hot of the last 3 tokens ("onehot-3").
BASELINES = ("unigram", "bigram", "trigram", "4-gram", "onehot-3")
# A descriptive reference that does not vote: the model's own next token followed by the
# bigram table (does the probe know more than the model's next-token guess?).
REFERENCES = ("model-chain",)


@dataclass(frozen=True)
class LookaheadConfig:
    """How the probes are built and scored (the data sizes are the caller's)."""

    offsets: tuple[int, ...] = (1, 2, 3)
    n_classes: int = 1024  # the most frequent tokens of the table text
    families: tuple[str, ...] = FAMILIES
    layers: tuple[int, ...] | None = None  # hidden-state indices; None: all (0 = embeddings)
    first_position: int = 1
    # The one-hot baseline's tokens: each of the last 3 tokens as one of the this many most
    # frequent tokens or "other" (3 x (n + 1) features, fitted like a residual probe).
    onehot_classes: int = 512
    lambdas: tuple[float, ...] = tuple(float(x) for x in np.logspace(-4, 3, 15))
    smoothing: float = 1.0  # bigram probabilities: (count + s * unigram) / (total + s)
    batch_size: int = 8
    level: float = 0.95
    n_resamples: int = 2000
    seed: int = 0

    def __post_init__(self):
        if not self.offsets or min(self.offsets) < 1:
            raise ValueError(f"offsets must be positive, got {self.offsets}")
        if unknown := set(self.families) - set(FAMILIES):
            raise ValueError(f"unknown probe families {sorted(unknown)}: use {FAMILIES}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {self.n_classes}")
        if self.first_position < 0:
            raise ValueError(f"first_position must be >= 0, got {self.first_position}")
