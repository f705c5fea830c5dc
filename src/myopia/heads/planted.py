"""Small GPT-2 models with a previous-token head planted by hand: C4's known-answer control.

Two models share one layer-0 head (head 0) that attends from each position to the one
before it and copies that token. They differ in what reads the copy:

- ``"feeds_induction"``: the copy goes to a "previous token" subspace that an induction
  head (layer 1, head 0) matches the current token against, so the previous-token head's
  work at position t serves position t' > t where the token at t repeats. Its effect is
  almost all on later positions, and removing it breaks the second copy of repeated
  random tokens, not the first. C4's rule must say supported on it.
- ``"current_only"``: the copy goes straight to the logits (the token after the
  previous one, by a fixed permutation: a planted trigram-like rule) and nothing later
  reads it: the head serves only its own position. C4's rule must not say supported.

Every other head gets small random weights (``noise``), so the layer-matched null has
heads with small, varied effects. MLPs are zero. Each layer norm's gain and bias are set
so that it returns its input unchanged on the residual stream the planted circuit writes
(a fixed number of unit entries per position), which keeps the circuit exact up to the
random heads' small writes.

Residual layout (``d_model`` = 4 × head_dim): token one-hot | position one-hot | previous
token one-hot | output one-hot (read by ``lm_head``) | spare (random heads only).
"""

from __future__ import annotations

import math

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from myopia.errors import MyopiaError

KINDS = ("feeds_induction", "current_only")
PLANTED_HEAD = (0, 0)  # (layer, head)
INDUCTION_HEAD = (1, 0)
SHARPNESS = 30.0  # attention logit of the planted key over the others: e^-30 elsewhere
OUTPUT_SCALE = 10.0  # the induction head's write into the output subspace


def planted_model(
    kind: str,
    vocab: int = 64,
    positions: int = 48,
    n_heads: int = 4,
    noise: float = 0.02,
    seed: int = 0,
) -> GPT2LMHeadModel:
    """A 2-layer float64 GPT-2 of ``n_heads`` heads per layer with the previous-token head
    planted at layer 0, head 0; ``kind`` is ``"feeds_induction"`` or ``"current_only"``."""
    if kind not in KINDS:
        raise MyopiaError(f"unknown planted model {kind!r}: use one of {', '.join(KINDS)}")
    head_dim = max(vocab, positions)
    d_model = n_heads * head_dim
    if 3 * vocab + positions > d_model:
        raise MyopiaError("the planted layout needs 3 x vocab + positions <= d_model")
    config = GPT2Config(
        vocab_size=vocab,
        n_positions=positions,
        n_embd=d_model,
        n_layer=2,
        n_head=n_heads,
        n_inner=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
    )
    config._attn_implementation = "eager"
    model = GPT2LMHeadModel(config).to(torch.float64).eval()
    tok, pos, prev, out = 0, vocab, vocab + positions, 2 * vocab + positions
    eye = torch.eye(vocab, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)

    def noise_like(shape) -> torch.Tensor:
        return noise * torch.randn(shape, generator=generator, dtype=torch.float64)

    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.transformer.wte.weight[:, tok : tok + vocab] = eye
        model.transformer.wpe.weight[:, pos : pos + positions] = torch.eye(
            positions, dtype=torch.float64
        )
        model.lm_head.weight[:, out : out + vocab] = eye
        model.transformer.ln_f.weight.fill_(1.0)
        # Unit entries per position entering each layer: token and position, then also
        # the planted head's copy.
        for block, units in zip(model.transformer.h, (2, 3), strict=True):
            _pass_through(block.ln_1, units, d_model)
            block.ln_2.weight.fill_(1.0)
            attn = block.attn
            w = attn.c_attn.weight  # (d_model, 3 d_model): x @ w = [q | k | v]
            for h in range(n_heads):
                cols = slice(h * head_dim, (h + 1) * head_dim)
                for part in range(3):
                    w[:, part * d_model :][:, cols] = noise_like((d_model, head_dim))
                attn.c_proj.weight[cols, :] = noise_like((head_dim, d_model))
        scale = SHARPNESS * math.sqrt(head_dim)  # GPT-2 divides scores by sqrt(head_dim)
        layer, head = PLANTED_HEAD
        attn = model.transformer.h[layer].attn
        q, k, v = _head_blocks(attn.c_attn.weight, head, head_dim, d_model)
        for block in (q, k, v):
            block.zero_()
        # Query at position i matches key j where j + 1 = i: the previous position.
        q[pos : pos + positions, :positions] = scale * torch.eye(positions, dtype=torch.float64)
        k[pos : pos + positions - 1, 1:positions] = torch.eye(positions - 1, dtype=torch.float64)
        v[tok : tok + vocab, :vocab] = eye
        o = attn.c_proj.weight[head * head_dim : (head + 1) * head_dim, :]
        o.zero_()
        if kind == "feeds_induction":
            o[:vocab, prev : prev + vocab] = eye
        else:
            # Predict the token after the previous one (a fixed cyclic shift), at this
            # position only: no later position reads the output subspace.
            o[:vocab, out : out + vocab] = torch.roll(eye, 1, dims=1) * OUTPUT_SCALE
        if kind == "feeds_induction":
            layer, head = INDUCTION_HEAD
            attn = model.transformer.h[layer].attn
            q, k, v = _head_blocks(attn.c_attn.weight, head, head_dim, d_model)
            for block in (q, k, v):
                block.zero_()
            # Query: the current token; key: the token before the key's position; value:
            # the key's token, written to the output subspace (predicts it next).
            q[tok : tok + vocab, :vocab] = scale * eye
            k[prev : prev + vocab, :vocab] = eye
            v[tok : tok + vocab, :vocab] = eye
            o = attn.c_proj.weight[head * head_dim : (head + 1) * head_dim, :]
            o.zero_()
            o[:vocab, out : out + vocab] = OUTPUT_SCALE * eye
    return model


def _pass_through(norm: torch.nn.LayerNorm, units: int, d_model: int) -> None:
    """Gain and bias that undo the normalisation of a vector with ``units`` unit entries
    and zeros elsewhere: its mean is units/d, its (biased) sd sqrt(units/d − (units/d)²)."""
    mean = units / d_model
    norm.weight.fill_(math.sqrt(mean - mean**2))
    norm.bias.fill_(mean)


def _head_blocks(weight: torch.Tensor, head: int, head_dim: int, d_model: int):
    """Views of one head's query, key and value columns in GPT-2's fused ``c_attn``."""
    cols = slice(head * head_dim, (head + 1) * head_dim)
    return tuple(weight[:, part * d_model : (part + 1) * d_model][:, cols] for part in range(3))
