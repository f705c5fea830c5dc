"""The training loop: one model, one gradient mode, checkpoints that resume exactly.

>>> from myopia.training import TrainConfig, train
>>> result = train(TrainConfig(model="fresh-llama", gradient="kv", steps=100))  # doctest: +SKIP
>>> result.log[-1]["eval_loss"]                                                   # doctest: +SKIP

Under ``torchrun --nproc_per_node N`` the same call trains with DistributedDataParallel
(``config.parallel = "ddp"``) or, for a model that does not fit one device, with its
parameters, gradients and optimizer state sharded by FSDP2 (``"fsdp"``); gloo on the CPU,
nccl on GPUs (``myopia.training.parallel``). Each process takes its share of the same
global batch, so N processes reach the weights one process reaches, up to the order of
float sums, in every gradient mode.

A run writes into ``config.out``: ``checkpoint.pt`` (model, optimizer, scheduler, RNG
states, step and log; every ``checkpoint_every`` steps and at the end), ``log.json`` and
``loss_curve.png`` (with its JSON beside it). ``train(config, resume=True)`` continues
from the checkpoint to the same final weights as an uninterrupted run: batch i depends
only on the seed and i, and every other source of state is in the checkpoint.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from myopia.data.text import corpus_sha256, load_corpus, token_windows
from myopia.errors import MyopiaError
from myopia.gradients.loss import mean_token_loss
from myopia.io import atomic_write_json
from myopia.models.loading import check_seq_len, load_model
from myopia.training.batches import WindowBatches
from myopia.training.config import TrainConfig
from myopia.training.fit import (
    CHECKPOINT,
    Checkpointing,
    Optimisation,
    claim_run_folder,
    fit,
    training_device,
)
from myopia.training.parallel import is_sharded, join_process_group, wrap


@dataclass
class TrainResult:
    model: nn.Module
    log: list[dict]  # one entry per step: step, train_loss, lr, tokens_per_s[, eval_loss]
    out: Path
    rank: int = 0  # under torchrun, only rank 0 evaluates and writes
    tokenizer: object = None
    device: str = "cpu"  # where the model was trained

    @property
    def final_eval_loss(self) -> float | None:
        return next((e["eval_loss"] for e in reversed(self.log) if "eval_loss" in e), None)


def _model_spec(config: TrainConfig) -> str:
    # A fresh model's initialisation follows the run's seed unless the spec names one.
    spec = config.model
    if spec.startswith("fresh-") and "seed=" not in spec:
        spec += f"{',' if ':' in spec else ':'}seed={config.seed}"
    return spec


@torch.no_grad()
def evaluate(model: nn.Module, windows: torch.Tensor, batch_size: int) -> float:
    """Mean next-token loss over ``windows`` (in the model's current attention mode)."""
    device = next(model.parameters()).device
    losses = [
        mean_token_loss(model, {"input_ids": windows[i : i + batch_size].to(device)}).item()
        for i in range(0, len(windows), batch_size)
    ]
    return float(np.mean(losses))


def train(config: TrainConfig, resume: bool = False, show_progress: bool = True) -> TrainResult:
    """Train ``config.model`` on ``config.text`` with the ``config.gradient`` gradient."""
    checkpoint_path = claim_run_folder(config.out, resume)
    rank, world = join_process_group()
    if config.batch_size % world:
        raise MyopiaError(
            f"--batch-size {config.batch_size} must be a multiple of the {world} processes"
        )
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    np.random.seed(config.seed)
    model, tokenizer = load_model(_model_spec(config))
    check_seq_len(model, config.seq_len)
    device = training_device(rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # nccl and the device mesh use the current device
    if not (world > 1 and config.parallel == "fsdp"):  # fully_shard moves block by block
        model.to(device)
    model.train()
    # Each process trains on its rows of the global batch; DDP averages the gradients,
    # FSDP reduce-scatters them. In bigram mode query and key projections get no
    # gradient: DDP must be told so.
    trained = wrap(model, config.parallel, world, device, unused=config.gradient == "bigram")
    sharded = is_sharded(model)  # then every forward pass is a collective
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

    def loss(step: int) -> torch.Tensor:
        batch = {"input_ids": batches(step)["input_ids"][my_rows].to(device)}
        return mean_token_loss(trained, batch)

    tokens_per_step = config.batch_size * config.seq_len

    def evaluate_now(entry: dict) -> None:
        entry["tokens_per_s"] = tokens_per_step / entry["seconds"]
        step = entry["step"]
        if (rank == 0 or sharded) and (step % config.eval_every == 0 or step == config.steps):
            entry["eval_loss"] = evaluate(model, eval_windows, config.batch_size)

    # What the weights depend on: a checkpoint of other settings is not continued.
    # The text by its contents, not its path: an edited file is other training data.
    settings = {
        **{
            k: v
            for k, v in config.to_dict().items()
            if k not in ("out", "eval_every", "checkpoint_every", "parallel")
        },
        "text_sha256": corpus_sha256(config.text),
    }
    log = fit(
        model,
        loss,
        Optimisation(
            config.steps,
            config.lr,
            config.warmup_steps,
            config.schedule,
            weight_decay=config.weight_decay,
        ),
        device=device,
        gradient=config.gradient,
        checkpoint=Checkpointing(checkpoint_path, config.checkpoint_every, settings),
        evaluate=evaluate_now,
        progress=show_progress and rank == 0,
        label="training",
    )

    if rank == 0:
        atomic_write_json(config.out / "log.json", {"config": config.to_dict(), "log": log})
        from myopia.plots import plot_loss_curve  # matplotlib only when a run finishes

        plot_loss_curve(
            log, config.out / "loss_curve.png", f"{config.model}, gradient: {config.gradient}"
        )
    if world > 1:
        dist.barrier()
    return TrainResult(
        model=model, log=log, out=config.out, rank=rank, tokenizer=tokenizer, device=str(device)
    )


__all__ = ["CHECKPOINT", "TrainResult", "evaluate", "train"]
