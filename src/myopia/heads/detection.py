"""Find previous-token, duplicate-token and induction heads by their attention patterns.

The scores are TransformerLens's (``transformer_lens.head_detector.detect_head``), with its
default error measure, so numbers can be compared with it:

- the detection patterns are TransformerLens's (see ``myopia.heads.patterns``);
- the score of a head on one sequence is its ``"mul"`` measure: the attention mass that
  falls on the pattern divided by the head's total attention mass,
  ``sum(A * P) / sum(A)`` over all (query, key) pairs of the sequence. Every query row
  counts, also rows where the pattern is empty (the first token; tokens seen for the
  first time), so a perfect previous-token head scores (T-1)/T on T tokens, not 1;
- ``exclude_bos`` / ``exclude_current_token`` (default False, as in TransformerLens) zero
  the attention to key 0 / on the diagonal before both sums, so the score becomes a
  fraction of the remaining attention. Key 0 is excluded whatever token it holds;
- several sequences: the score of each sequence, then the mean over sequences, as
  ``detect_head`` does for a list of strings.

Checked against TransformerLens 4.3.0's ``detect_head`` itself, fed these attention
patterns through a stand-in model: equal to 1e-7 on SmolLM2 and fresh Llama/GPT-2
models, for all four ``exclude_*`` settings. Differences: TransformerLens tokenizes text
itself and prepends BOS by default; here the caller passes token ids, so prepend the BOS
token (``tokenizer.bos_token_id``) to compare. Older TransformerLens versions dropped
``exclude_*`` for a list of strings; here, as in 4.3, they apply to every sequence.
TransformerLens requires T < n_ctx, here T <= the context length is allowed. Only
``"mul"`` is provided, not ``"abs"``.

Example::

    model, tokenizer = load_model("smollm2")
    scores = detect_heads(model, input_ids)        # input_ids (B, T), BOS first
    scores.top("previous_token", 3)                # [Head(layer=16, head=0, score=0.79), ...]
    scores["induction"]                            # (30, 9) tensor
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from myopia.errors import MyopiaError
from myopia.heads.attention import attention_patterns, check_input_ids
from myopia.heads.patterns import PATTERNS

__all__ = ["KINDS", "Head", "HeadScores", "detect_heads", "pattern_scores"]

KINDS = tuple(PATTERNS)  # ("previous_token", "duplicate_token", "induction")
MUL_METRIC = (
    "TransformerLens detect_head 'mul': attention on the pattern / all attention, "
    "per sequence, mean over sequences"
)


class Head(NamedTuple):
    """One attention head and its score; ``head`` is the query-head index in its layer."""

    layer: int
    head: int
    score: float


@dataclass(frozen=True)
class HeadScores:
    """Scores per (layer, head), one ``(n_layers, n_heads)`` float tensor per kind.

    ``method`` says how they were measured (metric, settings, data) and goes into
    ``to_dict`` unchanged.
    """

    scores: dict[str, torch.Tensor]
    n_sequences: int
    seq_len: int
    method: dict[str, Any] = field(default_factory=dict)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.scores)

    @property
    def n_layers(self) -> int:
        return next(iter(self.scores.values())).shape[0]

    @property
    def n_heads(self) -> int:
        return next(iter(self.scores.values())).shape[1]

    def __getitem__(self, kind: str) -> torch.Tensor:
        if kind not in self.scores:
            raise MyopiaError(f"no {kind!r} scores here: choose from {', '.join(self.kinds)}")
        return self.scores[kind]

    def top(self, kind: str, k: int = 5) -> list[Head]:
        """The ``k`` highest-scoring heads of ``kind``, best first (ties: lower layer, then
        lower head first)."""
        table = self[kind]
        flat = table.flatten()
        order = torch.sort(flat, descending=True, stable=True).indices[: max(k, 0)]
        return [Head(int(i) // self.n_heads, int(i) % self.n_heads, float(flat[i])) for i in order]

    def to_dict(self, k: int = 5) -> dict[str, Any]:
        """Plain JSON-ready data: settings, the full tables (``scores[kind][layer][head]``)
        and the top ``k`` heads of each kind."""
        return {
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_sequences": self.n_sequences,
            "seq_len": self.seq_len,
            "method": self.method,
            "scores": {kind: table.tolist() for kind, table in self.scores.items()},
            "top": {kind: [h._asdict() for h in self.top(kind, k)] for kind in self.kinds},
        }


def _check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    kinds = (kinds,) if isinstance(kinds, str) else tuple(dict.fromkeys(kinds))
    unknown = [k for k in kinds if k not in PATTERNS]
    if unknown or not kinds:
        raise MyopiaError(
            f"unknown head kind(s) {', '.join(map(repr, unknown)) or '(none given)'}: "
            f"choose from {', '.join(KINDS)}"
        )
    return kinds


def pattern_scores(
    attention: torch.Tensor,
    pattern: torch.Tensor,
    *,
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
) -> torch.Tensor:
    """The ``"mul"`` score of each head on each sequence: ``(B, H)``.

    ``attention`` is ``(B, H, T, T)`` (query, key); ``pattern`` is ``(B, T, T)`` (bool or
    0/1). Computed in float32 whatever the attention's dtype.
    """
    weights = attention.float()  # (B, H, T, T)
    if exclude_bos or exclude_current_token:
        keep = torch.ones(weights.shape[-2:], device=weights.device)  # (T, T)
        if exclude_bos:
            keep[:, 0] = 0.0
        if exclude_current_token:
            keep.fill_diagonal_(0.0)
        weights = weights * keep
    on_pattern = torch.einsum("bhqk,bqk->bh", weights, pattern.to(weights))
    return on_pattern / weights.sum(dim=(-2, -1))


def detect_heads(
    model: nn.Module,
    input_ids: torch.Tensor,
    kinds: Iterable[str] = KINDS,
    *,
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
    batch_size: int | None = None,
) -> HeadScores:
    """Score every (layer, query head) of ``model`` as each of ``kinds`` on ``input_ids``.

    ``input_ids`` is ``(B, T)``: equal-length sequences, no padding, taken as they are
    (prepend BOS yourself where the model expects one). All kinds come from one batched
    forward pass (``batch_size`` splits the batch into several passes of that many
    sequences, to bound the memory for the attention weights of all layers, which is
    ``n_layers * B * n_heads * T * T`` floats). The model's attention implementation is
    switched to one that returns weights for the pass and restored afterwards.
    """
    kinds = _check_kinds(kinds)
    check_input_ids(model, input_ids)
    if batch_size is not None and batch_size < 1:
        raise MyopiaError(f"batch_size must be at least 1, got {batch_size}")
    totals: dict[str, torch.Tensor] = {}
    for chunk in input_ids.split(batch_size or len(input_ids)):
        patterns = attention_patterns(model, chunk)  # n_layers x (b, H, T, T)
        device = patterns[0].device
        targets = {kind: PATTERNS[kind](chunk.to(device)) for kind in kinds}  # (b, T, T)
        for kind, target in targets.items():
            per_layer = [
                pattern_scores(
                    attention,
                    target,
                    exclude_bos=exclude_bos,
                    exclude_current_token=exclude_current_token,
                ).sum(0)  # (H,): summed over this chunk's sequences
                for attention in patterns
            ]
            layer_sums = torch.stack(per_layer).cpu()  # (n_layers, H)
            totals[kind] = totals[kind] + layer_sums if kind in totals else layer_sums
    n_sequences, seq_len = input_ids.shape
    return HeadScores(
        scores={kind: total / n_sequences for kind, total in totals.items()},
        n_sequences=n_sequences,
        seq_len=seq_len,
        method={
            "metric": MUL_METRIC,
            "exclude_bos": exclude_bos,
            "exclude_current_token": exclude_current_token,
        },
    )
