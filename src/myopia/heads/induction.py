"""Induction heads on repeated random tokens: the stripe score and the loss by repeat.

The standard test from the tutorials (Olsson et al. 2022; TransformerLens's "Main Demo",
ARENA's induction-head exercises): random tokens ``x_1..x_n``, repeated once, optionally
after a BOS token. In the second copy a model can predict every token by finding its
earlier copy and reading the token after it, which is what an induction head attends to.
Random tokens make that the only way to predict them, so:

- the **stripe score** of a head is its mean attention from each query t in the second copy
  to key t - n + 1 (the token after t's earlier copy): a stripe n - 1 below the diagonal
  of the attention pattern; mean over queries and sequences;
- the **loss by repeat**: next-token loss on the first copy (about log(vocabulary size) or
  more: random tokens cannot be guessed) against the second (low where induction works).

The tutorials take the whole diagonal at offset -(n - 1), which also holds the last query of
the first copy, and with a BOS the one before it; ``stripe_scores`` uses the n queries of the
second copy only.

Example (SmolLM2, whose tokenizer has a BOS)::

    tokens = repeated_random_tokens(tokenizer, n=50, batch=8, seed=0)   # (8, 1 + 2 * 50)
    stripe = induction_stripe_scores(model, n=50, input_ids=tokens)
    stripe.top("induction_stripe", 3)          # [Head(layer=18, head=6, score=0.9), ...]
    loss = repeated_token_losses(model, tokens, n=50)   # loss.first vs loss.second
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from myopia.errors import MyopiaError
from myopia.gradients.loss import forward_logits, token_losses
from myopia.heads.attention import attention_patterns, check_input_ids
from myopia.heads.detection import HeadScores

__all__ = [
    "STRIPE",
    "RepeatedTokenLoss",
    "induction_stripe_scores",
    "repeated_random_tokens",
    "repeated_token_losses",
    "stripe_scores",
]

STRIPE = "induction_stripe"


def repeated_random_tokens(
    source: PreTrainedTokenizerBase | int,
    n: int,
    batch: int,
    seed: int = 0,
    *,
    bos: bool | int = True,
) -> torch.Tensor:
    """``(batch, prefix + 2n)`` long: ``batch`` rows of n random tokens repeated twice.

    ``source`` is a tokenizer (tokens drawn uniformly from its vocabulary less its special
    tokens) or a vocabulary size (tokens drawn from ``range(source)``). ``bos``: ``True``
    puts the tokenizer's BOS token first where it has one (a vocabulary size has none);
    an int puts that token id first; ``False`` puts nothing. ``prefix`` is 1 with a BOS,
    else 0; callers recover it as ``T - 2n``. The same arguments give the same tokens.
    """
    if n < 2 or batch < 1:
        raise MyopiaError(f"need n >= 2 tokens per copy and batch >= 1, got n={n}, batch={batch}")
    if isinstance(source, int):
        if source < 2:
            raise MyopiaError(f"vocabulary size must be at least 2, got {source}")
        candidates = torch.arange(source)
        bos_id = None if bos is True else bos
    else:
        special = set(source.all_special_ids)
        candidates = torch.tensor([i for i in range(len(source)) if i not in special])
        bos_id = source.bos_token_id if bos is True else bos
    if bos_id is False:
        bos_id = None
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(candidates), (batch, n), generator=generator)
    copy = candidates[picks]  # (batch, n)
    parts = [copy, copy]
    if bos_id is not None:
        parts.insert(0, torch.full((batch, 1), int(bos_id), dtype=torch.long))
    return torch.cat(parts, dim=1)  # (batch, prefix + 2n)


def _prefix(input_ids: torch.Tensor, n: int) -> int:
    if n < 2:
        raise MyopiaError(f"n (tokens per copy) must be at least 2, got {n}")
    prefix = input_ids.shape[-1] - 2 * n
    if prefix < 0:
        raise MyopiaError(
            f"sequences of {input_ids.shape[-1]} tokens cannot hold two copies of n={n} tokens"
        )
    return prefix


def stripe_scores(attention: torch.Tensor, n: int) -> torch.Tensor:
    """``(B, H)``: mean attention of each head from the second copy's queries to the token
    after their earlier copy. ``attention`` is ``(B, H, T, T)``, T = prefix + 2n, with the
    copies at positions ``prefix..prefix+n-1`` and ``prefix+n..prefix+2n-1``."""
    prefix = _prefix(attention, n)
    # Entry i of the diagonal at offset -(n-1) is (query i + n - 1, key i); the second
    # copy's queries prefix+n..prefix+2n-1 are entries prefix+1..prefix+n.
    stripe = attention.float().diagonal(offset=-(n - 1), dim1=-2, dim2=-1)  # (B, H, prefix+n+1)
    return stripe[..., prefix + 1 :].mean(dim=-1)


def induction_stripe_scores(
    model: nn.Module,
    n: int = 50,
    batch: int = 8,
    seed: int = 0,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    bos: bool | int = True,
    input_ids: torch.Tensor | None = None,
) -> HeadScores:
    """Stripe scores of every (layer, query head) on repeated random tokens, kind
    ``"induction_stripe"``, from one batched forward pass.

    Tokens come from ``repeated_random_tokens(tokenizer, n, batch, seed, bos=bos)``; without
    a tokenizer from the model's vocabulary (``config.vocab_size``), with
    ``config.bos_token_id`` first when ``bos`` is True and the config names one. Or pass
    ``input_ids`` (``(B, prefix + 2n)``, e.g. that function's output) and they are used as
    they are.
    """
    if input_ids is None:
        if tokenizer is None:
            config_bos = getattr(model.config, "bos_token_id", None)
            bos = (config_bos if config_bos is not None else False) if bos is True else bos
            source: PreTrainedTokenizerBase | int = model.config.vocab_size
        else:
            source = tokenizer
        input_ids = repeated_random_tokens(source, n, batch, seed, bos=bos)
    prefix = _prefix(input_ids, n)
    check_input_ids(model, input_ids)
    patterns = attention_patterns(model, input_ids)  # n_layers x (B, H, T, T)
    scores = torch.stack([stripe_scores(p, n).mean(0) for p in patterns]).cpu()  # (L, H)
    return HeadScores(
        scores={STRIPE: scores},
        n_sequences=input_ids.shape[0],
        seq_len=input_ids.shape[1],
        method={
            "metric": "mean attention from each second-copy query t to key t - n + 1",
            "n": n,
            "prefix": prefix,
            "seed": seed,
        },
    )


@dataclass(frozen=True)
class RepeatedTokenLoss:
    """Next-token loss on repeated random tokens.

    ``per_position[p]`` is the mean loss over sequences of predicting the token at
    position p (NaN at p = 0, which nothing predicts); ``first`` and ``second`` are each
    sequence's mean loss over the first copy's predicted tokens (all but a first token
    with nothing before it) and over the second copy's n tokens, ``(B,)``, paired by
    sequence.
    """

    n: int
    prefix: int
    per_position: torch.Tensor  # (T,)
    first: torch.Tensor  # (B,)
    second: torch.Tensor  # (B,)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "prefix": self.prefix,
            "first_repeat_loss": float(self.first.mean()),
            "second_repeat_loss": float(self.second.mean()),
            "per_position": [None if v != v else float(v) for v in self.per_position.tolist()],
            "first_by_sequence": self.first.tolist(),
            "second_by_sequence": self.second.tolist(),
        }


@torch.inference_mode()
def repeated_token_losses(model: nn.Module, input_ids: torch.Tensor, n: int) -> RepeatedTokenLoss:
    """Loss by position and by repeat on ``input_ids`` ``(B, prefix + 2n)``, e.g. from
    ``repeated_random_tokens``: one forward pass with the model as it is."""
    prefix = _prefix(input_ids, n)
    check_input_ids(model, input_ids)
    device = next(model.parameters()).device
    ids = input_ids.to(device)
    losses = token_losses(forward_logits(model, {"input_ids": ids}), ids).float().cpu()
    # losses[:, t] predicts the token at position t + 1: (B, T-1).
    by_position = torch.cat([torch.full((1,), float("nan")), losses.mean(0)])  # (T,)
    first_start = max(prefix, 1)  # the first copy's first token is unpredictable without BOS
    first = losses[:, first_start - 1 : prefix + n - 1].mean(1)
    second = losses[:, prefix + n - 1 : prefix + 2 * n - 1].mean(1)
    return RepeatedTokenLoss(
        n=n, prefix=prefix, per_position=by_position, first=first, second=second
    )
