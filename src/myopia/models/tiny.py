"""Tiny random models of many Hugging Face architectures, for tests and benchmarks.

Each is built by transformers itself from ``AutoConfig.for_model`` (a few layers, small
widths), with the features that make its attention differ from Llama's switched on and
small enough to bind on short sequences: sliding windows of 3 tokens, Gemma2's
attention-logit softcapping at 1 (scores scaled by head_dim^-0.5), GPT-OSS's attention
sinks. Random initialisation makes attention scores tiny, which hides softcapping and
sinks; ``sharpen`` scales the query/key weights and the sinks so that they matter.

>>> model = build_tiny_model("gemma2")   # float64, eval mode
>>> sharpen(model)
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from myopia.errors import MyopiaError

VOCAB_SIZE = 384  # the byte tokenizer's (ByT5), so a saved tiny model loads with it
_TOKENS = {"pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2}
_SIZES = {
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "max_position_embeddings": 128,
    "tie_word_embeddings": False,
}
_WINDOW = {"sliding_window": 3}
_TWO_KINDS = {"layer_types": ["sliding_attention", "full_attention"]}

# Architecture name -> (transformers model type, config overrides beyond _SIZES).
ARCHITECTURES: dict[str, tuple[str, dict]] = {
    "llama": ("llama", {}),
    "mistral": ("mistral", _WINDOW),
    "qwen2": ("qwen2", {**_WINDOW, "use_sliding_window": True, "max_window_layers": 1}),
    "qwen3": ("qwen3", {}),
    "gemma": ("gemma", {}),
    "gemma2": (
        "gemma2",
        {**_WINDOW, **_TWO_KINDS, "attn_logit_softcapping": 1.0, "query_pre_attn_scalar": 8},
    ),
    "gemma3": ("gemma3_text", {**_WINDOW, **_TWO_KINDS}),
    "phi3": ("phi3", {**_WINDOW, "partial_rotary_factor": 0.5}),
    "olmo2": ("olmo2", {}),
    "gpt_neox": ("gpt_neox", {"num_key_value_heads": None, "rotary_pct": 0.5}),
    "gpt2": ("gpt2", {"num_key_value_heads": None, "head_dim": None}),
    "gpt_oss": (
        "gpt_oss",
        {
            **_WINDOW,
            "intermediate_size": 32,
            "num_local_experts": 4,
            "num_experts_per_tok": 2,
            # The grouped-matmul experts kernel takes no float64; the eager loop does.
            "experts_implementation": "eager",
        },
    ),
}


def build_tiny_model(
    architecture: str, dtype: torch.dtype = torch.float64, seed: int = 0
) -> PreTrainedModel:
    """A randomly initialised causal LM of ``architecture`` (a key of ARCHITECTURES), in
    eval mode, dropout off, in ``dtype``."""
    if architecture not in ARCHITECTURES:
        raise MyopiaError(
            f"unknown tiny architecture {architecture!r}: choose one of {', '.join(ARCHITECTURES)}"
        )
    model_type, overrides = ARCHITECTURES[architecture]
    options = {k: v for k, v in {**_SIZES, **_TOKENS, **overrides}.items() if v is not None}
    if model_type == "gpt2":  # GPT-2 names its sizes differently
        renamed = {"hidden_size": "n_embd", "intermediate_size": "n_inner"}
        renamed |= {"num_hidden_layers": "n_layer", "num_attention_heads": "n_head"}
        renamed |= {"max_position_embeddings": "n_positions"}
        options = {renamed.get(k, k): v for k, v in options.items()}
        options |= {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    config = AutoConfig.for_model(model_type, **options)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    return model.to(dtype).eval()


@torch.no_grad()
def sharpen(model: nn.Module, gain: float = 4.0, seed: int = 0) -> None:
    """Scale every query/key projection by ``gain`` (attention scores by ``gain**2``) and
    draw attention sinks from N(0, 2^2), so that softcapping and sinks change the result."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        leaf = name.rsplit(".", 2)
        if any(
            part in ("q_proj", "k_proj", "qkv_proj", "query_key_value", "c_attn") for part in leaf
        ):
            param.mul_(gain)
        elif leaf[-1] == "sinks":
            param.copy_(2.0 * torch.randn(param.shape, generator=generator, dtype=param.dtype))
