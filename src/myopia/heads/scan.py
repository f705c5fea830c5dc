"""A scan of every head (what ``myopia heads`` runs): scores per kind, heatmaps, data.

Two batched forward passes with attention weights, and one without:

1. natural text (``documents``, e.g. the Shakespeare corpus), ``batch`` windows of
   ``seq_len`` tokens with the tokenizer's BOS first where it has one (as TransformerLens
   prepends it): previous-token, duplicate-token and induction scores, TransformerLens's
   definitions (``myopia.heads.detection``);
2. repeated random tokens, ``batch`` rows of BOS + n + n tokens with n = (seq_len - 1) // 2:
   the induction stripe score (``myopia.heads.induction``);
3. the same repeated tokens: next-token loss on the first copy and on the second.

Example::

    model, tokenizer = load_model("smollm2")
    report = measure(model, tokenizer, HeadScanConfig.full(), load_corpus())
    for line in report.summary_lines(k=5):
        print(line)                        # kind, then "layer.head score" of the best heads
    report.write(Path("myopia-heads"), "smollm2")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from myopia.data.text import Document, token_windows
from myopia.errors import MyopiaError
from myopia.heads.detection import KINDS, Head, HeadScores, detect_heads
from myopia.heads.induction import (
    STRIPE,
    RepeatedTokenLoss,
    induction_stripe_scores,
    repeated_random_tokens,
    repeated_token_losses,
)
from myopia.models.loading import describe_model

__all__ = ["HeadScanConfig", "HeadsReport", "measure", "text_batch"]

FIGURE_NAME = "heads.png"


@dataclass(frozen=True)
class HeadScanConfig:
    seq_len: int = 128  # tokens per text window, BOS included where the model has one
    batch: int = 8  # text windows, and sequences of repeated random tokens
    seed: int = 0

    @classmethod
    def full(cls) -> HeadScanConfig:
        return cls()

    @classmethod
    def quick(cls) -> HeadScanConfig:
        return cls(seq_len=64, batch=4)


@dataclass
class HeadsReport:
    """Everything ``measure`` found: the scores of every head, and the loss by repeat."""

    model: dict[str, Any]
    text: str
    detection: HeadScores
    stripe: HeadScores
    repeated_loss: RepeatedTokenLoss
    config: HeadScanConfig = HeadScanConfig()

    @property
    def kinds(self) -> tuple[str, ...]:
        return (*self.detection.kinds, STRIPE)

    def scores(self, kind: str) -> torch.Tensor:
        """``(n_layers, n_heads)`` scores of ``kind`` (a detection kind or the stripe)."""
        return self.stripe[kind] if kind == STRIPE else self.detection[kind]

    def top(self, kind: str, k: int = 5) -> list[Head]:
        return self.stripe.top(kind, k) if kind == STRIPE else self.detection.top(kind, k)

    def summary_lines(self, k: int = 5) -> list[str]:
        """Lines for the terminal: the top ``k`` heads of each kind as ``layer.head score``,
        then the loss on each copy of the repeated tokens."""
        width = max(len(kind) for kind in self.kinds)
        lines = []
        for kind in self.kinds:
            best = "  ".join(f"{h.layer}.{h.head} {h.score:.3f}" for h in self.top(kind, k))
            lines.append(f"{kind:<{width}}  {best}")
        loss = self.repeated_loss
        lines.append(
            f"loss on repeated random tokens (n={loss.n}): first copy "
            f"{float(loss.first.mean()):.3f}, second copy {float(loss.second.mean()):.3f}"
        )
        return lines

    def to_dict(self, k: int = 5) -> dict[str, Any]:
        return {
            "model": self.model,
            "text": self.text,
            "detection": self.detection.to_dict(k),
            "stripe": self.stripe.to_dict(k),
            "repeated_loss": self.repeated_loss.to_dict(),
        }

    def write(self, out: Path, label: str = "", top_k: int = 5) -> list[Path]:
        """``heads.png`` (one heatmap per kind) and ``heads.json`` (``to_dict(top_k)``)."""
        from myopia.heads.plots import plot_head_scores  # matplotlib only when writing

        panels = {kind: self.scores(kind) for kind in self.kinds}
        n, batch = self.repeated_loss.n, self.config.batch
        title = (
            f"{label}: head scores ({batch} x {self.config.seq_len} tokens of {self.text}; "
            f"stripe on {batch} x 2 x {n} repeated random tokens)"
        )
        figure = plot_head_scores(panels, Path(out) / FIGURE_NAME, title, self.to_dict(top_k))
        return [figure, figure.with_suffix(".json")]


def text_batch(
    tokenizer: PreTrainedTokenizerBase,
    documents: list[Document],
    seq_len: int,
    batch: int,
    seed: int = 0,
) -> torch.Tensor:
    """``(batch, seq_len)`` windows of ``documents``, BOS first where the tokenizer has
    one, drawn without overlap by ``seed``. Windows come from the
    held-out (``eval``) part of each document (``myopia.data.text``), and from the rest
    as well when that part has fewer than ``batch``."""
    bos = tokenizer.bos_token_id
    body = seq_len - (bos is not None)
    if body < 2 or batch < 1:
        raise MyopiaError(f"need seq_len >= {2 + (bos is not None)} and batch >= 1")
    # The held-out part alone is enough for the default corpus and quick to tokenize; the
    # training part joins it only when it is too short (a small file of the user's).
    windows = token_windows(documents, tokenizer, body, "eval")
    if len(windows) < batch:
        windows = torch.cat([windows, token_windows(documents, tokenizer, body, "train")])
    if len(windows) < batch:
        raise MyopiaError(
            f"the text has only {len(windows)} windows of {body} tokens, but --batch is "
            f"{batch}: ask for fewer or shorter ones, or give more text"
        )
    order = np.random.default_rng(seed).permutation(len(windows))[:batch]
    chosen = windows[torch.from_numpy(order)]  # (batch, body)
    if bos is None:
        return chosen
    return torch.cat([torch.full((batch, 1), bos, dtype=torch.long), chosen], dim=1)


def measure(
    model,
    tokenizer: PreTrainedTokenizerBase,
    config: HeadScanConfig,
    documents: list[Document],
    source: str = "default corpus (Shakespeare)",
) -> HeadsReport:
    """Score every head of ``model`` (see the module docstring); ``source`` names the text."""
    input_ids = text_batch(tokenizer, documents, config.seq_len, config.batch, config.seed)
    detection = detect_heads(model, input_ids, KINDS)

    has_bos = tokenizer.bos_token_id is not None
    n = (config.seq_len - has_bos) // 2
    repeated = repeated_random_tokens(tokenizer, n, config.batch, config.seed)
    stripe = induction_stripe_scores(model, n, input_ids=repeated, seed=config.seed)
    repeated_loss = repeated_token_losses(model, repeated, n)
    return HeadsReport(describe_model(model), source, detection, stripe, repeated_loss, config)
