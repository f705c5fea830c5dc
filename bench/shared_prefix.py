"""C6's shared passages: work done once per passage instead of once per request.

C6 asks four requests about each passage, so most of every prompt is the passage. Two
steps read it once per passage, and each has the per-request form as its baseline:

- generation (``DecodeOptions(share_prefixes=True)`` against ``False``): the quotes are
  checked to be the same tokens;
- the features of the generated quotes (``shared_span_features`` against
  ``span_features``): the largest difference of the lookback ratios is printed.

Both run alternately on the same prompts in one process (machine noise hits both alike);
a ratio is the median of the per-pair ratios, baseline time ÷ shared time.

    OMP_NUM_THREADS=1 python bench/shared_prefix.py --passages 12 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from dataclasses import replace
from datetime import date

import numpy as np
import torch

from myopia.data.text import load_corpus
from myopia.faithfulness.copy_detection import (
    STOP,
    WHOLE_TOKENS,
    CopyDetectionConfig,
    make_requests,
)
from myopia.faithfulness.lookback import shared_span_features, span_features
from myopia.faithfulness.quote_data import quote_prompt
from myopia.generation import SamplingSettings, generate
from myopia.models.loading import load_model


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="any load_model spec")
    parser.add_argument("--passages", type=int, default=12, help="C6 passages (4 requests each)")
    parser.add_argument("--repeats", type=int, default=3, help="timed pairs per step")
    args = parser.parse_args()

    model, tokenizer = load_model(args.model)
    model.eval()
    config = CopyDetectionConfig.full()
    requests = make_requests(replace(config, n_contexts=args.passages), load_corpus())
    prompts = [quote_prompt(r) for r in requests]
    settings = SamplingSettings(config.max_new_tokens, stop=STOP, seed=config.seed)
    whole = replace(WHOLE_TOKENS, share_prefixes=False)
    print(
        f"{date.today()}, {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}; model {args.model}; {len(prompts)} prompts about "
        f"{args.passages} passages; C6's batch of {config.batch_size} prompts",
        flush=True,
    )

    def generation(options):
        return generate(
            model, tokenizer, prompts, settings, options=options, batch_size=config.batch_size
        )

    ratios, quotes = [], None
    for repeat in range(args.repeats):
        baseline, baseline_s = timed(lambda: generation(whole))
        shared, shared_s = timed(lambda: generation(WHOLE_TOKENS))
        same = sum(a[0].token_ids == b[0].token_ids for a, b in zip(baseline, shared, strict=True))
        ratios.append(baseline_s / shared_s)
        quotes = shared
        print(
            f"  generation pair {repeat + 1}: whole prompts {baseline_s:.1f} s, shared "
            f"{shared_s:.1f} s, ratio {ratios[-1]:.2f}; the same quote {same}/{len(prompts)}",
            flush=True,
        )
    print(f"generation: whole ÷ shared {statistics.median(ratios):.2f}")

    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    keep = [i for i, row in enumerate(quotes) if row[0].token_ids]
    prompt_ids = [prompt_ids[i] for i in keep]
    spans = [list(quotes[i][0].token_ids) for i in keep]
    groups = [requests[i].context_id for i in keep]
    ratios = []
    for repeat in range(args.repeats):
        baseline, baseline_s = timed(lambda: span_features(model, prompt_ids, spans))
        shared, shared_s = timed(lambda: shared_span_features(model, prompt_ids, spans, groups))
        gap = float(np.abs(baseline.lookback - shared.lookback).max())
        ratios.append(baseline_s / shared_s)
        print(
            f"  features pair {repeat + 1}: one pass per quote {baseline_s:.1f} s, shared "
            f"{shared_s:.1f} s, ratio {ratios[-1]:.2f}; largest lookback difference {gap:.1e}",
            flush=True,
        )
    print(f"features: per quote ÷ shared {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
