"""A small attention-only model trained where induction heads form: C4's small model.

Every training sequence ends in a segment of random tokens repeated once, of a length that
varies between sequences (a fixed length could be copied by a head that looks a fixed
distance back). The first copy is unpredictable, the second is predictable only by
induction: find the earlier occurrence of the current token and copy the token after it.
A 2-layer attention-only model solves this with the classic circuit, a previous-token
head in layer 0 that writes "the token before me" into each position, read by an
induction head in layer 1. The previous-token
head cannot help the prediction at its own position (the next token of the first copy is
random), so whatever it is trained for, it is trained for later positions.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from myopia.errors import MyopiaError
from myopia.gradients.loss import forward_logits, mean_token_loss, token_losses
from myopia.models.fresh import FreshModelConfig, build_fresh_model
from myopia.training.fit import (
    SMALL_MODEL_THREADS,
    Optimisation,
    cpu_threads,
    fit,
    training_device,
    write_run_record,
)

FIRST_TOKEN = 3  # ids 0-2 are the fresh models' special tokens


@dataclass
class InductionTask:
    n_tokens: int = 32  # distinct tokens the random segments are drawn from
    half_len: int = 24  # sequences are 2 * half_len long; segments half_len // 2 to half_len
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    # Induction forms late: on this CPU, at 2000 steps (~1 min) it is just emerging
    # (second-copy loss 1.3 against 3.5 for the first copy).
    steps: int = 2000
    batch_size: int = 32
    lr: float = 5e-3
    warmup_steps: int = 20

    def __post_init__(self):
        for name in ("n_tokens", "half_len", "steps", "batch_size"):
            if getattr(self, name) < 2:
                raise MyopiaError(f"{name} must be at least 2, got {getattr(self, name)}")

    def model_config(self, seed: int) -> FreshModelConfig:
        return FreshModelConfig(
            architecture="llama",
            d_model=self.d_model,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            n_kv_heads=self.n_heads,
            vocab_size=FIRST_TOKEN + self.n_tokens,
            max_positions=2 * self.half_len,
            attention_only=True,
            seed=seed,
        )


def repeated_segments(
    n_tokens: int,
    half_len: int,
    batch_size: int,
    generator: torch.Generator,
    min_len: int | None = None,
) -> torch.Tensor:
    """(B, 2 * half_len) random token ids whose last 2m tokens are a segment of length m
    and the same segment again. m = half_len unless ``min_len`` is given; then m is drawn
    per row from [min_len, half_len], so that the copy's offset varies and only induction
    (matching content), not a head at a fixed relative position, can find it."""
    rows = torch.randint(n_tokens, (batch_size, 2 * half_len), generator=generator) + FIRST_TOKEN
    lengths = torch.full((batch_size,), half_len)
    if min_len is not None:
        lengths = torch.randint(min_len, half_len + 1, (batch_size,), generator=generator)
    for row, m in zip(rows, lengths.tolist(), strict=True):
        row[-m:] = row[-2 * m : -m]
    return rows


@dataclass
class InductionRun:
    task: dict
    seed: int
    first_copy_loss: float  # held-out next-token loss over targets in the first copy
    second_copy_loss: float  # ... over targets in the second copy (induction's job)
    curve: list[tuple[int, float]]
    seconds: float
    device: str = "cpu"  # where the model was trained
    model: torch.nn.Module | None = None


@torch.no_grad()
def copy_losses(model: torch.nn.Module, input_ids: torch.Tensor) -> tuple[float, float]:
    """Mean next-token loss over targets in the first copy (positions 1..n−1) and in the
    second (n+1..2n−1). The first target of the second copy is left out: it follows the
    segment's end and is predictable by nothing."""
    half = input_ids.shape[1] // 2
    losses = token_losses(forward_logits(model, {"input_ids": input_ids}), input_ids)  # (B, T-1)
    # losses[:, j] is the loss of predicting token j + 1
    return losses[:, : half - 1].mean().item(), losses[:, half:].mean().item()


def train_induction_model(
    task: InductionTask, seed: int = 0, show_progress: bool = False
) -> InductionRun:
    """Train a fresh attention-only model on repeated random segments."""
    start = time.perf_counter()
    model = build_fresh_model(task.model_config(seed)).train()
    device = training_device()
    data = torch.Generator().manual_seed(seed)  # batches drawn on the CPU

    def loss(step: int) -> torch.Tensor:
        ids = repeated_segments(
            task.n_tokens, task.half_len, task.batch_size, data, task.half_len // 2
        )
        return mean_token_loss(model, {"input_ids": ids.to(device)})

    with cpu_threads(SMALL_MODEL_THREADS, device):
        log = fit(
            model,
            loss,
            Optimisation(task.steps, task.lr, task.warmup_steps, floor=0.05),
            device=device,
            progress=show_progress,
            label="induction model",
        )
    curve = [
        (e["step"], e["train_loss"])
        for e in log
        if (e["step"] - 1) % 25 == 0 or e["step"] == task.steps
    ]
    model.eval()
    held_out = repeated_segments(
        task.n_tokens, task.half_len, 64, torch.Generator().manual_seed(10**9 + seed)
    )
    first, second = copy_losses(model, held_out.to(device))
    return InductionRun(
        task=asdict(task),
        seed=seed,
        first_copy_loss=first,
        second_copy_loss=second,
        curve=curve,
        seconds=time.perf_counter() - start,
        device=str(device),
        model=model,
    )


def train_induction_into(
    task: InductionTask, seed: int, out: Path, show_progress: bool = True
) -> InductionRun:
    """``myopia train induction``: one run; ``log.json`` (the held-out loss of each copy and
    the training curve) and the loss curve in ``out``."""
    run = train_induction_model(task, seed, show_progress)
    record = {
        "task": run.task,
        "seed": seed,
        "first_copy_loss": run.first_copy_loss,
        "second_copy_loss": run.second_copy_loss,
        "device": run.device,
    }
    write_run_record(Path(out), run.curve, record, f"induction task, seed {seed}")
    return run
