"""The myopia gap: loss(myopically trained) − loss(normally trained), same data, steps,
seed and size, paired by seed, with a 95% CI over seeds.

Two settings: the synthetic pre-caching task (:func:`precaching_gap`) and natural text
(:func:`text_gap`, which also gives the held-out loss at each position and accepts the
``bigram`` baseline as a mode). C1(a)'s measurements on top of them are
``precaching_gap.py`` and ``text_gap.py``.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from myopia.attention import myopic
from myopia.data.text import load_corpus, token_windows
from myopia.gradients.loss import forward_logits, token_losses
from myopia.jobs import Pool, run_jobs
from myopia.progress import Bar
from myopia.stats import Interval, mean_ci, paired_difference_ci
from myopia.training.config import TrainConfig
from myopia.training.continuous import ContinuousFit
from myopia.training.loop import CHECKPOINT, TrainResult, train
from myopia.training.precaching import PrecachingRun, PrecachingTask, train_precaching


@dataclass
class GapResult:
    """Held-out losses per mode and seed; ``gap(mode)`` is paired with ``normal``."""

    seeds: list[int]
    losses: dict[str, list[float]]  # mode -> one held-out loss per seed
    by_position: dict[str, list[list[float]]] = field(default_factory=dict)  # mode -> seed -> T
    extra: dict = field(default_factory=dict)
    device: str = "cpu"  # where the models were trained

    def loss(self, mode: str) -> Interval:
        return mean_ci(self.losses[mode])

    def gap(self, mode: str, baseline: str = "normal") -> Interval:
        """loss(mode) − loss(baseline), paired by seed: > 0 means ``mode`` is worse."""
        return paired_difference_ci(self.losses[mode], self.losses[baseline])

    def span_gap(self, mode: str, positions: range, baseline: str = "normal") -> Interval:
        """Gap of the mean loss over ``positions`` (0: the first predicted token)."""

        def mean_over(curve: list[float]) -> float:
            return sum(curve[i] for i in positions) / len(positions)

        return paired_difference_ci(
            [mean_over(c) for c in self.by_position[mode]],
            [mean_over(c) for c in self.by_position[baseline]],
        )

    def to_dict(self) -> dict:
        modes = [m for m in self.losses if m != "normal"]
        return {
            "seeds": self.seeds,
            "losses": self.losses,
            "loss_ci": {m: self.loss(m).to_dict() for m in self.losses},
            "gap_ci": {m: self.gap(m).to_dict() for m in modes} if len(self.seeds) > 1 else {},
            "by_position": self.by_position,
            **self.extra,
        }


def precaching_gap(
    task: PrecachingTask,
    fit: ContinuousFit,
    seeds: list[int],
    modes: tuple[str, ...] = ("normal", "kv"),
    show_progress: bool = True,
    keep_models: bool = False,
    runs_dir: Path | None = None,
    eval_every: int | None = None,
    workers: int | Pool = 1,
) -> tuple[GapResult, dict[tuple[str, int], PrecachingRun]]:
    """Train one model per (mode, seed) on the pre-caching task; return the held-out
    Huber losses, and the runs themselves (with their models if ``keep_models``).
    With ``runs_dir``, each run checkpoints in ``runs_dir/<mode>-seed<k>`` and a
    repeated call continues (or reuses) the runs found there. With ``eval_every``, the
    held-out loss along training goes in ``extra["eval_curves"]`` (mode -> seed -> loss at
    each step of ``extra["eval_steps"]``). The runs go to ``workers`` processes
    (:func:`myopia.jobs.run_jobs`)."""
    keys = [(mode, seed) for seed in seeds for mode in modes]
    jobs = [
        partial(
            train_precaching,
            task,
            replace(fit, gradient=mode, seed=seed),
            keep_models,
            None if runs_dir is None else Path(runs_dir) / f"{mode}-seed{seed}.pt",
            eval_every=eval_every,
        )
        for mode, seed in keys
    ]
    label = f"pre-caching p={task.p:g} lags={task.lags}"
    with Bar(len(jobs), label, enabled=show_progress) as bar:
        done = run_jobs(jobs, workers, lambda i, run: bar.advance(label))
    runs = dict(zip(keys, done, strict=True))
    losses = {mode: [runs[mode, s].eval_loss for s in seeds] for mode in modes}
    trivial = float(np.mean([runs[modes[0], s].trivial_loss for s in seeds]))
    device = runs[modes[0], seeds[0]].device
    extra: dict = {"trivial_loss": trivial}
    steps_seen = {tuple(step for step, _ in run.eval_curve) for run in runs.values()}
    if eval_every and len(steps_seen) == 1:  # runs reused from a checkpoint lack the points
        extra["eval_steps"] = list(steps_seen.pop())
        extra["eval_curves"] = {
            m: [[loss for _, loss in runs[m, s].eval_curve] for s in seeds] for m in modes
        }
    result = GapResult(list(seeds), losses, extra=extra, device=device)
    return result, runs


@torch.no_grad()
def loss_by_position(model: torch.nn.Module, windows: torch.Tensor, batch_size: int) -> np.ndarray:
    """Mean next-token loss at each target position 1..T−1 over ``windows`` (N, T)."""
    model.eval()
    total = torch.zeros(windows.shape[1] - 1, dtype=torch.float64)
    device = next(model.parameters()).device
    for i in range(0, len(windows), batch_size):
        ids = windows[i : i + batch_size].to(device)
        losses = token_losses(forward_logits(model, {"input_ids": ids}), ids)  # (B, T-1)
        total += losses.sum(0).double().cpu()
    return (total / len(windows)).numpy()


def sample_eval_windows(
    text: Path | None, tokenizer, seq_len: int, n_windows: int, seed: int
) -> torch.Tensor:
    """``n_windows`` held-out windows drawn across all documents (not just the first)."""
    windows = token_windows(load_corpus(text), tokenizer, seq_len, "eval")
    order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(seed))
    return windows[order[:n_windows]]


def train_or_reuse(base: TrainConfig, mode: str, seed: int) -> TrainResult:
    """``base`` trained with gradient ``mode`` and ``seed`` in ``base.out/<mode>-seed<k>``:
    a run already there is continued, or, if finished, loaded as it is."""
    config = replace(base, gradient=mode, seed=seed, out=Path(base.out) / f"{mode}-seed{seed}")
    return train(config, resume=(config.out / CHECKPOINT).exists(), show_progress=False)


def _text_run(base: TrainConfig, mode: str, seed: int, eval_windows: int) -> tuple[np.ndarray, str]:
    """One (mode, seed) of :func:`text_gap`: its loss at each position on the held-out
    windows (the same for every run: drawn with seed 0), and where it was trained."""
    result = train_or_reuse(base, mode, seed)
    windows = sample_eval_windows(base.text, result.tokenizer, base.seq_len, eval_windows, seed=0)
    # The bigram baseline is a different model (each position sees only itself), so it is
    # evaluated as one; the myopic modes change only the backward pass.
    with myopic(result.model, "bigram") if mode == "bigram" else nullcontext():
        return loss_by_position(result.model, windows, base.batch_size), str(result.device)


def text_gap(
    base: TrainConfig,
    seeds: list[int],
    modes: tuple[str, ...] = ("normal", "kv", "bigram"),
    eval_windows: int = 64,
    show_progress: bool = True,
    workers: int | Pool = 1,
) -> GapResult:
    """Train ``base`` once per (mode, seed) into ``base.out/<mode>-seed<k>``; evaluate
    every model on the same held-out windows (with the ordinary forward pass, except the
    bigram baseline, which is evaluated as the bigram model it is).
    A run whose checkpoint is already there is continued (or, if finished, reused). The
    runs go to ``workers`` processes (:func:`myopia.jobs.run_jobs`)."""
    keys = [(mode, seed) for seed in seeds for mode in modes]
    jobs = [partial(_text_run, base, mode, seed, eval_windows) for mode, seed in keys]
    with Bar(len(jobs), "natural-text gap", enabled=show_progress) as bar:
        done = run_jobs(jobs, workers, lambda i, run: bar.advance("natural-text gap"))
    losses = {m: [] for m in modes}
    by_position = {m: [] for m in modes}
    for (mode, _), (curve, _) in zip(keys, done, strict=True):
        by_position[mode].append(curve.tolist())
        losses[mode].append(float(curve.mean()))
    device = done[0][1]
    return GapResult(list(seeds), losses, by_position=by_position, device=device)
