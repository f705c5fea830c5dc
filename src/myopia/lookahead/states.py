"""The hidden states a model computes on token windows, and its own top-1 prediction."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from myopia.models.loading import logits_kept
from myopia.progress import track


@dataclass
class StateSet:
    """Token windows and what the model computed on them."""

    tokens: torch.Tensor  # (N, T) long
    hidden: torch.Tensor  # (L, N, T, d) float32: the probed layers, in ``layers`` order
    final: torch.Tensor  # (N, T, d) float32: the state the unembedding reads
    layers: list[int]  # hidden-state index of each entry of ``hidden``
    predicted: torch.Tensor | None = None  # (N, T) long: the model's own top-1 next token

    def __post_init__(self):
        n, t = self.tokens.shape
        if self.hidden.shape[1:3] != (n, t) or self.final.shape[:2] != (n, t):
            raise ValueError(
                f"hidden {tuple(self.hidden.shape)} and final {tuple(self.final.shape)} "
                f"do not match tokens {(n, t)}"
            )
        if len(self.layers) != self.hidden.shape[0]:
            raise ValueError(f"{len(self.layers)} layer indices for {self.hidden.shape[0]}")


def unembedding(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The model's output embedding as ``(weight (V, d), bias (V,) or None)``."""
    head = model.get_output_embeddings()
    bias = getattr(head, "bias", None)
    return head.weight.detach().float(), None if bias is None else bias.detach().float()


def collect_states(
    model: nn.Module,
    tokens: torch.Tensor,
    *,
    layers: tuple[int, ...] | None = None,
    batch_size: int = 8,
    predictions: bool = False,
    show_progress: bool = False,
    description: str = "hidden states",
) -> StateSet:
    """Run ``model`` on ``tokens`` (N, T) and keep the hidden states of ``layers`` (indices
    into ``output_hidden_states``; None: all) and the final one. ``predictions=True``
    also keeps the model's own top-1 next token at every position, decided from the final
    state and the unembedding exactly as the model's logits are."""
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be (N, T), got shape {tuple(tokens.shape)}")
    keep_one = logits_kept(model, 1)  # the logits are recomputed below, cheaper
    device = next(model.parameters()).device
    hidden, final = [], []
    starts = range(0, len(tokens), batch_size)
    with torch.inference_mode():
        for start in track(starts, description, total=len(starts), enabled=show_progress):
            batch = tokens[start : start + batch_size].to(device)  # (B, T)
            out = model(input_ids=batch, output_hidden_states=True, use_cache=False, **keep_one)
            states = out.hidden_states  # n_layers + 1 tensors of (B, T, d)
            chosen = range(len(states)) if layers is None else layers
            hidden.append(torch.stack([states[i].float().cpu() for i in chosen]))  # (L, B, T, d)
            final.append(states[-1].float().cpu())  # (B, T, d)
    n_states = len(states)
    chosen = list(range(n_states)) if layers is None else [i % n_states for i in layers]
    final_t = torch.cat(final)  # (N, T, d)
    predicted = None
    if predictions:
        weight, bias = unembedding(model)
        flat = final_t.reshape(-1, final_t.shape[-1])  # (N*T, d)
        predicted = _top1(flat, weight.cpu().T, None if bias is None else bias.cpu())
        predicted = predicted.view(final_t.shape[:2])
    return StateSet(tokens.cpu(), torch.cat(hidden, dim=1), final_t, chosen, predicted)


def _top1(
    features: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """argmax over columns of ``features (n, d) @ weight (d, m) + bias (m,) + offset (n, m)``,
    in float32, a block of rows at a time so that the scores stay small in memory."""
    n, m = features.shape[0], weight.shape[1]
    chunk = max(64, min(8192, 2**24 // max(m, 1)))
    winners = torch.empty(n, dtype=torch.long)
    for start in range(0, n, chunk):
        scores = features[start : start + chunk] @ weight  # (c, m)
        if bias is not None:
            scores += bias
        if offset is not None:
            scores += offset[start : start + chunk]
        winners[start : start + chunk] = scores.argmax(1)
    return winners
