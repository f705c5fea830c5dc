"""Training steps of the report's small synthetic models (C1(a)'s pre-caching model, d =
64, two layers, a batch of 32 × 16) on one thread against torch's default thread count,
alternated in one process; prints the median of the per-pair ratios for each gradient.

    python bench/small_model_threads.py [--pairs 7] [--steps 40]

Tensors this small leave intra-op threads nothing to share but their start-up and
synchronisation; this measures whether that costs more than the second core gives.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from myopia.training.continuous import ContinuousFit
from myopia.training.precaching import PrecachingTask, train_precaching


def seconds_per_step(task: PrecachingTask, mode: str, steps: int, threads: int) -> float:
    torch.set_num_threads(threads)
    fit = ContinuousFit(steps=steps, batch_size=32, lr=4e-3, warmup_steps=10, gradient=mode)
    start = time.perf_counter()
    train_precaching(task, fit)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    default = torch.get_num_threads()
    task = PrecachingTask(p=1.0, lags=3, frequency=3.0, seq_len=16, d_model=64, n_heads=2)
    print(f"torch {torch.__version__}; default threads {default}; {args.steps} steps a run")
    for mode in ("normal", "kv"):
        seconds_per_step(task, mode, 5, 1)  # warm-up
        ratios, one, many = [], [], []
        for _ in range(args.pairs):
            a = seconds_per_step(task, mode, args.steps, 1)
            b = seconds_per_step(task, mode, args.steps, default)
            one.append(a)
            many.append(b)
            ratios.append(b / a)
        print(
            f"{mode:7s} 1 thread {statistics.median(one) * 1e3:6.1f} ms/step, "
            f"{default} threads {statistics.median(many) * 1e3:6.1f} ms/step; "
            f"time({default} threads) / time(1 thread): median {statistics.median(ratios):.2f} "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f}, {args.pairs} pairs)"
        )
    torch.set_num_threads(default)


if __name__ == "__main__":
    main()
