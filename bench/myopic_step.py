"""Cost of a myopic training step against an ordinary one, measured side by side.

For each model, the same batch and the same attention backend family, it times a
forward + backward pass in ordinary mode and in myopic mode, alternating the two so that
machine noise hits both alike, and prints the median of the per-pair ratios.
Targets: <= 1.15 for kv, <= 1.20 for residual. Models whose transformers code has no
sdpa path (Gemma2, GPT-OSS) are compared with ordinary eager attention on both backends.

    python bench/myopic_step.py                 # tiny models and SmolLM2, batch 4 x 256
    python bench/myopic_step.py --models families --seq-len 128   # every architecture
    python bench/myopic_step.py --models tiny --repeats 20
    python bench/myopic_step.py --models families --clock cpu   # on a busy machine

``--clock cpu`` times each step by the process's CPU time instead of the wall clock: on
a machine shared with other jobs, time spent waiting for a core is not counted, so the
ratios move far less with the load (CPU only; a GPU's work is not CPU time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from myopia.attention import myopic
from myopia.errors import MyopiaError
from myopia.gradients.loss import mean_token_loss
from myopia.models.loading import load_model
from myopia.models.tiny import ARCHITECTURES, build_tiny_model

TARGET_RATIO = {"kv": 1.15, "residual": 1.20, "bigram": float("inf")}
# (ordinary transformers backend, myopia backend) pairs of the same family.
BACKENDS = {"fast": "sdpa", "eager": "eager"}
FAMILIES = [f"arch-{name}" for name in ARCHITECTURES]


def step(model, batch) -> None:
    model.zero_grad(set_to_none=True)
    mean_token_loss(model, batch).backward()
    if batch["input_ids"].is_cuda:  # GPU work is asynchronous: time it to the end
        torch.cuda.synchronize()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_pair(
    model, batch, mode, backend, repeats, clock=time.perf_counter
) -> tuple[float, float, float]:
    """Median ordinary time, median myopic time, and the median of the per-pair ratios
    (each pair run back to back, so slow drifts of the machine cancel in the ratio)."""
    ordinary_times, myopic_times = [], []
    try:
        model.set_attn_implementation(BACKENDS[backend])
    except ValueError:  # no sdpa path in this model's code: ordinary is eager attention
        model.set_attn_implementation("eager")
    for _ in range(2):  # warm-up both
        step(model, batch)
        with myopic(model, mode, backend):
            step(model, batch)
    for _ in range(repeats):
        start = clock()
        step(model, batch)
        ordinary_times.append(clock() - start)
        with myopic(model, mode, backend):
            start = clock()
            step(model, batch)
            myopic_times.append(clock() - start)
    ratios = [m / o for m, o in zip(myopic_times, ordinary_times, strict=True)]
    return (
        statistics.median(ordinary_times),
        statistics.median(myopic_times),
        statistics.median(ratios),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["tiny", "tiny-gpt2", "smollm2"],
        help="tiny, tiny-gpt2, smollm2, families (a tiny model of every architecture in "
        "myopia.models.tiny, float32), arch-NAME for one of them, or any load_model spec",
    )
    parser.add_argument("--modes", nargs="+", default=["kv", "residual"])
    parser.add_argument("--backends", nargs="+", default=["fast", "eager"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument(
        "--repeats",
        type=int,
        help="pairs timed per case (default: 30 for the tiny model, 5 for SmolLM2)",
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed time; cpu: the process's CPU time, steadier on a busy machine "
        "(CPU models only)",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    specs = {
        # The tiny Llama has grouped-query attention; the tiny GPT-2 is the size of the
        # pre-caching task's model (2 layers, d = 128, 2 heads).
        "tiny": "fresh-llama:d_model=128,n_layers=2,n_heads=4,n_kv_heads=2,d_mlp=512",
        "tiny-gpt2": "fresh-gpt2:d_model=128,n_layers=2,n_heads=2,d_mlp=512",
        "smollm2": "smollm2",
    }
    rows = []
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"batch {args.batch} x {args.seq_len} tokens; {args.clock} clock; "
        "ratio: median of per-pair ratios"
    )
    names = [n for m in args.models for n in (FAMILIES if m == "families" else [m])]
    for name in names:
        if name.startswith("arch-"):
            model = build_tiny_model(name.removeprefix("arch-"), dtype=torch.float32)
        else:
            model, _ = load_model(specs.get(name, name))
        if args.clock == "cpu" and next(model.parameters()).is_cuda:
            parser.error("--clock cpu times CPU models only: use --clock wall on a GPU")
        model.train()
        generator = torch.Generator().manual_seed(0)
        vocab = model.config.vocab_size
        batch = {
            "input_ids": torch.randint(0, vocab, (args.batch, args.seq_len), generator=generator)
        }
        for backend in args.backends:
            for mode in args.modes:
                repeats = args.repeats or (5 if name == "smollm2" else 30)
                try:
                    ordinary, myopic_time, ratio = time_pair(
                        model, batch, mode, backend, repeats, CLOCKS[args.clock]
                    )
                except MyopiaError as error:
                    print(f"{name:14s} {mode:8s} {backend:5s} refused: {error}", flush=True)
                    continue
                target = TARGET_RATIO[mode]
                rows.append(
                    {
                        "model": name,
                        "mode": mode,
                        "backend": backend,
                        "ordinary_s": ordinary,
                        "myopic_s": myopic_time,
                        "ratio": ratio,
                        "within_target": ratio <= target,
                    }
                )
                print(
                    f"{name:14s} {mode:8s} {backend:5s} "
                    f"({model.config._attn_implementation or 'eager':5s}) "
                    f"ordinary {ordinary * 1e3:8.1f} ms  myopic {myopic_time * 1e3:8.1f} ms  "
                    f"ratio {ratio:.3f}  {'OK' if ratio <= target else 'OVER'} "
                    f"(target <= {target})",
                    flush=True,
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
