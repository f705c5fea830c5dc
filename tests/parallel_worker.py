"""One process of the FSDP equality test (tests/test_parallel.py), launched by torchrun.

Trains the tiny float64 Llama of the test in each gradient mode through the one training
loop (``myopia.training.fit``), sharded with FSDP2 over the torchrun processes, each on
its rows of the global batch, and writes the checkpoint (full weights and optimizer
state, gathered) to ``<out>/<mode>.pt``. Usage: ``parallel_worker.py OUT MODE...``.
"""

import sys
from pathlib import Path

import torch

from myopia.gradients.loss import mean_token_loss
from myopia.models.loading import load_model
from myopia.training.fit import Checkpointing, Optimisation, fit
from myopia.training.parallel import join_process_group, wrap

TINY = "fresh-llama:d_model=32,n_layers=2,n_heads=4,d_mlp=64,seed=0"
STEPS, BATCH, LENGTH = 4, 4, 16


def batch(step: int) -> torch.Tensor:
    """Step ``step``'s global batch of token ids, the same in every process."""
    return torch.randint(0, 384, (BATCH, LENGTH), generator=torch.Generator().manual_seed(step))


def run(mode: str, out: Path, rank: int = 0, world: int = 1) -> None:
    """Train ``mode`` on ``world`` processes (1: no wrapping) and checkpoint into ``out``."""
    model, _ = load_model(TINY, dtype=torch.float64)
    model.train()
    device = torch.device("cpu")
    wrap(model, "fsdp", world, device, unused=mode == "bigram")
    share = BATCH // world
    rows = slice(rank * share, (rank + 1) * share)

    def evaluate(entry: dict) -> None:
        # As train() evaluates under FSDP: every process, the whole held-out batch, no
        # backward (FSDP2 leaves the root's weights whole after it).
        with torch.no_grad():
            entry["eval_loss"] = mean_token_loss(model, {"input_ids": batch(10**6)}).item()

    fit(
        model,
        lambda step: mean_token_loss(model, {"input_ids": batch(step)[rows]}),
        Optimisation(STEPS, lr=1e-2, warmup_steps=1),
        device=device,
        gradient=mode,
        evaluate=evaluate,
        checkpoint=Checkpointing(out / f"{mode}.pt", STEPS, {}),
    )


if __name__ == "__main__":
    rank, world = join_process_group()
    for mode in sys.argv[2:]:
        run(mode, Path(sys.argv[1]), rank, world)
    torch.distributed.destroy_process_group()
