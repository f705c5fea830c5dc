"""The per-step token choice: temperature, nucleus (top-p) filtering, a seeded generator.

One call turns the logits of every row at one decoding step into the next token of each
row. Greedy decoding (temperature 0) takes the argmax and draws nothing. Sampling divides
the logits by the temperature, keeps the smallest set of most likely tokens whose
probability reaches ``top_p`` (always at least the most likely one), and draws from that
set with the caller's ``torch.Generator``, so the result depends on the seed alone and
never on the global random state.

The log-probabilities reported with each token are *not* computed here: they are the
model's own distribution (log-softmax of the raw logits), see ``model_logprobs``.
"""

from __future__ import annotations

import torch


def model_logprobs(logits: torch.Tensor) -> torch.Tensor:
    """Natural log-probabilities of the model's distribution, in float32.

    Taken before temperature and top-p on purpose: they say how likely the model finds a
    token, which is what the loom shades and what experiments measure; the sampling
    settings only decide which token is drawn.
    """
    return torch.log_softmax(logits.float(), dim=-1)  # (B, V)


def nucleus_mask(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """True for the tokens in each row's nucleus: the most likely tokens whose summed
    probability first reaches ``top_p``. The most likely token is always in."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)  # (B, V) each
    # A token is in if the mass strictly before it has not yet reached top_p.
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # (B, V)
    keep_sorted = mass_before < top_p  # (B, V)
    keep_sorted[:, 0] = True  # also for top_p so small that nothing else qualifies
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)  # (B, V)


def choose_next(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The next token of each row, ``(B,)`` long, from the last-position logits ``(B, V)``."""
    if temperature == 0:
        return logits.argmax(dim=-1)  # (B,)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    if top_p < 1:
        probs = probs * nucleus_mask(probs, top_p)  # multinomial renormalises each row
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)
