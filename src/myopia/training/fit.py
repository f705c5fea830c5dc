"""The one training loop: every trainer of this project (text, pre-caching, effort, choice,
induction) is a model, a loss and a schedule handed to :func:`fit`.

A task supplies ``loss(step) -> scalar tensor``: it draws step ``step``'s batch (on the
CPU, from its own seeded generator or from the step number, so that a seed gives the same
data on every device), moves it to the model's device and computes its loss. A different
training objective (on-policy REINFORCE for the choice task) is just another loss
function. :func:`fit` owns everything else, in one place for all of them: the optimizer
step, the learning-rate schedule, the myopic gradient mode, checkpoints that resume to the
same weights, the evaluation hook, the device and the progress bar.

The order of work in a step is fixed, and every task's random numbers are drawn inside
its ``loss`` (and its ``evaluate`` hook), so a task consumes random numbers in the same
order whatever else the loop does:

    loss(step) → zero_grad → backward → (stop if the loss is not finite) → optimizer.step
    → scheduler.step → evaluate(entry) → checkpoint → progress

>>> optimisation = Optimisation(steps=100, lr=1e-3, warmup_steps=10)
>>> log = fit(model, lambda step: model_loss(batches(step)), optimisation,  # doctest: +SKIP
...           device=training_device())
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from myopia.attention import myopic
from myopia.errors import MyopiaError
from myopia.progress import Bar
from myopia.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from myopia.training.parallel import all_finite, full_state, is_sharded, load_full_state
from myopia.training.schedule import adamw_with_schedule

CHECKPOINT = "checkpoint.pt"
# CPU threads for the report's small synthetic models (d_model <= 128): their tensors are
# too small to share between threads, and bench/small_model_threads.py measures a second
# thread making each step slower, not faster.
SMALL_MODEL_THREADS = 1


def training_device(rank: int | None = None) -> torch.device:
    """The device rule of every trainer: a GPU when there is one (under torchrun, the
    process's own: ``LOCAL_RANK``), else the CPU. Batches are drawn on the CPU whatever
    the device, so a seed gives the same data everywhere; the weights reached differ
    between devices only by their kernels' rounding."""
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank or 0)) % torch.cuda.device_count()
        return torch.device("cuda", local)
    return torch.device("cpu")


@dataclass(frozen=True)
class Optimisation:
    """AdamW with linear warm-up, then cosine decay to ``floor`` × lr (or constant)."""

    steps: int
    lr: float
    warmup_steps: int
    schedule: str = "cosine"
    floor: float = 0.1
    weight_decay: float = 0.0

    def __post_init__(self):
        # Named as the training commands' options, which fill these fields one to one.
        if self.steps < 1:
            raise MyopiaError(f"--steps {self.steps}: train for at least 1 step")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise MyopiaError(f"--lr {self.lr}: the learning rate must be a positive number")
        # A warmup longer than the run is allowed (a short smoke run never reaches the
        # peak rate); a negative one is not.
        if self.warmup_steps < 0:
            raise MyopiaError(f"--warmup-steps {self.warmup_steps}: must be 0 or more")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise MyopiaError(f"--weight-decay {self.weight_decay}: must be 0 or more")


class TrainingDiverged(MyopiaError):
    """The loss or the weights stopped being finite numbers: the run stops, keeping the
    last checkpoint whose weights were finite."""


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often a run saves itself, and what its weights depend on.

    An existing checkpoint at ``path`` is continued; one whose ``settings`` differ is
    refused, naming the settings that differ."""

    path: Path
    every: int
    settings: dict


@contextmanager
def cpu_threads(threads: int | None, device: torch.device):
    """Inside, torch's CPU ops use ``threads`` threads when ``device`` is the CPU (None:
    leave torch's setting); restored on leaving."""
    if threads is None or device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def claim_run_folder(out: Path, resume: bool) -> Path:
    """The checkpoint path of a command-line run in ``out``: refuses, in one line, to
    overwrite a run that is there, or to resume one that is not."""
    checkpoint = Path(out) / CHECKPOINT
    if resume and not checkpoint.exists():
        raise MyopiaError(f"nothing to resume: {checkpoint} does not exist; train without --resume")
    if not resume and checkpoint.exists():
        raise MyopiaError(
            f"{out} already holds a run: pass --resume to continue it, or choose another --out"
        )
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    return checkpoint


@contextmanager
def _only_writer(checkpoint: Path):
    """Hold an exclusive lock on ``checkpoint`` for the run: a second run writing the same
    checkpoint is refused in one line instead of both reporting success while one
    overwrites the other. Runs with other checkpoints in one folder (a gap's seeds and
    modes, trained side by side) do not wait for each other. The lock is the kernel's
    (``flock``), so it goes with the process however it ends: a killed run never leaves a
    stale lock behind."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield
        return
    checkpoint = Path(checkpoint)
    lock_path = checkpoint.with_name(f".{checkpoint.name}.lock")
    # A run's folder may not exist yet (the gap commands' runs/p<p>/ folders).
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MyopiaError(
                f"another training run is writing into {checkpoint}: wait for it to "
                "finish, or choose another --out"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    names = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            names += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            names.append(f"{prefix}{key}")
    return names


def _distributed() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def fit(
    model: nn.Module,
    loss: Callable[[int], torch.Tensor],
    optimisation: Optimisation,
    *,
    device: torch.device,
    gradient: str = "normal",
    attention: nn.Module | None = None,
    generators: Sequence[torch.Generator] = (),
    checkpoint: Checkpointing | None = None,
    evaluate: Callable[[dict], None] | None = None,
    progress: bool | Bar = False,
    label: str = "training",
) -> list[dict]:
    """Train ``model`` in place for ``optimisation.steps`` steps of ``loss``; return the log.

    The log holds one entry per step: ``step`` (1-based), ``train_loss``, ``lr`` (the rate
    that step used) and ``seconds``; ``evaluate(entry)``, called after each optimizer step,
    adds what it measures to the entry. Under torchrun (a process group initialised by the
    caller, ``loss`` computed through a DistributedDataParallel wrapper or ``model``
    sharded with FSDP2; see ``myopia.training.parallel``), the logged loss is the mean
    over processes and only rank 0 writes checkpoints, which hold the full weights.

    ``gradient``: ``normal``, or a myopic mode (``kv``, ``residual``, ``bigram``) switched
    on ``attention`` (the Hugging Face model inside ``model``; default ``model`` itself)
    for the whole run. ``generators``: the task's random streams, saved in the checkpoint.
    With ``checkpoint``, the model, optimizer, schedule, random states, step and log are
    written atomically every ``checkpoint.every`` steps and at the end, and an existing
    checkpoint is continued to the same final weights as an uninterrupted run.
    ``progress``: True for a bar of this run, or a caller's bar (several runs) to advance.
    """
    model.to(device)
    rank, world = _distributed()
    optimizer, scheduler = adamw_with_schedule(
        model.parameters(),
        optimisation.lr,
        optimisation.warmup_steps,
        optimisation.steps,
        optimisation.schedule,
        optimisation.floor,
        optimisation.weight_decay,
    )
    start, log = 0, []
    if checkpoint is not None and Path(checkpoint.path).exists():
        state = load_checkpoint(Path(checkpoint.path))
        changed = _differences(state["settings"], checkpoint.settings)
        if changed:
            raise MyopiaError(
                f"cannot continue {checkpoint.path}: it holds a run with other settings "
                f"({', '.join(changed)} differ); choose another output folder or delete it"
            )
        load_full_state(model, optimizer, state["model"], state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        for generator, saved in zip(generators, state["generators"], strict=True):
            generator.set_state(saved)
        start, log = state["step"], state["log"]

    def diverged(step: int, what: str) -> TrainingDiverged:
        kept = (
            f"the checkpoint {checkpoint.path} keeps the last finite weights"
            if checkpoint is not None and Path(checkpoint.path).exists()
            else "nothing was saved"
        )
        return TrainingDiverged(
            f"{label} diverged at step {step} ({what}): lower --lr or raise --warmup-steps; {kept}"
        )

    def save(step: int) -> None:
        if not all_finite(model):  # FSDP: every process checks its shards, together
            raise diverged(step, "the weights are no longer finite")
        weights, optimizer_state = full_state(model, optimizer)  # FSDP: every process gathers
        if rank != 0:
            return
        state = {
            "step": step,
            "settings": checkpoint.settings,
            "model": weights,
            "optimizer": optimizer_state,
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
            "generators": [generator.get_state() for generator in generators],
            "log": log,
        }
        save_checkpoint(Path(checkpoint.path), state)

    sharded = is_sharded(model)  # FSDP2: gathering the state is a collective
    mode = None if gradient == "normal" else gradient
    own_bar = not isinstance(progress, Bar)
    bar = Bar(optimisation.steps, label, start, enabled=progress) if own_bar else progress
    writer = checkpoint is not None and rank == 0
    with (
        _only_writer(checkpoint.path) if writer else nullcontext(),
        myopic(attention or model, mode) if mode else nullcontext(),
        bar if own_bar else nullcontext(),
    ):
        for step in range(start, optimisation.steps):
            began = time.perf_counter()
            value = loss(step)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            if world > 1:  # log the global batch's loss, not this process's share
                value = value.detach().clone()
                dist.all_reduce(value)
                value /= world
            train_loss = value.item()  # the same on every process, so all stop together
            if not math.isfinite(train_loss):
                raise diverged(step + 1, f"loss {train_loss}")
            optimizer.step()
            entry = {
                "step": step + 1,
                "train_loss": train_loss,
                "lr": scheduler.get_last_lr()[0],
                "seconds": time.perf_counter() - began,
            }
            scheduler.step()
            if evaluate is not None:
                evaluate(entry)
            log.append(entry)
            last = step + 1 == optimisation.steps
            if (
                checkpoint is not None
                and (rank == 0 or sharded)
                and ((step + 1) % checkpoint.every == 0 or last)
            ):
                save(step + 1)
            bar.advance(f"{label} ({gradient}) loss {entry['train_loss']:.4f}")
    return log


def write_run_record(
    out: Path,
    curve: list[tuple[int, float]],
    record: dict,
    title: str,
    ylabel: str = "training loss",
    eval_loss: float | None = None,
) -> list[Path]:
    """``log.json`` (the record, the training curve, the held-out loss at the end) and the
    loss curve plot (with its JSON) of one command-line run."""
    from myopia.io import atomic_write_json
    from myopia.plots import plot_loss_curve

    log = [{"step": step, "train_loss": value} for step, value in curve]
    if eval_loss is not None:
        log[-1]["eval_loss"] = eval_loss
        record = {**record, "eval_loss": eval_loss}
    path = plot_loss_curve(log, Path(out) / "loss_curve.png", title, ylabel=ylabel)
    return [atomic_write_json(Path(out) / "log.json", {**record, "log": log}), path]
