"""Seeds of C1(a)'s pre-caching model trained one at a time against one vmapped ensemble
(``torch.func.stack_module_state`` + ``functional_call`` + ``vmap``), alternated in one
process; prints the median of per-pair ratios, and whether the ensemble composes with
each myopic mode at all.

    OMP_NUM_THREADS=1 python bench/precaching_ensemble.py [--seeds 3] [--pairs 5]

One "step" is forward + backward on a (seeds × 32 × 16) batch at the report's size
(d = 64, two layers); the ensemble's gradients are checked against the single models'.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state

from myopia.attention import myopic
from myopia.training.precaching import PrecachingTask


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    task = PrecachingTask(p=1.0, lags=3, frequency=3.0, seq_len=16, d_model=64, n_heads=2)
    models = []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        models.append(task.model())
    generator = torch.Generator().manual_seed(0)
    batches = [task.batch(generator, 32) for _ in range(args.seeds)]
    inputs = torch.stack([b[0] for b in batches])  # (E, B, T, 2)
    targets = torch.stack([b[1] for b in batches])  # (E, B, T, 1)
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def member(p, b, x):
        return functional_call(base, (p, b), (x,))

    def ensemble_step(mode):
        with myopic(base.backbone, mode) if mode else nullcontext():
            out = torch.vmap(member)(params, buffers, inputs)
            loss = F.huber_loss(out, targets, reduction="none").mean(dim=(1, 2, 3)).sum()
            loss.backward()

    def single_steps(mode):
        for model, (x, y) in zip(models, batches, strict=True):
            with myopic(model.backbone, mode) if mode else nullcontext():
                F.huber_loss(model(x), y).backward()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.seeds} seeds")
    for mode in (None, "kv", "residual"):
        name = mode or "normal"
        try:
            ensemble_step(mode)
        except RuntimeError as error:
            print(f"{name}: the ensemble does not run ({str(error).splitlines()[0][:120]})")
            continue
        for v in params.values():
            v.grad = None
        for model in models:
            model.zero_grad()
        ensemble_step(mode)
        single_steps(mode)
        worst = max(
            (params[n].grad[k] - dict(m.named_parameters())[n].grad).abs().max().item()
            for k, m in enumerate(models)
            for n in params
            if params[n].grad is not None  # the unused token embedding has none
        )
        ratios = []
        for _ in range(args.pairs):
            began = time.perf_counter()
            for _ in range(args.steps):
                single_steps(mode)
            one_at_a_time = time.perf_counter() - began
            began = time.perf_counter()
            for _ in range(args.steps):
                ensemble_step(mode)
            ratios.append(one_at_a_time / (time.perf_counter() - began))
        print(
            f"{name}: one-at-a-time / ensemble time = {statistics.median(ratios):.2f} "
            f"(median of {args.pairs} pairs); largest gradient difference {worst:.2e}"
        )


if __name__ == "__main__":
    main()
