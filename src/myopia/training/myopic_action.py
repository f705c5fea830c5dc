"""C2's measurement ("myopic action"): P(P1) at the choice over training, for every regime
of the choice task (teacher-forced normal, teacher-forced myopic, on-policy), both arms
(P1-easy, P0-easy) and every seed; and Δ = P(P1 | P1-easy) − P(P1 | P0-easy), paired by seed.

The model is no argument: every run builds a fresh tiny Llama with tied embeddings, sized
by the config (``d_model``, ``n_layers``, ...), on the training device
(``myopia.training.fit``).

>>> result = measure_myopic_action(MyopicActionConfig.quick())   # doctest: +SKIP
>>> result.delta("on-policy").text(), result.write(Path("out"))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

from myopia.errors import MyopiaError
from myopia.io import atomic_write_json, save_figure
from myopia.jobs import Pool, run_jobs
from myopia.progress import Bar
from myopia.protocol import VERDICT_SEED
from myopia.stats import Interval, mean_ci, n_for_half_width, paired_difference_ci
from myopia.training.choice_task import (
    ARMS,
    REGIME_LABELS,
    REGIMES,
    ChoiceConfig,
    ChoiceRun,
    train_choice,
)

# CLAIMS.md's levels for C2, drawn on the plot (the rule that reads them is the report's):
# teacher-forced Δ within ±0.03 of 0; the on-policy control must move Δ above 0.2.
BAND = (-0.03, 0.03)
ON_POLICY_THRESHOLD = 0.2

# Power argument (pilot seeds 1-4, full budget): sd of the teacher-forced Δ 0.0032 (on-policy
# 0.0001); a CI half-width of 0.015 (half the band) needs n_for_half_width(0.0032, 0.015) = 3
# seeds; CLAIMS.md asks for at least 8.
FULL_SEEDS = n_for_half_width(0.0032, 0.015, minimum=8)


@dataclass
class MyopicActionConfig(ChoiceConfig):
    """One run's settings (the task, the model, its training: ``ChoiceConfig``, whose
    defaults are C2's full budget) and the seeds, regimes and arms C2 trains."""

    n_seeds: int = FULL_SEEDS
    seed: int = VERDICT_SEED  # seeds are seed, seed + 1, ...
    regimes: tuple[str, ...] = REGIMES

    @classmethod
    def full(cls) -> MyopicActionConfig:
        return cls()

    @classmethod
    def quick(cls) -> MyopicActionConfig:
        return cls(n_seeds=3, steps=40, batch_size=64, warmup_steps=5, eval_every=5)

    def __post_init__(self):
        super().__post_init__()
        if self.n_seeds < 1:
            raise MyopiaError(f"n_seeds must be at least 1, got {self.n_seeds}")
        for regime in self.regimes:
            if regime not in REGIMES:
                raise MyopiaError(f"unknown regime {regime!r}: choose one of {', '.join(REGIMES)}")

    @property
    def seeds(self) -> list[int]:
        return [self.seed + k for k in range(self.n_seeds)]

    def run_config(self) -> ChoiceConfig:
        """The settings of every single run (without seeds and regimes)."""
        return ChoiceConfig(**{f.name: getattr(self, f.name) for f in fields(ChoiceConfig)})


@dataclass
class MyopicActionResult:
    """P(P1) over training for every regime, arm and seed (C2)."""

    config: ChoiceConfig
    seeds: list[int]
    runs: dict[str, dict[str, list[ChoiceRun]]]  # regime -> arm -> one run per seed

    @property
    def regimes(self) -> list[str]:
        return list(self.runs)

    @property
    def steps(self) -> list[int]:
        return self.runs[self.regimes[0]][ARMS[0]][0].steps

    @property
    def device(self) -> str:
        return self.runs[self.regimes[0]][ARMS[0]][0].device

    def finals(self, regime: str, arm: str) -> list[float]:
        """Final P(P1) per seed, in seed order."""
        return [run.final_p1 for run in self.runs[regime][arm]]

    def final_interval(self, regime: str, arm: str) -> Interval:
        """95% Student-t interval over seeds of the final P(P1)."""
        return mean_ci(self.finals(regime, arm))

    def delta(self, regime: str) -> Interval:
        """Δ = P(P1 | P1-easy) − P(P1 | P0-easy) at the end, paired by seed (one seed: the
        same initial model and, teacher-forced, the same contexts and choices in both arms)."""
        return paired_difference_ci(self.finals(regime, "P1-easy"), self.finals(regime, "P0-easy"))

    def curve_intervals(self, regime: str, arm: str) -> list[Interval]:
        """95% interval over seeds of P(P1) at each measured step."""
        per_seed = [run.p1 for run in self.runs[regime][arm]]
        return [mean_ci([curve[i] for curve in per_seed]) for i in range(len(self.steps))]

    def mean_of(self, regime: str, arm: str, attribute: str) -> float:
        values = [getattr(run, attribute) for run in self.runs[regime][arm]]
        return sum(values) / len(values)

    def to_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "seeds": self.seeds,
            "delta": {r: self.delta(r).to_dict() for r in self.regimes},
            "final_p1": {
                r: {arm: self.final_interval(r, arm).to_dict() for arm in ARMS}
                for r in self.regimes
            },
            "runs": {
                r: {arm: [run.to_dict() for run in runs] for arm, runs in by_arm.items()}
                for r, by_arm in self.runs.items()
            },
            "device": self.device,
        }

    def write(self, out: Path, title: str | None = None) -> list[Path]:
        """``myopic_action.json`` and ``p1_over_training.png`` (its JSON beside it)."""
        out = Path(out)
        title = title or (
            f"P(P1) at the choice over training, both arms ({len(self.seeds)} seeds, "
            "mean and 95% CI)"
        )
        return [
            atomic_write_json(out / "myopic_action.json", self.to_dict()),
            plot_p1(self, out / "p1_over_training.png", title),
        ]


def measure_myopic_action(
    config: MyopicActionConfig, show_progress: bool = False, workers: int | Pool = 1
) -> MyopicActionResult:
    """Train every regime in both arms with every seed (on ``workers`` processes) and
    collect P(P1) over training."""
    run_config = config.run_config()
    plan = [(r, arm, seed) for r in config.regimes for arm in ARMS for seed in config.seeds]
    jobs = [partial(train_choice, run_config, *run) for run in plan]
    with Bar(len(plan), "C2 choice task", enabled=show_progress) as bar:

        def finished(i: int, run: ChoiceRun) -> None:
            bar.advance(f"C2 {run.regime} {run.arm}, seed {run.seed}: P(P1) {run.p1[-1]:.2f}")

        done = run_jobs(jobs, workers, finished)
    runs = {regime: {arm: [] for arm in ARMS} for regime in config.regimes}
    for (regime, arm, _), run in zip(plan, done, strict=True):
        runs[regime][arm].append(run)
    return MyopicActionResult(config=run_config, seeds=config.seeds, runs=runs)


ARM_STYLES = {"P1-easy": "-", "P0-easy": "--"}


def plot_p1(result: MyopicActionResult, path: Path, title: str) -> Path:
    """P(P1) against training step per regime and arm: mean line and 95% CI band over
    seeds (solid: P1-easy, dashed: P0-easy; one colour per regime)."""
    from myopia.plots import plt  # the one place that picks the file-only backend

    path = Path(path)
    steps = result.steps
    fig, ax = plt.subplots(figsize=(6.8, 4.0))
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    curves = {}
    for regime in result.regimes:
        color = None
        for arm in ARMS:
            intervals = result.curve_intervals(regime, arm)
            means = [ci.mean for ci in intervals]
            # With one seed the interval is infinite; clip it to the probability range.
            lows = [max(0.0, ci.low) for ci in intervals]
            highs = [min(1.0, ci.high) for ci in intervals]
            (line,) = ax.plot(
                steps, means, ARM_STYLES[arm], lw=1.5, color=color,
                label=f"{REGIME_LABELS[regime]}, {arm}",
            )  # fmt: skip
            color = line.get_color()
            ax.fill_between(steps, lows, highs, color=color, alpha=0.15, lw=0)
            curves[f"{regime} / {arm}"] = {
                "regime": regime,
                "arm": arm,
                "label": REGIME_LABELS[regime],
                "mean": means,
                "low": [ci.low for ci in intervals],
                "high": [ci.high for ci in intervals],
                "per_seed": {str(run.seed): run.p1 for run in result.runs[regime][arm]},
            }
    ax.set_xlabel("training step")
    ax.set_ylabel("P(P1 | P0 or P1) at the choice")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(
        path.with_suffix(".json"),
        {"steps": steps, "seeds": result.seeds, "level": 0.95, "curves": curves},
    )
    return path
