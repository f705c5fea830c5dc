"""C2's measurement ("myopic action"): P(P1) at the choice over training, for every regime
of the choice task (teacher-forced normal, teacher-forced myopic, on-policy) and seed.

The model is no argument: every run builds a fresh tiny Llama sized by the config
(``d_model``, ``n_layers``, ...), on the training device (``myopia.training.fit``).

>>> result = measure_myopic_action(MyopicActionConfig.quick())   # doctest: +SKIP
>>> result.final_interval("on-policy").text(), result.write(Path("out"))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from myopia.errors import MyopiaError
from myopia.io import atomic_write_json, save_figure
from myopia.progress import Bar
from myopia.stats import Interval, mean_ci
from myopia.training.choice_task import (
    REGIME_LABELS,
    REGIMES,
    ChoiceConfig,
    ChoiceRun,
    train_choice,
)

# CLAIMS.md's reference levels for C2, drawn on the plot (the rule that reads them is the
# report's): teacher-forced P(P1) within 0.03 of the data's 0.5, on-policy above 0.6.
BAND = (0.47, 0.53)
ON_POLICY_THRESHOLD = 0.6


@dataclass
class MyopicActionConfig(ChoiceConfig):
    """One run's settings (the task, the model, its training: ``ChoiceConfig``, whose
    defaults are C2's full budget) and the seeds and regimes C2 trains."""

    n_seeds: int = 3
    seed: int = 0  # seeds are seed, seed + 1, ...
    regimes: tuple[str, ...] = REGIMES

    @classmethod
    def full(cls) -> MyopicActionConfig:
        return cls()

    @classmethod
    def quick(cls) -> MyopicActionConfig:
        return cls(steps=80, batch_size=64, lr=5e-3, warmup_steps=5, eval_every=5)

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
    """P(P1) over training for every regime and seed (C2)."""

    config: ChoiceConfig
    seeds: list[int]
    runs: dict[str, list[ChoiceRun]]  # regime -> one run per seed, in seed order

    @property
    def steps(self) -> list[int]:
        return next(iter(self.runs.values()))[0].steps

    @property
    def device(self) -> str:
        return next(iter(self.runs.values()))[0].device

    def final_interval(self, regime: str) -> Interval:
        """95% Student-t interval over seeds of the final P(P1)."""
        return mean_ci([run.final_p_easy for run in self.runs[regime]])

    def curve_intervals(self, regime: str) -> list[Interval]:
        """95% interval over seeds of P(P1) at each measured step."""
        per_seed = [run.p_easy for run in self.runs[regime]]
        return [mean_ci([curve[i] for curve in per_seed]) for i in range(len(self.steps))]

    def mean_of(self, regime: str, attribute: str) -> float:
        values = [getattr(run, attribute) for run in self.runs[regime]]
        return sum(values) / len(values)

    def to_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "seeds": self.seeds,
            "final_p_easy": {r: self.final_interval(r).to_dict() for r in self.runs},
            "runs": {r: [run.to_dict() for run in runs] for r, runs in self.runs.items()},
            "device": self.device,
        }

    def write(self, out: Path, title: str | None = None) -> list[Path]:
        """``myopic_action.json`` and ``p_easy_over_training.png`` (its JSON beside it)."""
        out = Path(out)
        title = title or (
            f"P(P1) at the choice over training ({len(self.seeds)} seeds, mean and 95% CI)"
        )
        return [
            atomic_write_json(out / "myopic_action.json", self.to_dict()),
            plot_p_easy(self, out / "p_easy_over_training.png", title),
        ]


def measure_myopic_action(
    config: MyopicActionConfig, show_progress: bool = False
) -> MyopicActionResult:
    """Train every regime with every seed and collect P(P1) over training."""
    runs: dict[str, list[ChoiceRun]] = {regime: [] for regime in config.regimes}
    run_config = config.run_config()
    total = len(config.regimes) * config.n_seeds * config.steps
    with Bar(total, "C2 choice task", enabled=show_progress) as bar:
        for regime in config.regimes:
            for seed in config.seeds:
                runs[regime].append(train_choice(run_config, regime, seed, bar=bar))
    return MyopicActionResult(config=run_config, seeds=config.seeds, runs=runs)


def plot_p_easy(result: MyopicActionResult, path: Path, title: str) -> Path:
    """P(P1) against training step per regime: mean line and 95% CI band over seeds."""
    from myopia.plots import plt  # the one place that picks the file-only backend

    path = Path(path)
    steps = result.steps
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.axhspan(*BAND, color="grey", alpha=0.2, lw=0)
    ax.axhline(ON_POLICY_THRESHOLD, color="grey", ls="--", lw=1)
    curves = {}
    for regime, runs in result.runs.items():
        intervals = result.curve_intervals(regime)
        means = [ci.mean for ci in intervals]
        # With one seed the interval is infinite; clip it to the probability range.
        lows = [max(0.0, ci.low) for ci in intervals]
        highs = [min(1.0, ci.high) for ci in intervals]
        (line,) = ax.plot(steps, means, lw=1.5, label=REGIME_LABELS[regime])
        ax.fill_between(steps, lows, highs, color=line.get_color(), alpha=0.2, lw=0)
        curves[regime] = {
            "label": REGIME_LABELS[regime],
            "mean": means,
            "low": [ci.low for ci in intervals],
            "high": [ci.high for ci in intervals],
            "per_seed": {str(run.seed): run.p_easy for run in runs},
        }
    ax.set_xlabel("training step")
    ax.set_ylabel("P(P1 | P0 or P1) at the choice")
    ax.set_ylim(0.0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(
        path.with_suffix(".json"),
        {"steps": steps, "seeds": result.seeds, "level": 0.95, "regimes": curves},
    )
    return path
