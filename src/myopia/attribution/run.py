"""What ``myopia attribute`` measures: windows of a text, every head and MLP (or some)
attributed at every position (or some), with its plots and JSON.

>>> model, tokenizer = load_model("fresh-llama")                             # doctest: +SKIP
>>> config = AttributionConfig(seq_len=32, n_sequences=2)                    # doctest: +SKIP
>>> run = measure(model, tokenizer, config, load_corpus("notes.txt"))        # doctest: +SKIP
>>> run.write(Path("attr"), "fresh-llama")[0]                                # doctest: +SKIP
PosixPath('attr/future_share_heatmap.png')
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from myopia.attribution import METHODS, attribute
from myopia.attribution.result import Attribution
from myopia.data.text import Document, token_chunks
from myopia.errors import MyopiaError
from myopia.io import atomic_write_json

__all__ = ["AttributionConfig", "AttributionRun", "measure"]


@dataclass(frozen=True)
class AttributionConfig:
    """``method``: ``first_order`` or ``ablation`` (sample it with ``components`` and
    ``positions``: the full sweep is one forward pass per pair)."""

    seq_len: int = 128  # tokens per window of the text's eval split
    n_sequences: int = 4
    method: str = "first_order"
    ablation: str = "mean"  # what replaces an output: mean (over the batch) or zero
    components: tuple[str, ...] | None = None  # e.g. ("L3.H5", "L3.MLP"); None: all
    positions: tuple[int, ...] | None = None  # None: all
    seed: int = 0

    @classmethod
    def full(cls) -> AttributionConfig:
        return cls()

    @classmethod
    def quick(cls) -> AttributionConfig:
        return cls(seq_len=64, n_sequences=2)

    def check(self) -> None:
        if self.method not in METHODS:
            raise MyopiaError(f"--method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.seq_len < 2:
            raise MyopiaError(f"--seq-len must be at least 2, not {self.seq_len}")


@dataclass
class AttributionRun:
    config: AttributionConfig
    attribution: Attribution
    duration_s: float

    def to_dict(self, per_position: bool = True) -> dict:
        return {
            "seed": self.config.seed,
            "duration_s": round(self.duration_s, 3),
            **self.attribution.to_dict(per_position=per_position),
        }

    def write(self, out: Path, label: str = "") -> list[Path]:
        """``future_share_heatmap.png`` (layer × head, MLP column), ``effect_by_position.png``
        (each with its JSON) and ``attribution.json`` (everything, per-position effects
        included) in ``out``; ``label`` names the model."""
        from myopia.attribution.plots import plot_effect_by_position, plot_share_heatmap

        out, c = Path(out), self.config
        title = (
            f"{label}: {c.method.replace('_', '-')}, {c.ablation} ablation, "
            f"{c.n_sequences} × {c.seq_len}"
        )
        result = self.attribution
        return [
            plot_share_heatmap(
                result, out / "future_share_heatmap.png", f"{title}\nfuture share per component"
            ),
            plot_effect_by_position(
                result, out / "effect_by_position.png", f"{title}\ncurrent and future effect"
            ),
            atomic_write_json(out / "attribution.json", {"model": label, **self.to_dict()}),
        ]


def measure(
    model,
    tokenizer,
    config: AttributionConfig,
    documents: list[Document],
    show_progress: bool = False,
) -> AttributionRun:
    """Attribute ``config.n_sequences`` windows of the documents' eval split (drawn by
    ``config.seed``)."""
    config.check()
    sequences = token_chunks(
        documents, tokenizer, config.seq_len, config.n_sequences, seed=config.seed, split="eval"
    )
    start = time.perf_counter()
    result = attribute(
        model,
        sequences,
        method=config.method,
        ablation=config.ablation,
        components=config.components,
        positions=config.positions,
        show_progress=show_progress,
    )
    return AttributionRun(config, result, time.perf_counter() - start)
