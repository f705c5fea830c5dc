"""C1(a)'s measurement on the synthetic task: the myopia gap on the pre-caching task of Wu,
Morris and Levine (2024), per setting, with the lagged-sine probe at the primary one.

The same 2-layer GPT-2-style model (Huber loss) is trained with the ordinary gradient and
with each myopic one, on the same batches from the same seed; the gap is the held-out
loss of the myopic model minus that of the normal one, paired by seed. The first ``p`` of
the config is the primary setting: it is trained in ``modes_at_primary`` and probed
(normal against its first myopic mode); the others in ``modes``.

The null (``null=True``, CLAIMS.md v2's control for C1): the same task at the primary p
with ``lags = 0``, where the target at n depends on x_n only, so nothing computed for
later positions helps and the gap must vanish. It is trained in ``modes_at_primary`` on
the same budget, and its gap is the control's number. ``--lags 0`` on the command line
runs that null as the main task. With ``eval_every``, every run also records its
held-out loss along training, so the gap can be read against training steps.

The model is no argument: each run builds a fresh ``ContinuousModel`` sized by the
config (``d_model``, ``n_heads``), on the training device (``myopia.training.fit``).

>>> result = measure_precaching_gap(PrecachingGapConfig.quick())      # doctest: +SKIP
>>> result.primary_gap.text(), result.write(Path("out"))               # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from myopia.errors import MyopiaError
from myopia.io import atomic_write_json
from myopia.jobs import Pool, pool_of
from myopia.protocol import VERDICT_SEED
from myopia.stats import Interval
from myopia.training.continuous import ContinuousFit
from myopia.training.gap import GapResult, precaching_gap
from myopia.training.precaching import PrecachingTask, lagged_sine_r2


@dataclass(frozen=True)
class PrecachingGapConfig:
    """C1(a)'s settings. ``full()`` is the report's budget: f = 3, three lags, length 16,
    d = 64, trained to near convergence (the published f = 10, ten lags, length 64 does
    not leave its trivial loss in a CPU budget: run it with ``myopia gap precaching`` on a
    GPU); ``quick()`` the same task on a short budget."""

    ps: tuple[float, ...] = (1.0,)  # the first is the primary setting
    modes_at_primary: tuple[str, ...] = ("normal", "kv", "residual")
    modes: tuple[str, ...] = ("normal", "kv")  # at the other settings
    # Pilot seeds 1, 3: the task's gap ≈ +0.4 (far from 0); the null's kv gap at lr 4e-3
    # was +0.005 and +0.001, SD 0.003: n_for_half_width(0.003, 0.02, minimum=3) = 3 seeds
    # put its CI inside ±0.03 around a mean of ≤ 0.01; 3 is also the rule's minimum.
    n_seeds: int = 3
    seed: int = VERDICT_SEED  # seeds are seed, seed + 1, ...
    lags: int = 3
    frequency: float = 3.0
    seq_len: int = 16
    d_model: int = 64
    n_heads: int = 2
    # Pilot seeds 1-3: at lr 8e-3 the kv model on the null was unstable or stuck (gaps
    # +0.039, +0.001, +0.23), at 4e-3 it trained (0.006, 0.001); the normal model on the
    # task (seed 1, 4e-3) was at 0.117 at step 800 and 0.110 at 1000, of a trivial 0.52.
    # 800 steps is what C1's 4.5 min allows with the null beside the task.
    steps: int = 800
    batch_size: int = 32
    lr: float = 4e-3
    warmup_steps: int = 50
    max_lag: int = 8  # the probe's lags 0..max_lag
    null: bool = True  # also train the lags = 0 null at the primary p (C1's control)
    eval_every: int | None = 200  # held-out loss every this many steps (None: at the end)

    @classmethod
    def full(cls) -> PrecachingGapConfig:
        return cls()

    @classmethod
    def quick(cls) -> PrecachingGapConfig:
        # A smoke run of the same design: 12 runs of 48 steps, so that C1-C3 fit --quick's
        # 40 s (80 steps took 17 s of them on a 2-core VM).
        return cls(
            modes_at_primary=("normal", "kv"), steps=48, lr=3e-3, warmup_steps=8, eval_every=16
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

    @property
    def null_modes(self) -> tuple[str, ...]:
        """The null is trained in the primary mode only: the control reads that gap."""
        return ("normal", self.primary_mode)

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
        if self.eval_every is not None and self.eval_every < 1:
            raise MyopiaError(f"eval_every must be at least 1, got {self.eval_every}")
        if self.d_model % self.n_heads:
            raise MyopiaError(
                f"--d-model {self.d_model} must be a multiple of the model's {self.n_heads} "
                "attention heads"
            )
        if self.max_lag >= self.seq_len:
            raise MyopiaError(f"max_lag must be below seq_len {self.seq_len}, got {self.max_lag}")


@dataclass
class PrecachingGapResult:
    config: PrecachingGapConfig
    gaps: dict[float, GapResult]  # p -> held-out losses per mode and seed
    probe_r2: dict[str, list[list[float]]]  # mode -> (layers + 1) × (max_lag + 1), primary p
    device: str = "cpu"  # where the models were trained
    null: GapResult | None = None  # the lags = 0 null at the primary p, if run

    NULL_LABEL = "null (lags = 0)"

    @staticmethod
    def label(p: float) -> str:
        return f"p = {p:g}"

    @property
    def primary_gap(self) -> Interval:
        return self.gaps[self.config.primary_p].gap(self.config.primary_mode)

    @property
    def null_gap(self) -> Interval | None:
        """The null's gap in the primary mode: the control's number."""
        return None if self.null is None else self.null.gap(self.config.primary_mode)

    def curves(self) -> dict:
        """Held-out loss along training at the primary p and in the null: task label ->
        mode -> seed -> loss at each of ``steps`` (empty if not recorded)."""
        tasks = {self.label(self.config.primary_p): self.gaps[self.config.primary_p]}
        if self.null is not None:
            tasks[self.NULL_LABEL] = self.null
        recorded = {k: g for k, g in tasks.items() if "eval_curves" in g.extra}
        if len(recorded) < len(tasks):
            return {}
        steps = next(iter(recorded.values())).extra["eval_steps"]
        return {"steps": steps, "tasks": {k: g.extra["eval_curves"] for k, g in recorded.items()}}

    def to_dict(self) -> dict:
        settings, trivial, gaps = {}, {}, {}
        tasks = [(self.label(p), result) for p, result in self.gaps.items()]
        if self.null is not None:
            tasks.append((self.NULL_LABEL, self.null))
        for label, result in tasks:
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
            "null_gap": None if self.null_gap is None else self.null_gap.to_dict(),
            "primary": {"p": self.config.primary_p, "mode": self.config.primary_mode},
            "curves": self.curves(),
            "probe_r2": self.probe_r2,
            "seeds": self.config.seeds,
            "device": self.device,
        }

    def task_text(self) -> str:
        c = self.config
        return f"f = {c.frequency:g}, {c.lags} lags, length {c.seq_len}, d = {c.d_model}"

    def write(self, out: Path) -> list[Path]:
        """``precaching_gap.json``, the held-out losses (``precaching_loss.png``), the
        probe (``probe_r2.png``) and, if recorded, the gap against training steps
        (``gap_by_step.png``), each plot with its JSON beside it."""
        from myopia.plots import plot_losses_by_setting, plot_probe_r2
        from myopia.training.precaching_plots import plot_gap_by_step

        numbers = self.to_dict()
        out = Path(out)
        written = [
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
        if numbers["curves"]:
            written.append(
                plot_gap_by_step(
                    numbers["curves"],
                    out / "gap_by_step.png",
                    f"Myopia gap against training steps ({self.task_text()}), "
                    f"{self.config.n_seeds} seeds, mean and 95% CI",
                )
            )
        return written


def measure_precaching_gap(
    config: PrecachingGapConfig,
    show_progress: bool = False,
    runs_dir: Path | None = None,
    workers: int | Pool = 1,
) -> PrecachingGapResult:
    """Train every (p, mode, seed) and probe the primary setting's first seed; the runs go
    to ``workers`` processes, started once for all of them.

    With ``runs_dir``, each run checkpoints in ``runs_dir/p<p>/<mode>-seed<k>.pt`` and a
    repeated call continues (or reuses) the runs found there."""
    config.check()
    with pool_of(workers) as pool:
        return _measure(config, show_progress, runs_dir, pool)


def _measure(
    config: PrecachingGapConfig, show_progress: bool, runs_dir: Path | None, pool: Pool
) -> PrecachingGapResult:
    gaps, probe, device = {}, {}, "cpu"
    null = None
    if config.null:
        null, _ = precaching_gap(
            replace(config.task(config.primary_p), lags=0),
            config.fit(),
            config.seeds,
            config.null_modes,
            show_progress,
            runs_dir=None if runs_dir is None else Path(runs_dir) / "null",
            eval_every=config.eval_every,
            workers=pool,
        )
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
            eval_every=config.eval_every if primary else None,
            workers=pool,
        )
        gaps[p] = result
        device = next(iter(runs.values())).device
        if primary:
            # The probe on the first seed's models: what each layer holds at position n.
            probe = {
                m: lagged_sine_r2(runs[m, config.seeds[0]].model, task, config.max_lag).tolist()
                for m in ("normal", config.primary_mode)
            }
    return PrecachingGapResult(config=config, gaps=gaps, probe_r2=probe, device=device, null=null)
