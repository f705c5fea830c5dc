"""What ``myopia heads`` does, as a function: score every head, write heatmaps, return data.

Two batched forward passes with attention weights, and one without:

1. natural text (``text``: a file or folder, default the Shakespeare corpus), ``batch``
   windows of ``seq_len`` tokens with the tokenizer's BOS first where it has one (as
   TransformerLens prepends it): previous-token, duplicate-token and induction scores,
   TransformerLens's definitions (``myopia.heads.detection``);
2. repeated random tokens, ``batch`` rows of BOS + n + n tokens with n = (seq_len - 1) // 2:
   the induction stripe score (``myopia.heads.induction``);
3. the same repeated tokens: next-token loss on the first copy and on the second.

Example::

    report = run_heads("smollm2", seq_len=128, batch=8, out=Path("myopia-heads"))
    for line in report.summary_lines(k=5):
        print(line)                        # kind, then "layer.head score" of the best heads
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from myopia.data.text import load_corpus, token_windows
from myopia.errors import MyopiaError
from myopia.heads.detection import KINDS, Head, HeadScores, detect_heads
from myopia.heads.induction import (
    STRIPE,
    RepeatedTokenLoss,
    induction_stripe_scores,
    repeated_random_tokens,
    repeated_token_losses,
)
from myopia.heads.plots import plot_head_scores
from myopia.models.loading import describe_model, load_model

__all__ = ["HeadsReport", "run_heads", "text_batch"]

FIGURE_NAME = "heads.png"


@dataclass
class HeadsReport:
    """Everything ``run_heads`` measured; ``files`` lists what it wrote (figure, JSON)."""

    model: dict[str, Any]
    text: str
    detection: HeadScores
    stripe: HeadScores
    repeated_loss: RepeatedTokenLoss
    files: list[Path] = field(default_factory=list)

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


def text_batch(
    tokenizer: PreTrainedTokenizerBase,
    text: str | Path | None,
    seq_len: int,
    batch: int,
    seed: int = 0,
) -> torch.Tensor:
    """``(batch, seq_len)`` windows of ``text`` (default corpus if None), BOS first where
    the tokenizer has one, drawn without overlap by ``seed``. Windows come from the
    held-out (``eval``) part of each document (``myopia.data.text``), and from the rest
    as well when that part has fewer than ``batch``."""
    bos = tokenizer.bos_token_id
    body = seq_len - (bos is not None)
    if body < 2 or batch < 1:
        raise MyopiaError(f"need seq_len >= {2 + (bos is not None)} and batch >= 1")
    documents = load_corpus(text)
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


def run_heads(
    model: str = "smollm2",
    text: str | Path | None = None,
    seq_len: int = 128,
    batch: int = 8,
    out: Path | None = Path("myopia-heads"),
    seed: int = 0,
    top_k: int = 5,
) -> HeadsReport:
    """Load ``model``, score its heads (see the module docstring) and, unless ``out`` is
    None, write ``out/heads.png`` (one heatmap per kind) and ``out/heads.json`` beside it."""
    loaded, tokenizer = load_model(model)
    description = describe_model(loaded)

    input_ids = text_batch(tokenizer, text, seq_len, batch, seed)
    detection = detect_heads(loaded, input_ids, KINDS)

    has_bos = tokenizer.bos_token_id is not None
    n = (seq_len - has_bos) // 2
    repeated = repeated_random_tokens(tokenizer, n, batch, seed)
    stripe = induction_stripe_scores(loaded, n, input_ids=repeated, seed=seed)
    repeated_loss = repeated_token_losses(loaded, repeated, n)

    source = "default corpus (Shakespeare)" if text is None else str(text)
    report = HeadsReport(description, source, detection, stripe, repeated_loss)
    if out is not None:
        panels = {kind: report.scores(kind) for kind in report.kinds}
        title = (
            f"{model}: head scores ({batch} x {seq_len} tokens of {source}; "
            f"stripe on {batch} x 2 x {n} repeated random tokens)"
        )
        figure = plot_head_scores(panels, Path(out) / FIGURE_NAME, title, report.to_dict(top_k))
        report.files = [figure, figure.with_suffix(".json")]
    return report
