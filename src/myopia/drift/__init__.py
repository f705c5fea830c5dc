"""Self-generation drift (C9): does pure generation leave the distribution of natural text,
and can a linear read-out of the model's own state tell?

- ``pairs``: for each prompt from the corpus, the natural continuation and one the model
  sampled itself, of the same length;
- ``measure``: per-position NLL of both under the model, and a linear probe that tells
  self-generated from natural continuations from the hidden state after k tokens
  (``DriftConfig`` with the report's presets, ``measure.measure``, ``DriftResult``);
- ``plots``: the NLL curves and the probe accuracy, each with its JSON.
"""

from myopia.drift.measure import DriftConfig, DriftResult, measure_drift
from myopia.drift.pairs import ContinuationPairs, sample_pairs

__all__ = [
    "ContinuationPairs",
    "DriftConfig",
    "DriftResult",
    "measure_drift",
    "sample_pairs",
]
