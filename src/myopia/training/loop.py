"""The training loop: one model, one gradient mode, checkpoints that resume exactly.

>>> from myopia.training import TrainConfig, train
>>> result = train(TrainConfig(model="fresh-llama", gradient="kv", steps=100))  # doctest: +SKIP
>>> result.log[-1]["eval_loss"]                                                   # doctest: +SKIP

Under ``torchrun --nproc_per_node N`` the same call trains with DistributedDataParallel
(gloo on the CPU, nccl on GPUs): each process takes its share of the same global batch,
so N processes reach the weights one process reaches, up to the order of float sums.

A run writes into ``config.out``: ``checkpoint.pt`` (model, optimizer, scheduler, RNG
states, step and log; every ``checkpoint_every`` steps and at the end), ``log.json`` and
``loss_curve.png`` (with its JSON beside it). ``train(config, resume=True)`` continues
from the checkpoint to the same final weights as an uninterrupted run: batch i depends
only on the seed and i, and every other source of state is in the checkpoint.
"""

from __future__ import annotations

import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from myopia.attention import myopic
from myopia.data.text import load_corpus, token_windows
from myopia.errors import MyopiaError
from myopia.gradients.loss import mean_token_loss
from myopia.io import atomic_write_json
from myopia.models.loading import load_model
from myopia.progress import Bar
from myopia.training.batches import WindowBatches
from myopia.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from myopia.training.config import TrainConfig
from myopia.training.schedule import adamw_with_schedule

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainResult:
    model: nn.Module
    log: list[dict]  # one entry per step: step, train_loss, lr, tokens_per_s[, eval_loss]
    out: Path
    rank: int = 0  # under torchrun, only rank 0 evaluates and writes
    tokenizer: object = None

    @property
    def final_eval_loss(self) -> float | None:
        return next((e["eval_loss"] for e in reversed(self.log) if "eval_loss" in e), None)


def _model_spec(config: TrainConfig) -> str:
    # A fresh model's initialisation follows the run's seed unless the spec names one.
    spec = config.model
    if spec.startswith("fresh-") and "seed=" not in spec:
        spec += f"{',' if ':' in spec else ':'}seed={config.seed}"
    return spec


def _distributed_rank_and_size() -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def _device(rank: int) -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count()
        return torch.device("cuda", local)
    return torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, windows: torch.Tensor, batch_size: int) -> float:
    """Mean next-token loss over ``windows`` (in the model's current attention mode)."""
    losses = [
        mean_token_loss(model, {"input_ids": windows[i : i + batch_size]}).item()
        for i in range(0, len(windows), batch_size)
    ]
    return float(np.mean(losses))


def train(config: TrainConfig, resume: bool = False, show_progress: bool = True) -> TrainResult:
    """Train ``config.model`` on ``config.text`` with the ``config.gradient`` gradient."""
    checkpoint_path = config.out / CHECKPOINT
    if resume and not checkpoint_path.exists():
        raise MyopiaError(
            f"nothing to resume: {checkpoint_path} does not exist; train without --resume"
        )
    if not resume and checkpoint_path.exists():
        raise MyopiaError(
            f"{config.out} already holds a run: pass --resume to continue it, "
            "or choose another --out"
        )
    rank, world = _distributed_rank_and_size()
    if config.batch_size % world:
        raise MyopiaError(
            f"--batch-size {config.batch_size} must be a multiple of the {world} processes"
        )
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    np.random.seed(config.seed)
    model, tokenizer = load_model(_model_spec(config))
    device = _device(rank)
    model.to(device).train()
    # Each process trains on its rows of the global batch; DDP averages the gradients.
    # In bigram mode query and key projections get no gradient: tell DDP so.
    unused = config.gradient == "bigram"
    trained = DistributedDataParallel(model, find_unused_parameters=unused) if world > 1 else model
    share = config.batch_size // world
    my_rows = slice(rank * share, (rank + 1) * share)
    documents = load_corpus(config.text)
    batches = WindowBatches(
        token_windows(documents, tokenizer, config.seq_len, "train"), config.batch_size, config.seed
    )
    eval_windows = token_windows(documents, tokenizer, config.seq_len, "eval")
    eval_windows = eval_windows[: config.eval_batches * config.batch_size]
    if len(eval_windows) == 0:
        raise MyopiaError(
            f"the evaluation text has no window of {config.seq_len} tokens: "
            "give more text or lower --seq-len"
        )
    optimizer, scheduler = adamw_with_schedule(
        model.parameters(),
        config.lr,
        config.warmup_steps,
        config.steps,
        config.schedule,
        weight_decay=config.weight_decay,
    )

    start, log = 0, []
    if resume:
        state = load_checkpoint(checkpoint_path)
        changed = config.same_run(state["config"])
        if changed:
            raise MyopiaError(
                f"cannot resume with different settings: {', '.join(changed)} "
                f"differ from the run in {config.out}"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start, log = state["step"], state["log"]

    def checkpoint(step: int) -> None:
        if rank != 0:
            return
        save_checkpoint(
            checkpoint_path,
            {
                "step": step,
                "config": config.to_dict(),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
                "log": log,
            },
        )

    mode = None if config.gradient == "normal" else config.gradient
    tokens_per_step = config.batch_size * config.seq_len
    bar = Bar(config.steps, f"training ({config.gradient})", start, show_progress and rank == 0)
    with myopic(model, mode) if mode else nullcontext(), bar:
        for step in range(start, config.steps):
            began = time.perf_counter()
            batch = {"input_ids": batches(step)["input_ids"][my_rows].to(device)}
            loss = mean_token_loss(trained, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if world > 1:  # log the global batch's loss, not this process's share
                loss = loss.detach().clone()
                dist.all_reduce(loss)
                loss /= world
            entry = {
                "step": step + 1,
                "train_loss": loss.item(),
                "lr": scheduler.get_last_lr()[0],
                "tokens_per_s": tokens_per_step / (time.perf_counter() - began),
            }
            scheduler.step()
            last = step + 1 == config.steps
            if rank == 0 and ((step + 1) % config.eval_every == 0 or last):
                entry["eval_loss"] = evaluate(model, eval_windows, config.batch_size)
            log.append(entry)
            if (step + 1) % config.checkpoint_every == 0 or last:
                checkpoint(step + 1)
            bar.advance(
                f"training ({config.gradient}) loss {entry['train_loss']:.3f} · "
                f"{entry['tokens_per_s']:,.0f} tok/s"
            )

    if rank == 0:
        atomic_write_json(config.out / "log.json", {"config": config.to_dict(), "log": log})
        from myopia.plots import plot_loss_curve  # matplotlib only when a run finishes

        plot_loss_curve(
            log, config.out / "loss_curve.png", f"{config.model}, gradient: {config.gradient}"
        )
    if world > 1:
        dist.barrier()
    return TrainResult(model=model, log=log, out=config.out, rank=rank, tokenizer=tokenizer)
