"""C1(a)'s measurement on the synthetic task: the myopia gap on the pre-caching task of Wu,
Morris and Levine (2024), per setting, with the lagged-sine probe at the primary one.

The same 2-layer GPT-2-style model (Huber loss) is trained with the ordinary gradient and
with each myopic one, on the same batches from the same seed; the gap is the held-out
loss of the myopic model minus that of the normal one, paired by seed. The first ``p`` of
the config is the primary setting: it is trained in ``modes_at_primary`` and probed
(normal against its first myopic mode); the others in ``modes``.

The model is no argument: each run builds a fresh ``ContinuousModel`` sized by the
config (``d_model``, ``n_heads``), on the training device (``myopia.training.fit``).

>>> result = measure_precaching_gap(PrecachingGapConfig.quick())      # doctest: +SKIP
>>> result.primary_gap.text(), result.write(Path("out"))               # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from myopia.errors import MyopiaError
from myopia.io import atomic_write_json
from myopia.stats import Interval
from myopia.training.continuous import ContinuousFit
from myopia.training.gap import GapResult, precaching_gap
from myopia.training.precaching import PrecachingTask, lagged_sine_r2


@dataclass(frozen=True)
class PrecachingGapConfig:
    """C1(a)'s settings. ``full()`` is the report's budget: f = 3, five lags, length 32
    (the published f = 10, ten lags, length 64 does not leave its trivial loss in a CPU
    budget); ``quick()`` the smallest at which the normal model still learns the task."""

    ps: tuple[float, ...] = (1.0, 0.5)  # the first is the primary setting
    modes_at_primary: tuple[str, ...] = ("normal", "kv", "residual")
    modes: tuple[str, ...] = ("normal", "kv")  # at the other settings
    n_seeds: int = 3
    seed: int = 0  # seeds are seed, seed + 1, ...
    lags: int = 5
    frequency: float = 3.0
    seq_len: int = 32
    d_model: int = 128
    n_heads: int = 2
    steps: int = 400
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 50
    max_lag: int = 20  # the probe's lags 0..max_lag

    @classmethod
    def full(cls) -> PrecachingGapConfig:
        return cls()

    @classmethod
    def quick(cls) -> PrecachingGapConfig:
        return cls(
            ps=(1.0,),
            modes_at_primary=("normal", "kv"),
            lags=3,
            seq_len=16,
            d_model=64,
            steps=150,
            lr=3e-3,
            warmup_steps=20,
            max_lag=8,
        )

    @property
    def seeds(self) -> list[int]:
        return [self.seed + k for k in range(self.n_seeds)]

    @property
    def primary_p(self) -> float:
        return self.ps[0]

    @property
    def primary_mode(self) -> str:
        return next(m for m in self.modes_at_primary if m != "normal")

    def task(self, p: float) -> PrecachingTask:
        return PrecachingTask(
            p=p,
            lags=self.lags,
            frequency=self.frequency,
            seq_len=self.seq_len,
            d_model=self.d_model,
            n_heads=self.n_heads,
        )

    def fit(self) -> ContinuousFit:
        return ContinuousFit(
            steps=self.steps, batch_size=self.batch_size, lr=self.lr, warmup_steps=self.warmup_steps
        )

    def check(self) -> None:
        if not self.ps:
            raise MyopiaError("give at least one p")
        for modes in (self.modes_at_primary, self.modes):
            if "normal" not in modes or len(set(modes)) < 2:
                raise MyopiaError(f"modes {modes} need normal and at least one myopic mode")
            for mode in modes:
                if mode not in ("normal", "kv", "residual"):
                    raise MyopiaError(
                        f"gradient {mode!r} does not apply to the pre-caching task: "
                        "choose kv or residual"
                    )
        if self.max_lag >= self.seq_len:
            raise MyopiaError(f"max_lag must be below seq_len {self.seq_len}, got {self.max_lag}")


@dataclass
class PrecachingGapResult:
    config: PrecachingGapConfig
    gaps: dict[float, GapResult]  # p -> held-out losses per mode and seed
    probe_r2: dict[str, list[list[float]]]  # mode -> (layers + 1) × (max_lag + 1), primary p
    device: str = "cpu"  # where the models were trained

    @staticmethod
    def label(p: float) -> str:
        return f"p = {p:g}"

    @property
    def primary_gap(self) -> Interval:
        return self.gaps[self.config.primary_p].gap(self.config.primary_mode)

    def to_dict(self) -> dict:
        settings, trivial, gaps = {}, {}, {}
        for p, result in self.gaps.items():
            label = self.label(p)
            settings[label] = {
                m: {"values": result.losses[m], "ci": result.loss(m).to_dict()}
                for m in result.losses
            }
            trivial[label] = result.extra["trivial_loss"]
            for mode in result.losses:
                if mode != "normal":
                    gaps[f"{label}, {mode}"] = result.gap(mode).to_dict()
        return {
            "settings": settings,
            "trivial_loss": trivial,
            "gaps": gaps,
            "primary_gap": self.primary_gap.to_dict(),
            "primary": {"p": self.config.primary_p, "mode": self.config.primary_mode},
            "probe_r2": self.probe_r2,
            "seeds": self.config.seeds,
            "device": self.device,
        }

    def task_text(self) -> str:
        c = self.config
        return f"f = {c.frequency:g}, {c.lags} lags, length {c.seq_len}, d = {c.d_model}"

    def write(self, out: Path) -> list[Path]:
        """``precaching_gap.json``, the held-out losses (``precaching_loss.png``) and the
        probe (``probe_r2.png``), each plot with its JSON beside it."""
        from myopia.plots import plot_losses_by_setting, plot_probe_r2

        numbers = self.to_dict()
        out = Path(out)
        return [
            atomic_write_json(
                out / "precaching_gap.json", {"config": asdict(self.config), **numbers}
            ),
            plot_losses_by_setting(
                numbers["settings"],
                out / "precaching_loss.png",
                f"Pre-caching task ({self.task_text()}): held-out Huber loss, "
                f"{self.config.n_seeds} seeds",
                "held-out Huber loss",
                reference=numbers["trivial_loss"],
            ),
            plot_probe_r2(
                self.probe_r2,
                out / "probe_r2.png",
                "Ridge probe from the hidden state at n to sin(f·x[n−i]), "
                f"p = {self.config.primary_p:g}, seed {self.config.seeds[0]}",
            ),
        ]


def measure_precaching_gap(
    config: PrecachingGapConfig, show_progress: bool = False, runs_dir: Path | None = None
) -> PrecachingGapResult:
    """Train every (p, mode, seed) and probe the primary setting's first seed.

    With ``runs_dir``, each run checkpoints in ``runs_dir/p<p>/<mode>-seed<k>.pt`` and a
    repeated call continues (or reuses) the runs found there."""
    config.check()
    gaps, probe, device = {}, {}, "cpu"
    for p in config.ps:
        task = config.task(p)
        primary = p == config.primary_p
        result, runs = precaching_gap(
            task,
            config.fit(),
            config.seeds,
            config.modes_at_primary if primary else config.modes,
            show_progress,
            keep_models=primary,
            runs_dir=None if runs_dir is None else Path(runs_dir) / f"p{p:g}",
        )
        gaps[p] = result
        device = next(iter(runs.values())).device
        if primary:
            # The probe on the first seed's models: what each layer holds at position n.
            probe = {
                m: lagged_sine_r2(runs[m, config.seeds[0]].model, task, config.max_lag).tolist()
                for m in ("normal", config.primary_mode)
            }
    return PrecachingGapResult(config=config, gaps=gaps, probe_r2=probe, device=device)
