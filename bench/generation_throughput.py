"""Throughput of the one generation path against plain ``generate()`` of transformers.

Both continue the same prompts with the same settings (temperature 1, no top-p, no
top-k, the same seed and max tokens). The generation path draws exactly as ``generate()``
does (``myopia.generation.decode``), so both compute the same tokens, and the bench
checks that they did: the ratio of tokens per second is then a ratio of times for the
same work. Each timed call is a whole generation, from the prompts' ids to the finished
continuations; for the engine that includes detokenisation, per-token log-probabilities
and, with ``alternatives`` > 0, the top alternatives at every step and their texts.

Two shapes, each with alternatives off (0) and on (5): one prompt (batch 1) and
``--prompts`` prompts of different lengths (left-padded) in one batch. For each, the two
run alternately after a warm-up of each, so that machine noise hits both alike; the ratio
is the median of the per-pair ratios.

    python bench/generation_throughput.py                    # SmolLM2, 1 and 8 prompts, 64 tokens
    python bench/generation_throughput.py --model "fresh-llama:d_model=64,n_layers=2" --repeats 9
    python bench/generation_throughput.py --profile          # where each one's time goes

``--profile`` runs each shape once more under cProfile, the engine and ``generate()``
alike, and prints the time both spend in the model's linear layers (the same calls, the
same count) against the rest: the rest bounds how much faster either can be than the
other on the same work.
"""

from __future__ import annotations

import argparse
import cProfile
import platform
import pstats
import statistics
import time
from datetime import date

import torch
from transformers import GenerationConfig

from myopia.data.text import load_corpus
from myopia.errors import MyopiaError
from myopia.generation import DecodeOptions, SamplingSettings
from myopia.generation.decode import end_of_text_ids, generate_ids
from myopia.models.loading import load_model


def prompt_ids(tokenizer, count: int, shortest: int, seed: int = 0) -> list[list[int]]:
    """``count`` prompts of natural text (random tokens if there is no corpus), of
    lengths from ``shortest`` up, so that a batch of them needs padding."""
    lengths = [shortest + 5 * i for i in range(count)]
    try:
        text = load_corpus()[0].text
        ids = tokenizer(text[: 20 * (max(lengths) + 10 * count)], add_special_tokens=False)
        ids = ids["input_ids"]
    except MyopiaError:
        generator = torch.Generator().manual_seed(seed)
        size = max(lengths) + 10 * count
        ids = torch.randint(0, tokenizer.vocab_size, (size,), generator=generator).tolist()
    return [ids[10 * i : 10 * i + n] for i, n in enumerate(lengths)]


def left_padded(prompts: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])  # (B, T)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])  # (B, T)
    return ids, mask


def computed(rows: list[tuple[list[int], bool]]) -> int:
    """Tokens computed: each row's, and its end of text where it has one."""
    return sum(len(ids) + ended for ids, ended in rows)


def engine_run(model, tokenizer, prompts, settings, alternatives, end_ids):
    """Each row's new tokens before its end, and whether it ended at an end of text."""
    options = DecodeOptions(alternatives=alternatives)
    out = generate_ids(model, tokenizer, prompts, settings, 1, options, len(prompts), end_ids)
    return [(list(c.token_ids), c.finish_reason == "eos") for [c] in out]


def transformers_run(model, ids, mask, config, seed, end_ids):
    """The same as ``engine_run``, from ``model.generate``."""
    torch.manual_seed(seed)
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    rows = []
    for row in out[:, ids.shape[1] :].tolist():
        end = next((i for i, t in enumerate(row) if t in end_ids), None)
        rows.append((row, False) if end is None else (row[:end], True))
    return rows


def compare(model, tokenizer, prompts, args, alternatives: int) -> float:
    """Alternate the two; print each pair; return the median ratio engine / generate()."""
    end_ids = end_of_text_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(end_ids)
    ids, mask = left_padded(prompts, pad)
    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens,
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,  # none (None would fill in generate()'s default of 50)
        pad_token_id=pad,
        eos_token_id=sorted(end_ids),
    )
    ratios = []
    for repeat in range(args.repeats + 1):  # the first pair is the warm-up
        settings = SamplingSettings(args.max_new_tokens, temperature=1.0, seed=repeat)
        start = time.perf_counter()
        ours = engine_run(model, tokenizer, prompts, settings, alternatives, end_ids)
        engine_s = time.perf_counter() - start
        start = time.perf_counter()
        theirs = transformers_run(model, ids, mask, config, repeat, end_ids)
        generate_s = time.perf_counter() - start
        if ours != theirs:
            raise SystemExit("the engine and generate() computed different tokens")
        tokens = computed(theirs)
        if repeat == 0:
            continue
        ratios.append(generate_s / engine_s)
        print(
            f"    pair {repeat}: {tokens} tokens; engine {tokens / engine_s:7.1f} tok/s, "
            f"generate() {tokens / generate_s:7.1f} tok/s, ratio {ratios[-1]:.2f}",
            flush=True,
        )
    return statistics.median(ratios)


def profile_split(run) -> tuple[float, float, int]:
    """``(total s, s inside linear layers, linear calls)`` of ``run()`` under cProfile."""
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.runcall(run)
    total = time.perf_counter() - start
    stats = pstats.Stats(profile).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    linear = [
        (v[1], v[2]) for k, v in stats.items() if k[2] == "<built-in method torch._C._nn.linear>"
    ]
    return total, sum(t for _, t in linear), sum(n for n, _ in linear)


def profile_shape(model, tokenizer, prompts, args) -> None:
    """One profiled run of each; the share of time outside the linear layers."""
    end_ids = end_of_text_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(end_ids)
    ids, mask = left_padded(prompts, pad)
    settings = SamplingSettings(args.max_new_tokens, temperature=1.0, seed=0)
    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens, do_sample=True, temperature=1.0, top_p=1.0,
        top_k=0, pad_token_id=pad, eos_token_id=sorted(end_ids),
    )  # fmt: skip
    runs = {
        "engine": lambda: engine_run(model, tokenizer, prompts, settings, 0, end_ids),
        "generate()": lambda: transformers_run(model, ids, mask, config, 0, end_ids),
    }
    for run in runs.values():
        run()  # warm-up
    for name, run in runs.items():
        total, linear, calls = profile_split(run)
        print(
            f"    {name:10s} {total:6.2f} s, of which linear layers {linear:6.2f} s "
            f"({calls} calls, {linear / total:.0%}); the rest {total - linear:5.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="any load_model spec")
    parser.add_argument("--prompts", type=int, default=8, help="prompts in the batched shape")
    parser.add_argument("--prompt-tokens", type=int, default=32, help="the shortest prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed pairs per shape")
    parser.add_argument(
        "--profile", action="store_true", help="profile one run of each shape instead"
    )
    args = parser.parse_args()

    model, tokenizer = load_model(args.model)
    model.eval()
    prompts = prompt_ids(tokenizer, args.prompts, args.prompt_tokens)
    print(
        f"{date.today()}, {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}; model {args.model}; up to {args.max_new_tokens} new "
        f"tokens, temperature 1; median of {args.repeats} alternating pairs after a warm-up",
        flush=True,
    )
    results = {}
    with torch.inference_mode():
        for shape, chosen in (("batch 1", prompts[:1]), (f"{args.prompts} prompts", prompts)):
            if args.profile:
                print(f"  {shape}, alternatives 0, profiled")
                profile_shape(model, tokenizer, chosen, args)
                continue
            for alternatives in (0, 5):
                name = f"{shape}, alternatives {alternatives}"
                print(f"  {name} (prompts of {len(chosen[0])}-{len(chosen[-1])} tokens)")
                results[name] = compare(model, tokenizer, chosen, args, alternatives)
    for name, ratio in results.items():
        print(f"ratio engine / generate(), {name:28s} {ratio:6.2f}")


if __name__ == "__main__":
    main()
