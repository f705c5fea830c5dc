"""How much of the gradient serves later tokens: the future share per layer, with CIs.

Each sequence gives one gradient split (``split_gradient``) and so one future share per
group of parameters; the confidence interval is over sequences, which are independent
samples of text.

C1(b)'s measurement (``myopia gradient-split`` and report section C1b): ``measure`` with a
``FutureShareConfig`` (``full()`` / ``quick()`` are the report's budgets). With
``reference`` (the default), the same split on the same sequences is also taken on the same
architecture at random initialisation (``models.fresh.fresh_like``): the number a trained
model's share is read against, since part of any future share comes from the architecture
(every position's keys and values feed later positions) and not from training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from myopia.data.text import Document, token_chunks
from myopia.errors import MyopiaError
from myopia.gradients.split import parameter_group, parameter_kind, split_gradient
from myopia.progress import track
from myopia.protocol import VERDICT_SEED
from myopia.stats import Interval, mean_ci

KINDS = ("attention", "mlp")
MODES, BACKENDS = ("kv", "residual"), ("fast", "eager")


@dataclass(frozen=True)
class FutureShareConfig:
    """Sequences of ``seq_len`` tokens from the eval split, one gradient split each."""

    # Descriptive (no verdict reads it): 8 sequences per model, trained and at random
    # initialisation, so that both fit the 62 s that 12 sequences of the trained model took.
    n_sequences: int = 8
    seq_len: int = 256
    mode: str = "kv"  # the myopic gradient's definition (myopia.attention)
    backend: str = "fast"  # the myopic attention path; both compute the same gradient
    seed: int = VERDICT_SEED  # which windows of the text, and the reference model's weights
    reference: bool = True  # also split on the same architecture at random initialisation

    @classmethod
    def full(cls) -> FutureShareConfig:
        return cls()

    @classmethod
    def quick(cls) -> FutureShareConfig:
        return cls(n_sequences=3, seq_len=32)  # 3 trained + 3 fresh splits fit C1-C3's 40 s

    def check(self) -> None:
        if self.mode not in MODES:
            raise MyopiaError(f"mode must be kv or residual, not {self.mode!r}")
        if self.backend not in BACKENDS:
            raise MyopiaError(f"backend must be fast or eager, not {self.backend!r}")


@dataclass
class FutureShareResult:
    """Future shares per sequence: ``by_group[g]`` and ``by_kind[kind][g]`` are arrays over
    sequences; ``overall`` is the whole model's share per sequence."""

    mode: str
    seq_len: int
    groups: list[str]
    by_group: dict[str, np.ndarray]
    by_kind: dict[str, dict[str, np.ndarray]]
    overall: np.ndarray
    norms: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    reference: FutureShareResult | None = None  # the same at random initialisation

    @property
    def n_sequences(self) -> int:
        return len(self.overall)

    def group_intervals(self, level: float = 0.95) -> dict[str, Interval]:
        return {g: mean_ci(self.by_group[g], level) for g in self.groups}

    def kind_intervals(self, kind: str, level: float = 0.95) -> dict[str, Interval]:
        return {g: mean_ci(v, level) for g, v in self.by_kind[kind].items()}

    def overall_interval(self, level: float = 0.95) -> Interval:
        return mean_ci(self.overall, level)

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "seq_len": self.seq_len,
            "n_sequences": self.n_sequences,
            "definition": "future_share = |future| / (|current| + |future|), gradient norms "
            "per group of parameters, one value per sequence; CI: Student t over sequences",
            "overall": self.overall_interval().to_dict(),
            "by_group": {g: ci.to_dict() for g, ci in self.group_intervals().items()},
            "by_kind": {
                k: {g: ci.to_dict() for g, ci in self.kind_intervals(k).items()} for k in KINDS
            },
            "per_sequence": {g: self.by_group[g].tolist() for g in self.groups},
            "norms": self.norms,
            "reference": None if self.reference is None else self.reference.to_dict(),
        }

    def write(self, out: Path, label: str = "") -> list[Path]:
        """``future_share_by_layer.png`` and its JSON (the numbers of ``to_dict``) in ``out``."""
        from myopia.gradients.plots import plot_future_share  # it imports this module

        title = f"{label}: future share per layer ({self.mode})"
        plot = plot_future_share(self, Path(out) / "future_share_by_layer.png", title)
        return [plot, plot.with_suffix(".json")]


def measure_future_share(
    model: nn.Module,
    sequences: torch.Tensor,
    mode: str = "kv",
    backend: str = "fast",
    show_progress: bool = True,
) -> FutureShareResult:
    """Split the gradient of each sequence (rows of ``sequences``, shape (N, T)) and
    collect the future share of every layer, of its attention and MLP parameters, and
    of the whole model."""
    by_group: dict[str, list[float]] = {}
    by_kind: dict[str, dict[str, list[float]]] = {k: {} for k in KINDS}
    overall: list[float] = []
    norms: dict[str, dict[str, list[float]]] = {}
    for row in track(
        sequences, f"gradient split ({mode})", total=len(sequences), enabled=show_progress
    ):
        split = split_gradient(model, {"input_ids": row[None]}, mode=mode, backend=backend)
        for share in split.shares(parameter_group):
            by_group.setdefault(share.group, []).append(share.future_share)
            entry = norms.setdefault(share.group, {"current": [], "future": []})
            entry["current"].append(share.current_norm)
            entry["future"].append(share.future_norm)
        for share in split.shares(lambda n: f"{parameter_kind(n)}|{parameter_group(n)}"):
            kind, group = share.group.split("|")
            if kind in by_kind:
                by_kind[kind].setdefault(group, []).append(share.future_share)
        overall.append(split.shares(lambda _n: "all")[0].future_share)
        # Freed before the next split, not after it: otherwise two splits (six copies of
        # the gradient, 3.2 GB on SmolLM2) are alive at once.
        del split
    return FutureShareResult(
        mode=mode,
        seq_len=int(sequences.shape[1]),
        groups=list(by_group),
        by_group={g: np.asarray(v) for g, v in by_group.items()},
        by_kind={k: {g: np.asarray(v) for g, v in d.items()} for k, d in by_kind.items()},
        overall=np.asarray(overall),
        norms=norms,
    )


def measure(
    model: nn.Module,
    tokenizer,
    config: FutureShareConfig,
    documents: list[Document],
    show_progress: bool = False,
) -> FutureShareResult:
    """C1(b): the future share of ``config.n_sequences`` windows of the documents' eval
    split, drawn by ``config.seed``."""
    config.check()
    sequences = token_chunks(
        documents, tokenizer, config.seq_len, config.n_sequences, seed=config.seed, split="eval"
    )
    result = measure_future_share(
        model, sequences, config.mode, config.backend, show_progress=show_progress
    )
    if config.reference:
        from myopia.models.fresh import fresh_like

        untrained = fresh_like(model, config.seed)
        result.reference = measure_future_share(
            untrained, sequences, config.mode, config.backend, show_progress=show_progress
        )
        del untrained
    return result
