"""The effort-allocation task of C3: a current target that needs capacity, and a later
target that needs work done at an earlier position.

Each position n gets k inputs x_n = (x_n1, ..., x_nk) ~ N(0, I) and has two read-outs:

- current part: c_n = (1/sqrt(k)) * sum_j sin(a x_nj), a function of the current inputs
  only. Each sine costs MLP units, so k sets how much capacity the current part wants.
- later part:   l_n = sum_{i=1..L} g(x_{n-i,1}),  g(x) = cos(b x) - E[cos(b x)],
  with g = 0 before the start (centred, so that a missing term is what it averages to).

g(x_s1) is a nonlinear function of one earlier input. One attention head mixes linear
read-outs of the past, and a sum of L >= 2 cosines of different inputs is not a function
of one mixture of them, so g(x_s1) has to be computed at position s, in a block before the
attention that gathers it: pre-caching. g(x_s1) never helps position s itself (l_s sums
earlier inputs only), so under the myopic gradient position s has no reason to compute it
and spends its MLP on the current part alone; under the normal gradient it must share.

g reads the first current input on purpose: the features of x_1 that the current part
makes give the later part's gradient a foothold from the first steps. With a separate
input for g, the normal model sat on a plateau for ~1000 steps before it found the lags.

The control task (``shuffled_later=True``) keeps every input and the later target's
distribution but gives each sequence the later target of another sequence of its batch:
the later part is then unpredictable from the sequence's own inputs, nothing is worth
pre-computing, and any normal − myopic difference left at the current position comes from
the two gradient modes themselves, not from capacity spent on the future.

The measurement (C3), per model width, held-out loss of each part under normal and
myopic training, paired by seed, is ``myopia.training.effort_allocation``.

>>> task = EffortTask(d_model=6)                                           # doctest: +SKIP
>>> run = train_effort(task, ContinuousFit(steps=800, gradient="kv", seed=0))  # doctest: +SKIP
>>> run.current_loss, run.later_loss, run.total_loss                       # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from myopia.attention import myopic
from myopia.errors import MyopiaError
from myopia.training.continuous import (
    ContinuousFit,
    ContinuousModel,
    fit_continuous,
    held_out_batches,
)
from myopia.training.fit import claim_run_folder, training_device, write_run_record

PARTS = ("current", "later")  # the model's output 0 and output 1
MYOPIC_GRADIENTS = ("kv", "residual")


@dataclass
class EffortTask:
    """The data (inputs, frequencies, lags, length) and the model size of the effort task."""

    current_inputs: int = 3  # k: the current part sums a sine of each; more need more units
    current_frequency: float = 2.0  # a in sin(a x); higher is harder (and slower to learn)
    later_frequency: float = 2.0  # b in g(x) = cos(b x) - exp(-b^2 / 2), the pre-cached part
    lags: int = 2  # L: earlier positions the later part sums; >= 2 rules out post-computation
    seq_len: int = 8  # short sequences: the lags are found sooner (less diluted attention)
    d_model: int = 6  # residual width; the MLP is 4 * d_model wide, so this sets capacity
    n_layers: int = 2  # g(x_s) must be computed in a block before the one that reads it
    n_heads: int = 1  # one head: one linear mixture of the past per block
    # The control task: each sequence's later target is the next sequence's (a roll along the
    # batch), independent of its own inputs, so nothing is worth pre-computing.
    shuffled_later: bool = False

    def __post_init__(self):
        if self.current_inputs < 1:
            raise MyopiaError(f"current_inputs must be at least 1, got {self.current_inputs}")
        if not 1 <= self.lags < self.seq_len:
            raise MyopiaError(
                f"lags must be in [1, seq_len) = [1, {self.seq_len}), got {self.lags}"
            )
        if self.current_frequency <= 0 or self.later_frequency <= 0:
            raise MyopiaError(
                "current_frequency and later_frequency must be positive, got "
                f"{self.current_frequency} and {self.later_frequency}"
            )
        if self.n_layers < 1 or self.n_heads < 1:
            raise MyopiaError(
                f"n_layers and n_heads must be at least 1, got {self.n_layers} and {self.n_heads}"
            )
        if self.d_model < 1 or self.d_model % self.n_heads:
            raise MyopiaError(
                f"d_model must be a positive multiple of n_heads = {self.n_heads}, "
                f"got {self.d_model}"
            )

    def later_offset(self) -> float:
        """E[cos(b x)] for x ~ N(0, 1), which g subtracts: exp(-b^2 / 2)."""
        return math.exp(-(self.later_frequency**2) / 2)

    def batch(self, generator: torch.Generator, batch_size: int):
        """Inputs (B, T, k) and targets (B, T, 2) = (current, later). The control task draws
        the same inputs from the same generator and only moves the later targets."""
        if self.shuffled_later and batch_size < 2:
            raise MyopiaError(
                "the control task (shuffled later targets) needs batches of 2 or more"
            )
        k = self.current_inputs
        inputs = torch.randn((batch_size, self.seq_len, k), generator=generator)  # (B, T, k)
        sines = torch.sin(self.current_frequency * inputs)  # (B, T, k)
        current = sines.sum(-1) / math.sqrt(k)  # (B, T), variance ~1/2 whatever k is
        cached = torch.cos(self.later_frequency * inputs[..., 0]) - self.later_offset()  # (B, T)
        padded = F.pad(cached, (self.lags, 0))  # (B, L + T): g = 0 before the start
        # later[:, n] = sum_{i=1..L} g(x_{n-i,1}) = sum_i padded[:, L + n - i]
        later = sum(
            padded[:, self.lags - i : self.lags - i + self.seq_len] for i in range(1, self.lags + 1)
        )  # (B, T)
        if self.shuffled_later:
            later = later.roll(1, dims=0)  # sequence b gets sequence b - 1's later target
        return inputs, torch.stack([current, later], dim=-1)

    def model(self) -> ContinuousModel:
        return ContinuousModel(
            self.d_model,
            self.n_layers,
            self.n_heads,
            self.seq_len,
            n_inputs=self.current_inputs,
            n_outputs=len(PARTS),
        )


def part_losses(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Huber loss of each part, averaged over batch and positions: (B, T, 2) -> (2,)."""
    return F.huber_loss(predictions, targets, reduction="none").mean(dim=(0, 1))


@dataclass
class EffortRun:
    """One trained model's held-out loss per part. ``total_loss`` = current + later, which
    is twice what the trainer minimises (its Huber loss averages over both parts)."""

    task: dict
    fit: dict
    current_loss: float
    later_loss: float
    zero_current_loss: float  # loss of predicting 0, each part's mean: "learned nothing"
    zero_later_loss: float
    curve: list[tuple[int, float]]  # (step, training loss)
    seconds: float
    device: str = "cpu"  # where the model was trained
    model: ContinuousModel | None = None

    @property
    def total_loss(self) -> float:
        return self.current_loss + self.later_loss

    def to_dict(self) -> dict:
        fields = {k: v for k, v in asdict(self).items() if k not in ("model", "curve")}
        return {**fields, "total_loss": self.total_loss, "final_train_loss": self.curve[-1][1]}


def train_effort(
    task: EffortTask,
    fit: ContinuousFit,
    keep_model: bool = False,
    checkpoint: Path | None = None,
    show_progress: bool = False,
    checkpoint_every: int = 200,
) -> EffortRun:
    """Train one model with ``fit.gradient`` and measure its held-out loss per part.

    Initial weights, training stream and held-out stream depend on ``fit.seed`` only, so
    a normal and a myopic run with one seed start alike, see the same data and are
    scored on the same sequences: a matched pair. Data are drawn on the CPU whatever
    device trains the model (``training_device()``). With ``checkpoint`` the run
    checkpoints there and resumes (see ``fit_continuous``).
    """
    start = time.perf_counter()
    torch.manual_seed(fit.seed)
    device = training_device()
    model = task.model().to(device)

    def batch(generator: torch.Generator):
        return task.batch(generator, fit.batch_size)

    curve = fit_continuous(
        model,
        batch,
        fit,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        show_progress=show_progress,
        task_settings=asdict(task),
        device=device,
    )
    held_out = held_out_batches(batch, fit.seed, fit.eval_batches)
    with torch.no_grad():
        losses = torch.stack(
            [part_losses(model(i.to(device)), t.to(device)).cpu() for i, t in held_out]
        ).mean(0)  # (2,)
        zero = torch.stack([part_losses(torch.zeros_like(t), t) for _, t in held_out]).mean(0)
    return EffortRun(
        task=asdict(task),
        fit=asdict(fit),
        current_loss=losses[0].item(),
        later_loss=losses[1].item(),
        zero_current_loss=zero[0].item(),
        zero_later_loss=zero[1].item(),
        curve=curve,
        seconds=time.perf_counter() - start,
        device=str(device),
        model=model if keep_model else None,
    )


def incentive_at(
    model: ContinuousModel,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    position: int,
    gradient: str = "normal",
) -> tuple[float, float]:
    """Norms of the gradient that (own, later) losses send to the first block's MLP output
    at ``position``: "own" is the loss of both parts at ``position``, "later" the loss at
    every position after it.

    This is the incentive the task turns on: under a myopic gradient "later" is exactly 0
    (nothing computed at ``position`` is trained for later positions), under the normal
    gradient it is not. Inputs (B, T, k), targets (B, T, 2).
    """
    if gradient not in ("normal", *MYOPIC_GRADIENTS):
        raise MyopiaError(f"gradient must be normal, kv or residual, not {gradient!r}")
    batch_size, seq_len, _ = inputs.shape
    d_model = model.embed.out_features
    # A zero added to the MLP's output leaves the forward pass as it is; its gradient is
    # the gradient with respect to that output.
    probe = torch.zeros(batch_size, seq_len, d_model, requires_grad=True)  # (B, T, d)

    def add_probe(module, args, output):
        return output + probe

    norms = []
    hook = model.backbone.h[0].mlp.register_forward_hook(add_probe)
    try:
        mode = None if gradient == "normal" else gradient
        with myopic(model.backbone, mode) if mode else nullcontext():
            for span in (slice(position, position + 1), slice(position + 1, None)):
                predictions = model(inputs)  # (B, T, 2)
                loss = F.huber_loss(predictions[:, span], targets[:, span], reduction="sum")
                (grad,) = torch.autograd.grad(loss, probe)  # (B, T, d)
                norms.append(grad[:, position].norm().item())
    finally:
        hook.remove()
    return norms[0], norms[1]


def train_effort_into(
    task: EffortTask,
    fit: ContinuousFit,
    out: Path,
    resume: bool,
    show_progress: bool = True,
    checkpoint_every: int = 200,
) -> EffortRun:
    """``myopia train effort``: one run with its checkpoint, ``log.json`` and loss
    curve in ``out``; ``resume`` continues the run found there."""
    checkpoint = claim_run_folder(out, resume)
    run = train_effort(
        task,
        fit,
        checkpoint=checkpoint,
        show_progress=show_progress,
        checkpoint_every=checkpoint_every,
    )
    write_run_record(
        out,
        run.curve,
        {
            "task": run.task,
            "fit": run.fit,
            "current_loss": run.current_loss,
            "later_loss": run.later_loss,
            "device": run.device,
        },
        f"effort-allocation task, d = {task.d_model}, gradient: {fit.gradient}",
        "Huber loss",
        eval_loss=run.total_loss,
    )
    return run
