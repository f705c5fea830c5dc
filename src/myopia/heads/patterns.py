"""Detection patterns: where a head of each kind should attend, per query and key position.

Each function maps token ids ``(B, T)`` to a boolean pattern ``(B, T_query, T_key)``,
True where a head of that kind is expected to attend. They are the patterns of
TransformerLens's head detector (``transformer_lens.head_detector``,
``get_*_head_detection_pattern``), computed here for a whole batch at once:

- ``previous_token``: query t attends to key t-1 (nothing for t = 0);
- ``duplicate_token``: query t attends to every earlier position s < t holding the same
  token (not to itself);
- ``induction``: query t attends to every key s (1 <= s <= t) whose previous token s-1 is an
  earlier occurrence of t's token (s-1 < t, same token): "the token after an earlier copy
  of me". As in TransformerLens, s = t itself counts when t's token repeats t-1's.

For tokens ``a b c a b a`` (positions 0..5): duplicate pairs (3,0), (4,1), (5,0), (5,3);
induction pairs (3,1), (4,2), (5,1), (5,4).
"""

from __future__ import annotations

import torch

__all__ = [
    "PATTERNS",
    "duplicate_token_pattern",
    "induction_pattern",
    "previous_token_pattern",
]


def _positions(input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    return positions[:, None], positions[None, :]  # query (T, 1), key (1, T)


def previous_token_pattern(input_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, T, T) bool: True at (t, t-1)."""
    query, key = _positions(input_ids)
    batch, seq_len = input_ids.shape
    return (key == query - 1).expand(batch, seq_len, seq_len)


def duplicate_token_pattern(input_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, T, T) bool: True at (t, s) for s < t with ``input_ids[s] == input_ids[t]``."""
    query, key = _positions(input_ids)
    same = input_ids[:, :, None] == input_ids[:, None, :]  # (B, T_query, T_key)
    return same & (key < query)


def induction_pattern(input_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, T, T) bool: True at (t, s) when (t, s-1) is a duplicate-token pair.

    The duplicate pattern moved one key to the right, so s <= t always holds.
    """
    duplicate = duplicate_token_pattern(input_ids)  # (B, T_query, T_key)
    pattern = torch.zeros_like(duplicate)
    pattern[:, :, 1:] = duplicate[:, :, :-1]
    return pattern


PATTERNS = {
    "previous_token": previous_token_pattern,
    "duplicate_token": duplicate_token_pattern,
    "induction": induction_pattern,
}
