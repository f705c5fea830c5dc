"""Training throughput, myopic against normal, on the same model and data, side by side.

Each gradient mode trains the same fresh model from the same seed for the same steps
with ``myopia.training.train``; modes alternate over rounds so machine noise hits all
alike. Prints the median tokens per second of each mode and its ratio to ``normal``.

    python bench/train_throughput.py
    python bench/train_throughput.py --model fresh-gpt2:d_model=128,n_layers=2,n_heads=2 --steps 40
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from myopia.training import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fresh-llama:d_model=128,n_layers=2,n_heads=4")
    parser.add_argument("--modes", nargs="+", default=["normal", "kv", "residual"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.model}, "
        f"batch {args.batch_size} x {args.seq_len}, {args.steps} steps, {args.rounds} rounds"
    )
    speeds: dict[str, list[float]] = {mode: [] for mode in args.modes}
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            for mode in args.modes:
                config = TrainConfig(
                    model=args.model,
                    gradient=mode,
                    steps=args.steps,
                    batch_size=args.batch_size,
                    seq_len=args.seq_len,
                    eval_every=args.steps,
                    checkpoint_every=args.steps,
                    out=Path(tmp) / f"{mode}-{round_index}",
                )
                log = train(config, show_progress=False).log
                # The first steps warm up allocators and caches: leave them out.
                speeds[mode].append(statistics.median(e["tokens_per_s"] for e in log[5:]))
    normal = statistics.median(speeds["normal"]) if "normal" in speeds else None
    for mode, values in speeds.items():
        speed = statistics.median(values)
        ratio = f"  time per token vs normal: {normal / speed:.3f}" if normal else ""
        print(f"{mode:9s} {speed:10,.0f} tokens/s{ratio}")


if __name__ == "__main__":
    main()
