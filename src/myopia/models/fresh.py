"""Fresh, randomly initialised small models for training and tests.

Two architectures, both built by transformers itself so that everything myopia does to
them it can do to a pretrained model of the same family:

- ``llama``: rotary positions, RMSNorm, SwiGLU MLP and grouped-query attention;
- ``gpt2``: learned positions, LayerNorm, GELU MLP and a fused q/k/v projection.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from myopia.errors import MyopiaError

ARCHITECTURES = ("llama", "gpt2")

# Special tokens of the byte tokenizer (ByT5) that fresh models use by default.
_BYTE_TOKENS = {"pad_token_id": 0, "eos_token_id": 1, "bos_token_id": None}


@dataclass
class FreshModelConfig:
    """Size of a fresh model. ``n_kv_heads`` < ``n_heads`` gives grouped-query attention
    (Llama only; GPT-2 has one key/value head per query head)."""

    architecture: str = "llama"
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int | None = None  # None: half the heads in Llama (GQA), all in GPT-2
    d_mlp: int = 256
    vocab_size: int = 384  # the byte tokenizer (ByT5): 256 bytes, 3 specials, 125 extra ids
    max_positions: int = 512
    seed: int = 0
    attention_only: bool = False  # no MLPs: the classic 2-layer induction-head setting

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise MyopiaError(
                f"unknown architecture {self.architecture!r}: "
                f"choose one of {', '.join(ARCHITECTURES)}"
            )
        sizes = ("d_model", "n_layers", "n_heads", "d_mlp", "vocab_size", "max_positions")
        for name in sizes + (("n_kv_heads",) if self.n_kv_heads is not None else ()):
            if getattr(self, name) < 1:
                raise MyopiaError(f"{name}={getattr(self, name)} must be at least 1")
        if not 0 <= self.seed < 2**32:
            raise MyopiaError(f"seed={self.seed} must be in [0, 2**32)")
        if self.n_kv_heads is None:
            halve = self.architecture == "llama" and self.n_heads % 2 == 0
            self.n_kv_heads = self.n_heads // 2 if halve else self.n_heads
        if self.architecture == "gpt2" and self.n_kv_heads != self.n_heads:
            raise MyopiaError("GPT-2 has one key/value head per query head: drop n_kv_heads")
        if self.d_model % self.n_heads:
            raise MyopiaError(
                f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads}"
            )
        if self.n_heads % self.n_kv_heads:
            raise MyopiaError(
                f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads}"
            )

    @classmethod
    def from_options(cls, architecture: str, options: dict[str, str]) -> FreshModelConfig:
        """Build from ``key=value`` strings, e.g. parsed from ``fresh-llama:d_model=128``."""
        fields = {f.name: f.type for f in dataclasses.fields(cls) if f.name != "architecture"}
        values = {}
        for key, raw in options.items():
            if key not in fields:
                raise MyopiaError(
                    f"unknown fresh-model option {key!r}: choose from {', '.join(fields)}"
                )
            try:
                values[key] = int(raw)
            except ValueError:
                raise MyopiaError(f"fresh-model option {key}={raw!r} must be an integer") from None
        return cls(architecture=architecture, **values)


def build_fresh_model(config: FreshModelConfig) -> torch.nn.Module:
    """A randomly initialised causal LM with dropout off (myopic attention forbids it)."""
    torch.manual_seed(config.seed)
    if config.architecture == "llama":
        hf_config = LlamaConfig(
            vocab_size=config.vocab_size,
            hidden_size=config.d_model,
            intermediate_size=config.d_mlp,
            num_hidden_layers=config.n_layers,
            num_attention_heads=config.n_heads,
            num_key_value_heads=config.n_kv_heads,
            max_position_embeddings=config.max_positions,
            tie_word_embeddings=False,
            attention_dropout=0.0,
            **_BYTE_TOKENS,
        )
        model = LlamaForCausalLM(hf_config)
    else:
        hf_config = GPT2Config(
            vocab_size=config.vocab_size,
            n_embd=config.d_model,
            n_inner=config.d_mlp,
            n_layer=config.n_layers,
            n_head=config.n_heads,
            n_positions=config.max_positions,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **_BYTE_TOKENS,
        )
        model = GPT2LMHeadModel(hf_config)
    if config.attention_only:
        # transformers has no attention-only option; a block whose MLP adds nothing is one.
        blocks = model.model.layers if config.architecture == "llama" else model.transformer.h
        for block in blocks:
            block.mlp = NoMLP()
    return model.eval()


class NoMLP(torch.nn.Module):
    """Stands in for a block's MLP in an attention-only model: adds nothing to the residual."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(hidden_states)


def fresh_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The same architecture as ``model`` (its own config, attention implementation and
    dtype) with fresh random weights, as transformers initialises them: the reference
    point of a measurement on a trained model (what the architecture gives untrained)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = model.config
    fresh = AutoModelForCausalLM.from_config(
        config, attn_implementation=config._attn_implementation, dtype=model.dtype
    )
    return fresh.to(model.device).eval()
