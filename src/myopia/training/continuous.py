"""Continuous-input models and their trainer: a linear embedding in, GPT-2 blocks, a linear
read-out, and a loss the task chooses (Huber for the tasks of this project).

A task supplies ``batch(generator) -> (inputs (B, T, n_inputs), targets (B, T, n_outputs))``
and :func:`fit_continuous` turns it into the batch source and loss of the one training
loop (``myopia.training.fit``), for every task of this kind (pre-caching, effort
allocation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2Model

from myopia.errors import MyopiaError
from myopia.training.fit import (
    SMALL_MODEL_THREADS,
    Checkpointing,
    Optimisation,
    cpu_threads,
    training_device,
)
from myopia.training.fit import fit as run_fit

CONTINUOUS_GRADIENTS = ("normal", "kv", "residual")

Batch = tuple[torch.Tensor, torch.Tensor]  # inputs (B, T, n_inputs), targets (B, T, n_outputs)


@dataclass
class ContinuousFit:
    """Optimisation settings shared by every continuous task."""

    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 50
    gradient: str = "normal"  # normal, kv or residual
    seed: int = 0
    eval_batches: int = 8

    def __post_init__(self):
        if self.gradient not in CONTINUOUS_GRADIENTS:
            raise MyopiaError(
                f"gradient must be one of {', '.join(CONTINUOUS_GRADIENTS)}, not {self.gradient!r}"
            )
        for name in ("steps", "batch_size", "eval_batches"):
            if getattr(self, name) < 1:
                raise MyopiaError(f"{name} must be at least 1, got {getattr(self, name)}")


class ContinuousModel(nn.Module):
    """Linear embedding -> GPT-2 blocks (learned positions, no token embedding) -> linear."""

    def __init__(
        self,
        d_model: int,
        n_layers: int,
        n_heads: int,
        seq_len: int,
        n_inputs: int,
        n_outputs: int = 1,
    ):
        super().__init__()
        if d_model % n_heads:
            raise MyopiaError(
                f"d_model {d_model} must be a multiple of the {n_heads} attention heads"
            )
        gpt2 = GPT2Config(
            n_embd=d_model,
            n_layer=n_layers,
            n_head=n_heads,
            n_positions=seq_len,
            vocab_size=1,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=0,
            eos_token_id=0,
        )
        self.embed = nn.Linear(n_inputs, d_model)
        self.backbone = GPT2Model(gpt2)
        self.readout = nn.Linear(d_model, n_outputs)

    def hidden_states(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The residual stream after the embedding and after each block, (B, T, d) each;
        the last one is after the final layer norm."""
        out = self.backbone(
            inputs_embeds=self.embed(inputs), use_cache=False, output_hidden_states=True
        )
        return out.hidden_states

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:  # (B, T, n_in) -> (B, T, n_out)
        hidden = self.backbone(inputs_embeds=self.embed(inputs), use_cache=False)
        return self.readout(hidden.last_hidden_state)


def fit_continuous(
    model: ContinuousModel,
    batch: Callable[[torch.Generator], Batch],
    fit: ContinuousFit,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.huber_loss,
    checkpoint: Path | None = None,
    checkpoint_every: int = 200,
    show_progress: bool = False,
    task_settings: dict | None = None,
    device: torch.device | None = None,
    evaluate: Callable[[dict], None] | None = None,
) -> list[tuple[int, float]]:
    """Train ``model`` in place (see :func:`myopia.training.fit.fit`) on batches drawn from
    a generator seeded with ``fit.seed``, on ``device`` (default: the training device).

    Returns the training-loss curve as (step, loss) pairs, every 25 steps and at the end.
    With a myopic gradient the forward values are the ordinary ones; only the backward
    pass differs. With ``checkpoint``, the run checkpoints there every
    ``checkpoint_every`` steps and continues a checkpoint of the same settings found
    there; ``task_settings`` (what the batches depend on) is part of those settings, so
    that a checkpoint of another task is refused. ``evaluate(entry)`` runs after each
    optimizer step (see :func:`myopia.training.fit.fit`).
    """
    device = training_device() if device is None else device
    data = torch.Generator().manual_seed(fit.seed)

    def step_loss(step: int) -> torch.Tensor:
        inputs, targets = (t.to(device) for t in batch(data))  # data drawn on the CPU
        return loss(model(inputs), targets)

    settings = {"fit": asdict(fit), "task": task_settings or {}}
    with cpu_threads(SMALL_MODEL_THREADS, device):
        log = run_fit(
            model,
            step_loss,
            Optimisation(fit.steps, fit.lr, fit.warmup_steps, floor=0.05),
            device=device,
            gradient=fit.gradient,
            attention=model.backbone,
            generators=[data],
            checkpoint=None
            if checkpoint is None
            else Checkpointing(checkpoint, checkpoint_every, settings),
            evaluate=evaluate,
            progress=show_progress,
        )
    return [
        (e["step"], e["train_loss"])
        for e in log
        if (e["step"] - 1) % 25 == 0 or e["step"] == fit.steps
    ]


def held_out_batches(batch: Callable[[torch.Generator], Batch], seed: int, n: int) -> list[Batch]:
    """Evaluation batches from a stream no training run sees (training streams are seeded
    with small integers)."""
    generator = torch.Generator().manual_seed(10**9 + seed)
    return [batch(generator) for _ in range(n)]
