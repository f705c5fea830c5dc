"""C3's measurement (effort allocation): per model width, the held-out loss of each part of
the effort task (``myopia.training.effort_task``) under normal and myopic training, paired
by seed.

The model is no argument: every run builds a fresh ``ContinuousModel`` of the swept width
on the training device (``myopia.training.fit``).

>>> result = measure_effort_allocation(EffortAllocationConfig.quick())   # doctest: +SKIP
>>> result.width_summary(8)["current_difference"].text()                 # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from myopia.errors import MyopiaError
from myopia.io import atomic_write_json, save_figure
from myopia.progress import Bar
from myopia.stats import Interval, mean_ci, paired_difference_ci
from myopia.training.continuous import ContinuousFit
from myopia.training.effort_task import MYOPIC_GRADIENTS, PARTS, EffortRun, EffortTask, train_effort


@dataclass(frozen=True)
class EffortAllocationConfig:
    """C3's sweep. ``full()`` is the report's budget, chosen from pilot runs on seeds 10-14
    (not the report's): at d = 8 and 600 steps every normal model learned the later part
    while the current part stayed capacity-bound; with 3 seeds the t interval was too wide
    for the current-part difference, hence 5. ``quick()`` is a smoke run (~10 s) that may
    be inconclusive."""

    widths: tuple[int, ...] = (8, 16, 32)  # d_model; the MLP is 4 × d_model wide
    n_seeds: int = 5
    seed: int = 0  # seeds are seed, seed + 1, ...
    steps: int = 600
    batch_size: int = 32
    lr: float = 5e-3
    warmup_steps: int = 20
    eval_batches: int = 8
    myopic_gradient: str = "kv"

    @classmethod
    def full(cls) -> EffortAllocationConfig:
        return cls()

    @classmethod
    def quick(cls) -> EffortAllocationConfig:
        return cls(widths=(8,), n_seeds=3, steps=400)

    @property
    def seeds(self) -> list[int]:
        return [self.seed + k for k in range(self.n_seeds)]

    def fit(self) -> ContinuousFit:
        """The optimisation of every run (each replaces gradient and seed)."""
        return ContinuousFit(
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            warmup_steps=self.warmup_steps,
            eval_batches=self.eval_batches,
        )


@dataclass
class EffortAllocation:
    """Every run of a width sweep: each width × {normal, myopic} × seed."""

    task: dict  # the task as given; each width replaces its d_model
    fit: dict  # the optimisation settings; each run replaces gradient and seed
    myopic_gradient: str  # kv or residual
    widths: list[int]
    seeds: list[int]
    runs: dict[tuple[int, str, int], EffortRun] = field(default_factory=dict)  # (w, grad, seed)
    seconds: float = 0.0

    def losses(self, width: int, gradient: str, part: str) -> list[float]:
        """Held-out loss of ``part`` (current, later, total, zero_current, zero_later) per
        seed, in ``seeds`` order; ``gradient`` is normal or myopic."""
        mode = "normal" if gradient == "normal" else self.myopic_gradient
        return [getattr(self.runs[width, mode, s], f"{part}_loss") for s in self.seeds]

    def width_summary(self, width: int) -> dict[str, Interval]:
        """95% intervals over seeds: each part's loss under each gradient, the level of
        predicting 0, and the paired differences normal − myopic (positive: normal worse)."""
        summary = {}
        for part in ("current", "later", "total"):
            normal = self.losses(width, "normal", part)
            myopic_ = self.losses(width, "myopic", part)
            summary[f"{part}_normal"] = mean_ci(normal)
            summary[f"{part}_myopic"] = mean_ci(myopic_)
            summary[f"{part}_difference"] = paired_difference_ci(normal, myopic_)
        for part in PARTS:
            summary[f"{part}_zero"] = mean_ci(self.losses(width, "normal", f"zero_{part}"))
        return summary

    def to_dict(self) -> dict:
        """JSON-able: settings, per-width intervals, and every run's numbers."""
        return {
            "task": self.task,
            "fit": self.fit,
            "myopic_gradient": self.myopic_gradient,
            "widths": self.widths,
            "seeds": self.seeds,
            "seconds": self.seconds,
            "by_width": {
                str(w): {k: ci.to_dict() for k, ci in self.width_summary(w).items()}
                for w in self.widths
            },
            "runs": [
                {"width": w, "gradient": g, "seed": s, **run.to_dict()}
                for (w, g, s), run in self.runs.items()
            ],
            "device": self.device,
        }

    @property
    def device(self) -> str:
        return next(iter(self.runs.values())).device

    def write(self, out: Path, title: str | None = None) -> list[Path]:
        """``loss_by_width.png`` with its JSON (every number of the sweep) beside it."""
        title = title or (
            f"Effort allocation: held-out loss by width, {len(self.seeds)} seeds (mean, 95% CI)"
        )
        path = plot_effort_allocation(self, Path(out) / "loss_by_width.png", title)
        return [path, path.with_suffix(".json")]


def measure_effort_allocation(
    config: EffortAllocationConfig,
    show_progress: bool = False,
    task: EffortTask | None = None,
) -> EffortAllocation:
    """Train every width × {normal, ``config.myopic_gradient``} × seed on ``task`` (default:
    the effort task's own settings; each width replaces its ``d_model``)."""
    task = EffortTask() if task is None else task
    if config.myopic_gradient not in MYOPIC_GRADIENTS:
        raise MyopiaError(
            f"myopic_gradient must be one of {', '.join(MYOPIC_GRADIENTS)}, "
            f"not {config.myopic_gradient!r}"
        )
    if config.n_seeds < 2:
        raise MyopiaError(f"need at least 2 seeds for an interval, got {config.n_seeds}")
    if not config.widths:
        raise MyopiaError("widths is empty: give at least one d_model")
    start = time.perf_counter()
    fit = config.fit()
    gradient_pair = ("normal", config.myopic_gradient)
    result = EffortAllocation(
        asdict(task), asdict(fit), config.myopic_gradient, list(config.widths), config.seeds
    )
    plan = [(w, g, s) for w in config.widths for s in config.seeds for g in gradient_pair]
    with Bar(len(plan), "C3 effort allocation", enabled=show_progress) as bar:
        for width, gradient, seed in plan:
            run = train_effort(
                replace(task, d_model=width), replace(fit, gradient=gradient, seed=seed)
            )
            result.runs[width, gradient, seed] = run
            bar.advance(
                f"C3 d={width} {gradient} seed {seed}: current {run.current_loss:.3f}, "
                f"later {run.later_loss:.3f}"
            )
    result.seconds = time.perf_counter() - start
    return result


def plot_effort_allocation(result: EffortAllocation, path: Path, title: str) -> Path:
    """Current and later held-out loss vs width, normal vs myopic, mean and 95% CI over
    seeds, with the zero-prediction level; the numbers go beside it as JSON."""
    from myopia.plots import plt  # the one place that picks the file-only backend

    widths = result.widths
    summaries = {w: result.width_summary(w) for w in widths}
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
    styles = {"normal": ("o-", "black"), "myopic": ("s--", "tab:orange")}
    for ax, part in zip(axes, ("current", "later"), strict=True):
        for gradient, (fmt, color) in styles.items():
            cis = [summaries[w][f"{part}_{gradient}"] for w in widths]
            label = gradient if gradient == "normal" else f"myopic ({result.myopic_gradient})"
            ax.errorbar(
                widths,
                [ci.mean for ci in cis],
                yerr=[[ci.mean - ci.low for ci in cis], [ci.high - ci.mean for ci in cis]],
                fmt=fmt,
                color=color,
                capsize=3,
                label=label,
            )
        zero = [summaries[w][f"{part}_zero"].mean for w in widths]
        ax.plot(widths, zero, ":", color="gray", label="predicting 0")
        lows = [summaries[w][f"{part}_{g}"].low for w in widths for g in styles]
        if min(lows) > 0:  # a log scale shows small losses, but not an interval below 0
            ax.set_yscale("log")
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.set_xlabel("d_model (MLP width 4·d)")
        ax.set_ylabel(f"held-out Huber loss, {part} part")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(path.with_suffix(".json"), result.to_dict())
    return path
