"""The myopia gap: loss(myopically trained) − loss(normally trained), same data, steps,
seed and size, paired by seed, with a 95% CI over seeds.

Two settings: the synthetic pre-caching task (:func:`precaching_gap`) and natural text
(:func:`text_gap`, which also gives the held-out loss at each position and accepts the
``bigram`` baseline as a mode). ``myopia gap`` is the CLI for both.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from myopia.attention import myopic
from myopia.data.text import load_corpus, token_windows
from myopia.errors import MyopiaError
from myopia.gradients.loss import forward_logits, token_losses
from myopia.progress import track
from myopia.stats import Interval, mean_ci, paired_difference_ci
from myopia.training.config import TrainConfig
from myopia.training.continuous import ContinuousFit
from myopia.training.loop import CHECKPOINT, train
from myopia.training.precaching import PrecachingRun, PrecachingTask, train_precaching


@dataclass
class GapResult:
    """Held-out losses per mode and seed; ``gap(mode)`` is paired with ``normal``."""

    seeds: list[int]
    losses: dict[str, list[float]]  # mode -> one held-out loss per seed
    by_position: dict[str, list[list[float]]] = field(default_factory=dict)  # mode -> seed -> T
    extra: dict = field(default_factory=dict)

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
) -> tuple[GapResult, dict[tuple[str, int], PrecachingRun]]:
    """Train one model per (mode, seed) on the pre-caching task; return the held-out
    Huber losses, and the runs themselves (with their models if ``keep_models``).
    With ``runs_dir``, each run checkpoints in ``runs_dir/<mode>-seed<k>`` and a
    repeated call continues (or reuses) the runs found there."""
    runs = {}
    jobs = [(mode, seed) for seed in seeds for mode in modes]
    label = f"pre-caching p={task.p:g} lags={task.lags}"
    for mode, seed in track(jobs, label, enabled=show_progress):
        checkpoint = None if runs_dir is None else Path(runs_dir) / f"{mode}-seed{seed}.pt"
        runs[mode, seed] = train_precaching(
            task, replace(fit, gradient=mode, seed=seed), keep_models, checkpoint
        )
    losses = {mode: [runs[mode, s].eval_loss for s in seeds] for mode in modes}
    trivial = float(np.mean([runs[modes[0], s].trivial_loss for s in seeds]))
    return GapResult(seeds=list(seeds), losses=losses, extra={"trivial_loss": trivial}), runs


@torch.no_grad()
def loss_by_position(model: torch.nn.Module, windows: torch.Tensor, batch_size: int) -> np.ndarray:
    """Mean next-token loss at each target position 1..T−1 over ``windows`` (N, T)."""
    model.eval()
    total = torch.zeros(windows.shape[1] - 1, dtype=torch.float64)
    for i in range(0, len(windows), batch_size):
        ids = windows[i : i + batch_size]
        total += token_losses(forward_logits(model, {"input_ids": ids}), ids).sum(0).double()
    return (total / len(windows)).numpy()


def sample_eval_windows(
    text: Path | None, tokenizer, seq_len: int, n_windows: int, seed: int
) -> torch.Tensor:
    """``n_windows`` held-out windows drawn across all documents (not just the first)."""
    windows = token_windows(load_corpus(text), tokenizer, seq_len, "eval")
    order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(seed))
    return windows[order[:n_windows]]


def text_gap(
    base: TrainConfig,
    seeds: list[int],
    modes: tuple[str, ...] = ("normal", "kv", "bigram"),
    eval_windows: int = 64,
    show_progress: bool = True,
) -> GapResult:
    """Train ``base`` once per (mode, seed) into ``base.out/<mode>-seed<k>``; evaluate
    every model on the same held-out windows (with the ordinary forward pass, except the
    bigram baseline, which is evaluated as the bigram model it is).
    A run whose checkpoint is already there is continued (or, if finished, reused)."""
    losses = {m: [] for m in modes}
    by_position = {m: [] for m in modes}
    windows = None
    jobs = [(mode, seed) for seed in seeds for mode in modes]
    for mode, seed in track(jobs, "natural-text gap", enabled=show_progress):
        config = replace(base, gradient=mode, seed=seed, out=Path(base.out) / f"{mode}-seed{seed}")
        result = train(config, resume=(config.out / CHECKPOINT).exists(), show_progress=False)
        if windows is None:
            windows = sample_eval_windows(
                base.text, result.tokenizer, base.seq_len, eval_windows, seed=0
            )
        # The bigram baseline is a different model (each position sees only itself), so
        # it is evaluated as one; the myopic modes change only the backward pass.
        with myopic(result.model, "bigram") if mode == "bigram" else nullcontext():
            curve = loss_by_position(result.model, windows, base.batch_size)
        by_position[mode].append(curve.tolist())
        losses[mode].append(float(curve.mean()))
    return GapResult(seeds=list(seeds), losses=losses, by_position=by_position)


def run_gap_command(
    task: str,
    modes: tuple[str, ...],
    seeds: list[int],
    steps: int,
    batch_size: int,
    seq_len: int,
    lr: float,
    precaching: dict,
    model: str,
    text: Path | None,
    out: Path,
    show_progress: bool = True,
) -> GapResult:
    """``myopia gap``: measure, then write ``gap.json`` and a plot into ``out``."""
    from myopia.io import atomic_write_json
    from myopia.plots import plot_loss_by_position, plot_losses_by_setting

    if task not in ("precaching", "text"):
        raise MyopiaError(f"unknown --task {task!r}: choose precaching or text")
    allowed = ("kv", "residual") if task == "precaching" else ("kv", "residual", "bigram")
    for mode in modes:
        if mode not in allowed:
            raise MyopiaError(
                f"--gradient {mode!r} does not apply to --task {task}: choose {', '.join(allowed)}"
            )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    modes = ("normal", *modes)
    if task == "precaching":
        config = PrecachingTask(seq_len=seq_len, **precaching)
        fit = ContinuousFit(steps=steps, batch_size=batch_size, lr=lr)
        result, _ = precaching_gap(config, fit, seeds, modes, show_progress, runs_dir=out / "runs")
        settings = {
            "task": asdict(config),
            "fit": asdict(fit),
        }
        plot_losses_by_setting(
            {
                f"p = {config.p:g}": {
                    m: {"values": result.losses[m], "ci": result.loss(m).to_dict()} for m in modes
                }
            },
            out / "gap.png",
            f"Pre-caching task: held-out loss, {len(seeds)} seeds",
            "held-out Huber loss",
            reference={f"p = {config.p:g}": result.extra["trivial_loss"]},
        )
    else:
        base = TrainConfig(
            model=model,
            text=text,
            seq_len=seq_len,
            batch_size=batch_size,
            steps=steps,
            lr=lr,
            eval_every=steps,
            checkpoint_every=max(1, steps // 4),
            out=out / "runs",
        )
        result = text_gap(base, seeds, modes, show_progress=show_progress)
        settings = {"train": base.to_dict()}
        plot_loss_by_position(
            result.by_position,
            out / "gap.png",
            f"{model}: held-out loss by position, {len(seeds)} seeds",
        )
    atomic_write_json(out / "gap.json", {"task": task, "settings": settings, **result.to_dict()})
    return result
