"""What previous-token heads are for: the measurement behind C4.

On repeated random tokens (a random segment, then the same segment again), for one model:

1. detect the previous-token heads (TransformerLens's pattern and metric, ``detection``);
2. attribute every head's effect at every position to the loss there (current) and at
   later positions (future), first order (``myopia.attribution``); per sequence, the
   future share of each head; the statistic is the median share of the detected heads
   minus the median share of all heads;
3. mean-ablate the detected heads at every position and read the loss change on the
   first copy (where induction cannot help: the heads' "current" value) and on the
   second (where induction copies); the statistic is Δsecond − 3·Δfirst.

Both statistics are per sequence, so their intervals are over sequences. Beside them,
on natural text (windows of the documents, as ``myopia heads`` reads them), the same heads'
median future share minus that of all heads.

``measure`` is C4 as the report and ``myopia previous-token-heads`` run it, with a
``PreviousTokenHeadsConfig`` (``full()`` / ``quick()``: the report's budgets).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from myopia.attribution import attribute
from myopia.attribution.components import ablated_value, edit_outputs, layer_sites
from myopia.data.text import Document
from myopia.heads.detection import Head, detect_heads
from myopia.heads.induction import repeated_random_tokens, repeated_token_losses
from myopia.heads.scan import text_batch
from myopia.io import atomic_write_json
from myopia.stats import Interval, mean_ci

RATIO = 3.0  # CLAIMS.md: second-repeat loss must rise at least 3x as much as first-repeat


@dataclass(frozen=True)
class PreviousTokenHeadsConfig:
    n: int = 64  # random tokens per copy
    batch: int = 8  # sequences of repeated random tokens
    text_len: int = 128  # tokens per natural-text window
    text_batch: int = 4  # natural-text windows
    top_k: int = 3  # previous-token heads kept, best first ...
    threshold: float = 0.3  # ... of those with at least this previous-token score
    small_steps: int = 2000  # training steps of the small attention-only model (C4-small)
    seed: int = 0

    @classmethod
    def full(cls) -> PreviousTokenHeadsConfig:
        return cls()

    @classmethod
    def quick(cls) -> PreviousTokenHeadsConfig:
        return cls(n=24, batch=4, text_len=64, text_batch=2, small_steps=200)


@contextmanager
def heads_mean_ablated(model: nn.Module, heads: list[Head], input_ids: torch.Tensor):
    """Inside, each of ``heads`` outputs, at every position, its mean output over the
    positions and sequences of ``input_ids`` (the clean run)."""
    clean: dict[int, torch.Tensor] = {}

    def record(layer: int, z: torch.Tensor) -> torch.Tensor:
        clean[layer] = z.detach()
        return z

    with torch.no_grad(), edit_outputs(model, heads=record):
        model(input_ids=input_ids.to(next(model.parameters()).device), use_cache=False)
    head_dim = {site.index: site.head_dim for site in layer_sites(model)}
    means = {layer: ablated_value(z, None, "mean") for layer, z in clean.items()}  # (H*hd,)
    by_layer: dict[int, list[int]] = {}
    for head in heads:
        by_layer.setdefault(head.layer, []).append(head.head)

    def ablate(layer: int, z: torch.Tensor) -> torch.Tensor:
        if layer not in by_layer:
            return z
        z = z.clone()
        d = head_dim[layer]
        for h in by_layer[layer]:
            z[..., h * d : (h + 1) * d] = means[layer][h * d : (h + 1) * d]
        return z

    with edit_outputs(model, heads=ablate):
        yield


@dataclass
class PreviousTokenRole:
    heads: list[Head]  # the detected previous-token heads, best first
    share_difference: list[float]  # per sequence: median share (detected) − median (all)
    share_detected: list[float]  # per sequence: median future share of the detected heads
    share_all: list[float]  # per sequence: median future share of all heads
    loss_rise_first: list[float]  # per sequence: loss change on the first copy
    loss_rise_second: list[float]  # ... on the second copy

    @property
    def ratio_margin(self) -> Interval:
        """Δsecond − 3·Δfirst over sequences: > 0 when the second copy suffers ≥ 3x more."""
        return mean_ci(
            [
                s - RATIO * f
                for f, s in zip(self.loss_rise_first, self.loss_rise_second, strict=True)
            ]
        )

    def heads_text(self) -> str:
        """The detected heads as ``L3.H5 (0.92), ...`` (score in brackets)."""
        return ", ".join(f"L{h.layer}.H{h.head} ({h.score:.2f})" for h in self.heads)

    @property
    def share_gap(self) -> Interval:
        return mean_ci(self.share_difference)

    def to_dict(self) -> dict:
        return {
            "heads": [h._asdict() for h in self.heads],
            "share_difference": self.share_gap.to_dict(),
            "share_detected": mean_ci(self.share_detected).to_dict(),
            "share_all": mean_ci(self.share_all).to_dict(),
            "loss_rise_first": mean_ci(self.loss_rise_first).to_dict(),
            "loss_rise_second": mean_ci(self.loss_rise_second).to_dict(),
            "ratio_margin": self.ratio_margin.to_dict(),
            "per_sequence": {
                "share_difference": self.share_difference,
                "loss_rise_first": self.loss_rise_first,
                "loss_rise_second": self.loss_rise_second,
            },
        }


def detected_previous_token_heads(
    model: nn.Module, input_ids: torch.Tensor, top_k: int, threshold: float
) -> list[Head]:
    """The ``top_k`` heads with the highest previous-token score, keeping those ≥ threshold."""
    scores = detect_heads(model, input_ids, kinds=("previous_token",))
    return [h for h in scores.top("previous_token", top_k) if h.score >= threshold]


def per_sequence_head_shares(
    model: nn.Module, input_ids: torch.Tensor
) -> tuple[list, torch.Tensor]:
    """Head names and their future shares per sequence, (n_heads_total, B), first order
    with mean ablation; NaN where a head has no effect on a sequence."""
    result = attribute(model, input_ids, method="first_order", ablation="mean")
    rows = [i for i, c in enumerate(result.components) if not c.is_mlp]
    shares = result.future_shares(per_sequence=True)[rows]  # (n_heads_total, B)
    return [result.components[i] for i in rows], shares


def rows_of(components: list, heads: list[Head]) -> list[int]:
    """The rows of ``components`` (attribution components) that are among ``heads``."""
    wanted = {(h.layer, h.head) for h in heads}
    return [i for i, c in enumerate(components) if (c.layer, c.head) in wanted]


def previous_token_role(
    model: nn.Module, input_ids: torch.Tensor, n: int, top_k: int = 3, threshold: float = 0.3
) -> PreviousTokenRole | None:
    """The measurement on ``input_ids`` (B, prefix + 2n) of repeated random tokens; None
    when no head reaches ``threshold`` (nothing to measure)."""
    heads = detected_previous_token_heads(model, input_ids, top_k, threshold)
    if not heads:
        return None
    components, shares = per_sequence_head_shares(model, input_ids)
    detected = rows_of(components, heads)
    share_detected = shares[detected].nanmedian(0).values  # (B,)
    share_all = shares.nanmedian(0).values
    clean = repeated_token_losses(model, input_ids, n)
    with heads_mean_ablated(model, heads, input_ids):
        ablated = repeated_token_losses(model, input_ids, n)
    return PreviousTokenRole(
        heads=heads,
        share_difference=(share_detected - share_all).tolist(),
        share_detected=share_detected.tolist(),
        share_all=share_all.tolist(),
        loss_rise_first=(ablated.first - clean.first).tolist(),
        loss_rise_second=(ablated.second - clean.second).tolist(),
    )


@dataclass
class PreviousTokenHeadsResult:
    """C4 on one model: the role on repeated tokens (None: no head reached the threshold)
    and, for the same heads on natural text, median future share − that of all heads."""

    config: PreviousTokenHeadsConfig
    role: PreviousTokenRole | None
    natural_text_share_difference: Interval | None = None

    def to_dict(self) -> dict:
        if self.role is None:
            return {}
        return {
            **self.role.to_dict(),
            "natural_text_share_difference": self.natural_text_share_difference.to_dict(),
        }

    def write(self, out: Path, label: str = "") -> list[Path]:
        """``previous_token_heads.json`` in ``out``; ``label`` names the model."""
        data = {"model": label, "config": self.config, **self.to_dict()}
        return [atomic_write_json(Path(out) / "previous_token_heads.json", data)]


def measure(
    model: nn.Module,
    tokenizer,
    config: PreviousTokenHeadsConfig,
    documents: list[Document],
) -> PreviousTokenHeadsResult:
    """C4: detect the previous-token heads on ``config.batch`` sequences of 2 ×
    ``config.n`` repeated random tokens, measure their role there, and their future share
    on ``config.text_batch`` windows of the documents."""
    ids = repeated_random_tokens(tokenizer, config.n, config.batch, seed=config.seed)
    role = previous_token_role(model, ids, config.n, config.top_k, config.threshold)
    if role is None:
        return PreviousTokenHeadsResult(config, None)
    text = text_batch(tokenizer, documents, config.text_len, config.text_batch, config.seed)
    components, shares = per_sequence_head_shares(model, text)
    detected = rows_of(components, role.heads)
    difference = shares[detected].nanmedian(0).values - shares.nanmedian(0).values  # (B,)
    return PreviousTokenHeadsResult(config, role, mean_ci(difference.tolist()))
