"""glibc's malloc with its defaults against one that keeps freed blocks for reuse, on C8's
continuation scoring (the report's longest section).

By default glibc serves blocks above an adaptive threshold (up to 32 MB) with their own
``mmap``, unmaps them when freed, and trims a heap's top when much of it is free, so a
forward pass's activations and grown KV caches may arrive as fresh pages that the kernel
faults in and zeroes. "Kept" sets glibc's own tunables (``mallopt``: mmap threshold 32 MB,
trim threshold 2**31 - 1) so freed blocks stay in the heap. This was measured as a
candidate for the report and not adopted (bench/RESULTS-malloc_reuse.txt).

The setting is process-wide and, once made, cannot be undone exactly (an explicit
threshold turns off glibc's adaptive one), so the two ways cannot share one process: each
pair runs two child processes back to back, defaults then kept, and the ratio is read
pair by pair so that a drift in the machine's speed cancels. Each child loads SmolLM2,
scores the first ``--requests`` selection-half requests of C8's full budget once to warm
up, then ``--repeats`` more times, and prints the median seconds and its peak resident
memory. The scores of the two ways are compared too: they must be equal (where memory
comes from changes no arithmetic).

    python bench/malloc_reuse.py --pairs 3 --requests 100 --repeats 3
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import resource
import statistics
import subprocess
import sys
import time


def keep_freed_blocks() -> bool:
    """mallopt(M_MMAP_THRESHOLD, 32 MB) and mallopt(M_TRIM_THRESHOLD, 2**31 - 1): whether
    glibc took both."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(-3, 32 * 2**20) and libc.mallopt(-1, 2**31 - 1))


def child(keep: bool, requests: int, repeats: int) -> None:
    import torch

    from myopia.faithfulness.article_data import framed_prompt
    from myopia.faithfulness.continuation_scores import ScoreRequest, score_requests
    from myopia.faithfulness.off_context import (
        SELECTION,
        OffContextConfig,
        _phrasings,
        make_questions,
        split_halves,
    )
    from myopia.models.loading import load_model

    took = keep_freed_blocks() if keep else None
    model, tokenizer = load_model("smollm2")
    config = OffContextConfig.full()
    records = make_questions(config)
    halves = split_halves(records, config.seed)
    asked = []
    for record in (r for r in records if halves[r.article_id] == SELECTION):
        answers, refusals = _phrasings(record, {})
        for framing in config.framings:
            context, query = framed_prompt(record, framing)
            asked.append(ScoreRequest(context, query, (*answers, *refusals)))
    asked = asked[:requests]
    scores = score_requests(model, tokenizer, asked, batch_size=config.batch_size)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        score_requests(model, tokenizer, asked, batch_size=config.batch_size)
        times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "keep": keep,
                "settings_taken": took,
                "threads": torch.get_num_threads(),
                "median_s": statistics.median(times),
                "times_s": times,
                "peak_rss_mb": peak_mb,
                "scores": scores,
            }
        )
    )


def run_child(keep: bool, args) -> dict:
    command = [sys.executable, __file__, "--child", "keep" if keep else "default"]
    command += ["--requests", str(args.requests), "--repeats", str(args.repeats)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=("keep", "default"))
    args = parser.parse_args()
    if args.child:
        child(args.child == "keep", args.requests, args.repeats)
        return
    ratios = []
    for pair in range(args.pairs):
        default, kept = run_child(False, args), run_child(True, args)
        if default["scores"] != kept["scores"]:
            raise SystemExit("the scores differ between the two ways")
        ratio = default["median_s"] / kept["median_s"]
        ratios.append(ratio)
        print(
            f"pair {pair + 1}: defaults {default['median_s']:.2f} s "
            f"(peak {default['peak_rss_mb']:.0f} MB), kept {kept['median_s']:.2f} s "
            f"(peak {kept['peak_rss_mb']:.0f} MB, settings taken: {kept['settings_taken']}), "
            f"defaults / kept {ratio:.2f}, scores equal",
            flush=True,
        )
    print(f"median defaults / kept over {args.pairs} pairs: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
