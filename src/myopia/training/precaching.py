"""The pre-caching task of Wu, Morris and Levine (2024), C1(a)'s positive control.

Inputs (x_n, z_n), x_n ~ N(0, 1), z_n ~ Bernoulli(p); target
y_n = z_n * sum_{i=1..lags} sin(f x_{n-i}) + (1 - z_n) * x_n, with x = 0 before the start.
Their task has f = 10 and lags = 10. Predicting y_n needs sin(f x_s) computed at earlier
positions s for later use: attention can only mix linear read-outs of the past, and a sum
of sines of ten different inputs is not a function of any mixture of them. That
computation is exactly what the myopic gradient does not reward, since sin(f x_s) never
helps position s itself.

``lags=0`` is the control: y_n = z_n sin(f x_n) + (1 - z_n) x_n, where nothing computed
at earlier positions helps, so normal and myopic training should end level.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from myopia.errors import MyopiaError
from myopia.probes import ridge_r2
from myopia.training.continuous import (
    ContinuousFit,
    ContinuousModel,
    fit_continuous,
    held_out_batches,
)
from myopia.training.fit import claim_run_folder, training_device, write_run_record


@dataclass
class PrecachingTask:
    p: float = 1.0  # probability that a position's target is the sum over earlier inputs
    lags: int = 10  # earlier inputs summed; 0: the target depends on the current input only
    frequency: float = 10.0  # f in sin(f x); lower is easier to learn for a small model
    seq_len: int = 64
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 2

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise MyopiaError(f"p must be a probability, got {self.p}")
        if self.lags < 0:
            raise MyopiaError(f"--lags {self.lags}: must be 0 or more")
        if self.lags >= self.seq_len:
            raise MyopiaError(
                f"--lags {self.lags} reaches past the sequence (--seq-len {self.seq_len}): "
                "no position would have all its lagged inputs; give fewer lags"
            )
        if not (math.isfinite(self.frequency) and self.frequency > 0):
            raise MyopiaError(f"--frequency {self.frequency}: must be a positive number")

    def batch(self, generator: torch.Generator, batch_size: int):
        """Inputs (B, T, 2) = (x, z) and targets (B, T, 1)."""
        shape = (batch_size, self.seq_len)
        x = torch.randn(shape, generator=generator)
        z = (torch.rand(shape, generator=generator) < self.p).float()
        sines = torch.sin(self.frequency * x)
        if self.lags == 0:
            remembered = sines
        else:
            padded = F.pad(sines, (self.lags, 0))  # zeros before the start
            # sum_{i=1..lags} sin(f x_{n-i}) for every n
            remembered = sum(
                padded[:, self.lags - i : self.lags - i + self.seq_len]
                for i in range(1, self.lags + 1)
            )
        targets = z * remembered + (1 - z) * x
        return torch.stack([x, z], dim=-1), targets.unsqueeze(-1)

    def model(self) -> ContinuousModel:
        return ContinuousModel(
            self.d_model, self.n_layers, self.n_heads, self.seq_len, n_inputs=2, n_outputs=1
        )


@dataclass
class PrecachingRun:
    task: dict
    fit: dict
    eval_loss: float  # Huber loss on held-out batches, with the ordinary forward pass
    trivial_loss: float  # the same loss for the best constant-free guess: predicting x_n
    curve: list[tuple[int, float]]  # (step, training loss)
    device: str = "cpu"  # where the model was trained
    eval_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, held-out loss)
    model: ContinuousModel | None = None

    # A run crosses processes (myopia.jobs) with its model as weights: transformers
    # installs the hooks that record hidden states on first use, and a pickled model
    # keeps the flag that says so but not the hooks.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.model is not None:
            state["model"] = self.model.state_dict()
        return state

    def __setstate__(self, state: dict) -> None:
        if state["model"] is not None:
            with torch.random.fork_rng(devices=[]):  # building draws initial weights
                model = PrecachingTask(**state["task"]).model()
            model.load_state_dict(state["model"])
            state["model"] = model.to(state["device"])
        self.__dict__.update(state)


def train_precaching(
    task: PrecachingTask,
    fit: ContinuousFit,
    keep_model: bool = False,
    checkpoint: Path | None = None,
    show_progress: bool = False,
    checkpoint_every: int = 200,
    eval_every: int | None = None,
) -> PrecachingRun:
    """Train one model on the task with ``fit.gradient``; return its held-out loss.
    With ``checkpoint`` the run checkpoints there and resumes (see ``fit_continuous``).
    With ``eval_every``, the held-out loss is also taken every ``eval_every`` steps (the
    gap against training steps); a resumed run keeps only the points it passed itself."""
    torch.manual_seed(fit.seed)
    device = training_device()
    model = task.model().to(device)
    held_out = held_out_batches(lambda g: task.batch(g, fit.batch_size), fit.seed, fit.eval_batches)
    eval_curve: list[tuple[int, float]] = []

    def evaluate(entry: dict) -> None:
        if eval_every and entry["step"] % eval_every == 0 and entry["step"] < fit.steps:
            eval_curve.append((entry["step"], held_out_loss(model, held_out, device)))

    curve = fit_continuous(
        model,
        lambda g: task.batch(g, fit.batch_size),
        fit,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        show_progress=show_progress,
        task_settings=asdict(task),
        device=device,
        evaluate=evaluate if eval_every else None,
    )
    eval_loss = held_out_loss(model, held_out, device)
    if eval_every:
        eval_curve.append((fit.steps, eval_loss))
    with torch.no_grad():
        trivial = [F.huber_loss(i[..., :1] * (1 - i[..., 1:]), t).item() for i, t in held_out]
    return PrecachingRun(
        task=asdict(task),
        fit=asdict(fit),
        eval_loss=eval_loss,
        trivial_loss=sum(trivial) / len(trivial),
        curve=curve,
        device=str(device),
        eval_curve=eval_curve,
        model=model if keep_model else None,
    )


@torch.no_grad()
def held_out_loss(model: ContinuousModel, held_out: list, device: torch.device) -> float:
    """Mean Huber loss over the held-out batches, with the ordinary forward pass (the
    myopic modes change only the backward pass, so this is the loss of either)."""
    losses = [F.huber_loss(model(i.to(device)), t.to(device)).item() for i, t in held_out]
    return sum(losses) / len(losses)


@torch.no_grad()
def lagged_sine_r2(
    model: ContinuousModel,
    task: PrecachingTask,
    max_lag: int = 20,
    n_sequences: int = 256,
    seed: int = 0,
) -> np.ndarray:
    """The probe of Wu, Morris and Levine: held-out R² of a ridge regression from the
    hidden state at position n, after each layer, to sin(f x_{n−i}) for i = 0..max_lag.

    Returns (n_layers + 1, max_lag + 1): row 0 is the embedding, row l the output of
    block l. Only positions n ≥ max_lag are used, so every lag has a real input.
    A pre-caching model holds sin(f x_n) at n (i = 0) although no target at n needs it.
    """
    if max_lag >= task.seq_len:
        raise MyopiaError(f"max_lag must be below seq_len {task.seq_len}, got {max_lag}")
    inputs, _ = task.batch(torch.Generator().manual_seed(2 * 10**9 + seed), n_sequences)
    sines = torch.sin(task.frequency * inputs[..., 0])  # (B, T)
    positions = torch.arange(max_lag, task.seq_len)
    lagged = torch.stack([sines[:, positions - i] for i in range(max_lag + 1)], dim=-1)
    targets = lagged.reshape(-1, max_lag + 1).numpy()  # (B * len(positions), max_lag + 1)
    r2 = []
    device = next(model.parameters()).device
    for hidden in model.hidden_states(inputs.to(device)):  # (B, T, d) per layer
        features = hidden[:, positions].reshape(-1, hidden.shape[-1]).cpu().numpy()
        r2.append(ridge_r2(features, targets, seed=seed))
    return np.stack(r2)


def train_precaching_into(
    task: PrecachingTask,
    fit: ContinuousFit,
    out: Path,
    resume: bool,
    show_progress: bool = True,
    checkpoint_every: int = 200,
) -> PrecachingRun:
    """``myopia train precaching``: one run with its checkpoint, ``log.json`` and
    loss curve in ``out``; ``resume`` continues the run found there."""
    checkpoint = claim_run_folder(out, resume)
    run = train_precaching(
        task,
        fit,
        checkpoint=checkpoint,
        show_progress=show_progress,
        checkpoint_every=checkpoint_every,
    )
    write_run_record(
        out,
        run.curve,
        {"task": run.task, "fit": run.fit, "trivial_loss": run.trivial_loss, "device": run.device},
        f"pre-caching task, gradient: {fit.gradient}",
        "Huber loss",
        eval_loss=run.eval_loss,
    )
    return run
