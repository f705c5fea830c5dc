"""C1(a)'s measurement on natural text: the myopia gap of a small model, with loss by position.

The same fresh model is trained on the corpus with the ordinary gradient, the myopic one
(``kv``) and the transformer-bigram baseline (every position attends only to itself),
from the same seed on the same batches; all are evaluated with the ordinary forward pass
(the bigram baseline as the bigram model it is) on the same held-out windows, and the gap
is paired by seed: over all positions, the first ``early_positions`` and the last quarter.

The model is ``config.model``, a model spec (``fresh-llama[:k=v,...]``) that each run
loads afresh with the run's seed; the text is the corpus (None) or the user's.

>>> result = measure_text_gap(TextGapConfig.quick(), None, Path("runs"))  # doctest: +SKIP
>>> result.gaps["kv"]["all positions"].text()                             # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from myopia.errors import MyopiaError
from myopia.io import atomic_write_json
from myopia.jobs import Pool
from myopia.stats import Interval
from myopia.training.config import TrainConfig
from myopia.training.gap import GapResult, text_gap


@dataclass(frozen=True)
class TextGapConfig:
    """C1(a)-text's settings; ``full()`` is the report's budget."""

    model: str = "fresh-llama"  # a model spec, loaded afresh for every run
    modes: tuple[str, ...] = ("normal", "kv", "bigram")
    n_seeds: int = 3
    seed: int = 0  # seeds are seed, seed + 1, ...
    seq_len: int = 128
    batch_size: int = 8
    steps: int = 300
    lr: float = 3e-3
    eval_windows: int = 256  # held-out windows every model is scored on
    early_positions: int = 4  # the span "first positions" of the gap

    @classmethod
    def full(cls) -> TextGapConfig:
        return cls()

    @classmethod
    def quick(cls) -> TextGapConfig:
        return cls(modes=("normal", "kv"), n_seeds=2, seq_len=64, steps=60, eval_windows=32)

    @property
    def seeds(self) -> list[int]:
        return [self.seed + k for k in range(self.n_seeds)]

    def train_config(self, text: Path | None, runs_dir: Path) -> TrainConfig:
        """The run every (mode, seed) replaces its gradient, seed and folder in."""
        return TrainConfig(
            model=self.model,
            text=text,
            seq_len=self.seq_len,
            batch_size=self.batch_size,
            steps=self.steps,
            lr=self.lr,
            eval_every=self.steps,
            checkpoint_every=max(1, self.steps // 4),
            out=Path(runs_dir),
        )

    def check(self) -> None:
        if "normal" not in self.modes or len(set(self.modes)) < 2:
            raise MyopiaError(f"modes {self.modes} need normal and at least one other mode")
        for mode in self.modes:
            if mode not in ("normal", "kv", "residual", "bigram"):
                raise MyopiaError(f"unknown gradient {mode!r}: choose kv, residual or bigram")
        if self.early_positions >= self.seq_len - 1:
            raise MyopiaError(
                f"early_positions must be below seq_len - 1 = {self.seq_len - 1}, "
                f"got {self.early_positions}"
            )


@dataclass
class TextGapResult:
    config: TextGapConfig
    gap: GapResult  # held-out loss by mode, seed and position
    device: str = "cpu"  # where the models were trained

    @property
    def gaps(self) -> dict[str, dict[str, Interval]]:
        """mode -> span -> loss(mode) − loss(normal), paired by seed."""
        seq_len = self.config.seq_len
        spans = {
            "first positions": range(self.config.early_positions),
            "last quarter": range(3 * (seq_len - 1) // 4, seq_len - 1),
        }
        return {
            mode: {
                "all positions": self.gap.gap(mode),
                **{name: self.gap.span_gap(mode, span) for name, span in spans.items()},
            }
            for mode in self.config.modes
            if mode != "normal"
        }

    def to_dict(self) -> dict:
        return {
            **self.gap.to_dict(),
            "gaps": {m: {k: v.to_dict() for k, v in g.items()} for m, g in self.gaps.items()},
            "device": self.device,
        }

    def write(self, out: Path, title: str | None = None) -> list[Path]:
        """``text_gap.json`` and the loss by position (``loss_by_position.png``, with its
        JSON beside it)."""
        from myopia.plots import plot_loss_by_position

        out = Path(out)
        title = title or (
            f"{self.config.model}: held-out loss by position, {self.config.n_seeds} seeds"
        )
        return [
            atomic_write_json(
                out / "text_gap.json", {"config": asdict(self.config), **self.to_dict()}
            ),
            plot_loss_by_position(self.gap.by_position, out / "loss_by_position.png", title),
        ]


def measure_text_gap(
    config: TextGapConfig,
    text: Path | None,
    runs_dir: Path,
    show_progress: bool = False,
    workers: int | Pool = 1,
) -> TextGapResult:
    """Train one model per (mode, seed) into ``runs_dir/<mode>-seed<k>`` (a run found
    there is continued or, if finished, reused) on ``workers`` processes, and measure
    the gaps."""
    config.check()
    result = text_gap(
        config.train_config(text, runs_dir),
        config.seeds,
        config.modes,
        config.eval_windows,
        show_progress,
        workers,
    )
    return TextGapResult(config=config, gap=result, device=result.device)
