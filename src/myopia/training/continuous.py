"""Continuous-input models and their trainer: a linear embedding in, GPT-2 blocks, a linear
read-out, and a loss the task chooses (Huber for the tasks of this project).

A task supplies ``batch(generator) -> (inputs (B, T, n_inputs), targets (B, T, n_outputs))``
and the trainer fits a :class:`ContinuousModel` to it with the ordinary gradient or a
myopic one. Every task of this kind (pre-caching, effort allocation) goes through
:func:`fit_continuous`, so the gradient modes are applied in exactly one place.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2Model

from myopia.attention import myopic
from myopia.errors import MyopiaError
from myopia.progress import Bar
from myopia.training.checkpoint import load_checkpoint, save_checkpoint
from myopia.training.schedule import adamw_with_schedule

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
) -> list[tuple[int, float]]:
    """Train ``model`` in place on batches drawn from a generator seeded with ``fit.seed``.

    Returns the training-loss curve as (step, loss) pairs. With a myopic gradient the
    forward values are the ordinary ones; only the backward pass differs.
    With ``checkpoint``, the model, optimizer, schedule, data generator, step and curve
    are written there atomically every ``checkpoint_every`` steps and at the end, and a
    run finds an existing checkpoint of the same settings and continues from it, to the
    same final weights as an uninterrupted run. ``task_settings`` (what the batches
    depend on) is stored with it, so that a checkpoint of another task is refused.
    """
    settings = {"fit": asdict(fit), "task": task_settings or {}}
    optimizer, scheduler = adamw_with_schedule(
        model.parameters(), fit.lr, fit.warmup_steps, fit.steps, floor=0.05
    )
    data = torch.Generator().manual_seed(fit.seed)
    start, curve = 0, []
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(Path(checkpoint))
        if state["settings"] != settings:
            raise MyopiaError(
                f"{checkpoint} holds a run with other settings: choose another output "
                "folder or delete it"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        data.set_state(state["data"])
        start, curve = state["step"], [tuple(c) for c in state["curve"]]

    def save(step: int) -> None:
        state = {
            "settings": settings,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "data": data.get_state(),
            "step": step,
            "curve": [list(c) for c in curve],
        }
        save_checkpoint(Path(checkpoint), state)

    device = next(model.parameters()).device
    mode = None if fit.gradient == "normal" else fit.gradient
    bar = Bar(fit.steps, f"training ({fit.gradient})", start, show_progress)
    with myopic(model.backbone, mode) if mode else nullcontext(), bar:
        for step in range(start, fit.steps):
            inputs, targets = (t.to(device) for t in batch(data))  # data drawn on the CPU
            value = loss(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            scheduler.step()
            if step % 25 == 0 or step + 1 == fit.steps:
                curve.append((step + 1, value.item()))
            if checkpoint is not None and (
                (step + 1) % checkpoint_every == 0 or step + 1 == fit.steps
            ):
                save(step + 1)
            bar.advance(f"training ({fit.gradient}) loss {value.item():.4f}")
    return curve


def default_device() -> torch.device:
    """A GPU when there is one (larger budgets), else the CPU. Batches are always drawn on
    the CPU, so a seed gives the same data on every device."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def held_out_batches(batch: Callable[[torch.Generator], Batch], seed: int, n: int) -> list[Batch]:
    """Evaluation batches from a stream no training run sees (training streams are seeded
    with small integers)."""
    generator = torch.Generator().manual_seed(10**9 + seed)
    return [batch(generator) for _ in range(n)]


def run_checkpoint(out: Path, resume: bool) -> Path:
    """Where a CLI run in ``out`` checkpoints; refuses to overwrite a run, or to resume
    one that is not there, in one line."""
    checkpoint = Path(out) / "checkpoint.pt"
    if resume and not checkpoint.exists():
        raise MyopiaError(f"nothing to resume: {checkpoint} does not exist; train without --resume")
    if not resume and checkpoint.exists():
        raise MyopiaError(
            f"{out} already holds a run: pass --resume to continue it, or choose another --out"
        )
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    return checkpoint


def write_run_record(
    out: Path, curve: list[tuple[int, float]], eval_loss: float, record: dict, title: str
) -> None:
    """``log.json`` (the record, the training curve, the held-out loss at the end) and the
    loss curve plot of one CLI run."""
    from myopia.io import atomic_write_json
    from myopia.plots import plot_loss_curve

    log = [{"step": step, "train_loss": value} for step, value in curve]
    log[-1]["eval_loss"] = eval_loss
    atomic_write_json(Path(out) / "log.json", {**record, "eval_loss": eval_loss, "log": log})
    plot_loss_curve(log, Path(out) / "loss_curve.png", title, ylabel="Huber loss")
