"""Gradient splits of SmolLM2 with and without ``keep_freed_memory`` (myopia.allocator).

The setting is process-wide, so the two cannot alternate in one process: run this
script twice, alternately, and compare the whole processes (A B A B ..., the ratio pair
by pair), e.g. with ``/usr/bin/time -v``:

    python bench/allocator.py --keep      # thresholds raised, as the myopia command does
    python bench/allocator.py             # glibc's defaults

Each run splits the gradient of ``--sequences`` windows of ``--seq-len`` tokens (C1b's
quick budget by default) and prints the seconds the splits took.
"""

from __future__ import annotations

import argparse
import time

import torch

from myopia.allocator import keep_freed_memory
from myopia.data.text import load_corpus, token_chunks
from myopia.gradients.future_share import measure_future_share
from myopia.models.loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="raise glibc's thresholds first")
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=32)
    args = parser.parse_args()
    kept = keep_freed_memory() if args.keep else False
    model, tokenizer = load_model("smollm2")
    sequences = token_chunks(load_corpus(), tokenizer, args.seq_len, args.sequences, seed=0)
    start = time.perf_counter()
    result = measure_future_share(model, sequences, show_progress=False)
    seconds = time.perf_counter() - start
    print(
        f"keep_freed_memory={kept}: {args.sequences} splits of {args.seq_len} tokens in "
        f"{seconds:.2f} s (overall future share {result.overall.mean():.4f}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
