"""Sampling throughput of the local engine against plain ``generate()`` of transformers.

Both sample n continuations of the same prefix with the same settings (temperature 1,
top-p 1, no top-k, the same max tokens); each timed call is a whole generation, from
the prompt's ids to the finished continuations, detokenization and per-token
log-probabilities included for the engine. The two run alternately, after a warm-up of
each, so that machine noise hits both alike. Throughput counts the tokens each actually
computed (an end-of-text token included; rows that end early stop counting), and the
ratio is the median of the per-pair ratios. ``generate()`` encodes the prefix once per
row; the engine encodes it once in all.

    python bench/generation_throughput.py                    # SmolLM2, n = 4, 256 + 64 tokens
    python bench/generation_throughput.py --model "fresh-llama:d_model=64,n_layers=2" --repeats 9
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time
from datetime import date

import torch
from transformers import GenerationConfig

from myopia.data.text import load_corpus
from myopia.errors import MyopiaError
from myopia.generation import LocalEngine, SamplingSettings
from myopia.models.loading import load_model


def prefix_text(tokenizer, n_tokens: int, seed: int = 0) -> str:
    """About ``n_tokens`` tokens of natural text from the corpus (random tokens if there
    is no corpus)."""
    try:
        text = load_corpus()[0].text[: 20 * n_tokens]  # a play's opening
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:n_tokens]
    except MyopiaError:
        generator = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, tokenizer.vocab_size, (n_tokens,), generator=generator).tolist()
    return tokenizer.decode(ids)


def engine_run(engine, prompt: str, settings: SamplingSettings, n: int) -> int:
    """Sample with the engine; the number of tokens computed."""
    rows = engine.complete(prompt, settings, n=n, alternatives=5)
    return sum(len(r.tokens) + (r.finish_reason == "eos") for r in rows)


def transformers_run(model, input_ids, config: GenerationConfig, end_ids, seed: int) -> int:
    """Sample with ``model.generate``; the number of tokens computed up to each row's end."""
    torch.manual_seed(seed)
    out = model.generate(input_ids=input_ids, generation_config=config)  # (n, T + new)
    total = 0
    for row in out[:, input_ids.shape[1] :].tolist():
        ends = [i for i, t in enumerate(row) if t in end_ids]
        total += ends[0] + 1 if ends else len(row)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="any load_model spec")
    parser.add_argument("--n", type=int, default=4, help="continuations of the prefix")
    parser.add_argument("--prefix-tokens", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed pairs")
    args = parser.parse_args()

    model, tokenizer = load_model(args.model)
    model.eval()
    engine = LocalEngine(model, tokenizer, name=args.model)
    prompt = prefix_text(tokenizer, args.prefix_tokens)
    input_ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    settings = SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=1.0, seed=0)
    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens,
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=None,
        num_return_sequences=args.n,
        pad_token_id=tokenizer.eos_token_id,
        eos_token_id=sorted(engine.end_ids),
    )
    print(
        f"{date.today()}, {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}; model {args.model}; n = {args.n} continuations of a "
        f"{input_ids.shape[1]}-token prefix, up to {args.max_new_tokens} new tokens, "
        f"temperature 1; median of {args.repeats} alternating pairs after a warm-up",
        flush=True,
    )
    with torch.inference_mode():
        engine_run(engine, prompt, settings, args.n)
        transformers_run(model, input_ids, config, engine.end_ids, 0)
        engine_rates, hf_rates, ratios = [], [], []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            seeded = dataclasses.replace(settings, seed=repeat)
            engine_tokens = engine_run(engine, prompt, seeded, args.n)
            engine_rate = engine_tokens / (time.perf_counter() - start)
            start = time.perf_counter()
            hf_tokens = transformers_run(model, input_ids, config, engine.end_ids, repeat)
            hf_rate = hf_tokens / (time.perf_counter() - start)
            engine_rates.append(engine_rate)
            hf_rates.append(hf_rate)
            ratios.append(engine_rate / hf_rate)
            print(
                f"  pair {repeat + 1}: engine {engine_tokens} tokens, {engine_rate:7.1f} tok/s; "
                f"generate() {hf_tokens} tokens, {hf_rate:7.1f} tok/s",
                flush=True,
            )
    print(f"engine (LocalEngine.complete)   {statistics.median(engine_rates):8.1f} tokens/s")
    print(f"transformers model.generate()   {statistics.median(hf_rates):8.1f} tokens/s")
    print(f"ratio engine / generate()       {statistics.median(ratios):8.2f}")


if __name__ == "__main__":
    main()
