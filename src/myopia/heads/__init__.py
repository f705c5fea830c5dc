"""Attention heads: find previous-token, duplicate-token and induction heads in any loaded
Hugging Face causal LM (Llama family with grouped-query attention, GPT-2).

- ``detection``: TransformerLens's head-detector scores per (layer, query head);
- ``induction``: repeated random tokens, the induction stripe score and the loss by repeat;
- ``patterns``: the detection patterns; ``attention``: reading attention weights;
- ``scan``: what ``myopia heads`` runs (``measure``); ``plots``: the heatmaps. Import
  those two from their modules (they load matplotlib and the text corpus tools).

>>> from myopia.heads import detect_heads, repeated_random_tokens
>>> from myopia.models.loading import load_model
>>> model, tokenizer = load_model("fresh-gpt2:d_model=32,n_layers=2,n_heads=2")
>>> tokens = repeated_random_tokens(tokenizer, n=8, batch=2, seed=0)
>>> scores = detect_heads(model, tokens)
>>> scores["induction"].shape                                # (n_layers, n_heads)
torch.Size([2, 2])
"""

from myopia.heads.attention import attention_patterns, returning_weights
from myopia.heads.detection import KINDS, Head, HeadScores, detect_heads, pattern_scores
from myopia.heads.induction import (
    STRIPE,
    RepeatedTokenLoss,
    induction_stripe_scores,
    repeated_random_tokens,
    repeated_token_losses,
    stripe_scores,
)
from myopia.heads.patterns import (
    PATTERNS,
    duplicate_token_pattern,
    induction_pattern,
    previous_token_pattern,
)

__all__ = [
    "KINDS",
    "PATTERNS",
    "STRIPE",
    "Head",
    "HeadScores",
    "RepeatedTokenLoss",
    "attention_patterns",
    "detect_heads",
    "duplicate_token_pattern",
    "induction_pattern",
    "induction_stripe_scores",
    "pattern_scores",
    "previous_token_pattern",
    "repeated_random_tokens",
    "repeated_token_losses",
    "returning_weights",
    "stripe_scores",
]
