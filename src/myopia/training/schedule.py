"""Learning-rate schedules, as factors of the peak rate for ``LambdaLR``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


def lr_factor(
    warmup_steps: int, total_steps: int, schedule: str = "cosine", floor: float = 0.1
) -> Callable[[int], float]:
    """Linear warm-up to 1, then ``constant`` or ``cosine`` decay to ``floor`` at the end."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def adamw_with_schedule(
    parameters: Iterable[torch.nn.Parameter],
    lr: float,
    warmup_steps: int,
    total_steps: int,
    schedule: str = "cosine",
    floor: float = 0.1,
    weight_decay: float = 0.0,
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """The optimizer every trainer of this project uses, with its ``lr_factor`` schedule
    (stepped once per optimizer step)."""
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor(warmup_steps, total_steps, schedule, floor)
    )
    return optimizer, scheduler
