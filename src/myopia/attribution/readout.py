"""What a component's effect is measured on: the per-position read-out L_t, (B, T-1).

- ``loss``: the next-token cross-entropy L_t = -log p(x_{t+1} | x_<=t) (the default);
- ``logit``: the negative target logit -z_t[x_{t+1}], the cross-entropy without its
  log-partition term. It is linear in the logits, which makes first-order attribution
  exact on a model whose path from a component to the logits is linear (the tests use
  this to check the fast method against ablation to rounding error).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from myopia.errors import MyopiaError
from myopia.gradients.loss import forward_logits, token_losses, valid_targets

READOUTS = ("loss", "logit")


def check_readout(readout: str) -> None:
    if readout not in READOUTS:
        raise MyopiaError(f"unknown read-out {readout!r}: choose one of {', '.join(READOUTS)}")


def readout_values(logits: torch.Tensor, input_ids: torch.Tensor, readout: str) -> torch.Tensor:
    """(B, T-1): the read-out at each position t that predicts a next token."""
    check_readout(readout)
    if readout == "loss":
        return token_losses(logits, input_ids)
    return -logits[:, :-1].gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def position_readouts(
    model: torch.nn.Module, batch: Mapping[str, torch.Tensor], readout: str
) -> torch.Tensor:
    """(B, T-1) read-outs of one forward pass, 0 where the target is padding."""
    input_ids = batch["input_ids"]
    values = readout_values(forward_logits(model, batch), input_ids, readout)
    return torch.where(valid_targets(input_ids, batch.get("attention_mask")), values, 0.0)


def parse_positions(positions: Sequence[int] | None, seq_len: int) -> list[int]:
    """Positions t (0..T-2, those with a next token), in the given order; all for None."""
    if seq_len < 2:
        raise MyopiaError(f"sequences of {seq_len} token(s) have no next token to predict")
    if positions is None:
        return list(range(seq_len - 1))
    parsed = [int(t) for t in positions]
    bad = [t for t in parsed if not 0 <= t <= seq_len - 2]
    if bad:
        raise MyopiaError(
            f"positions {bad} are outside 0..{seq_len - 2} (the positions that predict a "
            f"next token in sequences of {seq_len})"
        )
    if len(set(parsed)) != len(parsed):
        raise MyopiaError("a position is given twice")
    return parsed
