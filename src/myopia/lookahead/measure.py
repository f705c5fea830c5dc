"""C5 as the report and ``myopia lookahead`` run it: windows of a text, split into fit,
validation, baseline-table and held-out sets, then ``measure_lookahead``.

Windows of the train split are drawn at random (``seed``): the first ``n_fit`` fit the
probes, the next ``n_val`` choose among them, and all the other train windows are the text
on which the baselines are counted. The held-out windows come from the eval split.
``FutureProbeConfig.full()`` and ``quick()`` are the report's budgets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from myopia.data.text import Document, token_chunks, token_windows
from myopia.errors import MyopiaError
from myopia.io import atomic_write_json
from myopia.lookahead.config import LookaheadConfig
from myopia.lookahead.probes import measure_lookahead
from myopia.lookahead.result import LookaheadResult
from myopia.lookahead.states import unembedding
from myopia.protocol import VERDICT_SEED


@dataclass(frozen=True)
class FutureProbeConfig:
    seq_len: int = 128  # tokens per window
    n_fit: int = 64  # train windows that fit the probes
    n_val: int = 24  # train windows that choose among them
    # Power (version-1 run, SmolLM2): per-window sd of probe − baseline ≈ 0.018; to tell
    # the v1 gap to the trigram (−0.014) from 0, a half-width of 0.007 needs
    # n_for_half_width(0.018, 0.007) = 28 windows: 64 leaves room.
    n_eval: int = 64  # held-out windows (eval split) that score everything
    n_classes: int = 1024  # the probes' classes: the most frequent tokens of the table text
    layer_stride: int = 1  # probe every stride-th hidden state, with the embedding and last
    train_document_stride: int = 1  # train text: every stride-th document (1: all)
    # The control (CLAIMS.md v2): the same probes on i.i.d. uniform draws of
    # control_tokens token ids, where nothing about t + k is knowable (chance =
    # 1 / control_tokens). Windows of control_len tokens: fit, validation, held-out, table.
    control_tokens: int = 256
    control_len: int = 64
    control_windows: tuple[int, int, int, int] = (24, 8, 24, 400)
    seed: int = VERDICT_SEED

    @classmethod
    def full(cls) -> FutureProbeConfig:
        return cls()

    @classmethod
    def quick(cls) -> FutureProbeConfig:
        """A smoke run: a quarter of the documents for the train text, every third layer."""
        return cls(
            seq_len=64,
            n_fit=12,
            n_val=6,
            n_eval=12,
            n_classes=512,
            layer_stride=3,
            train_document_stride=4,
            control_len=32,
            control_windows=(12, 6, 12, 200),
        )

    def layers(self, n_states: int) -> tuple[int, ...]:
        """Every ``layer_stride``-th hidden state, always with the embedding and the last."""
        return tuple(sorted({*range(0, n_states, self.layer_stride), n_states - 1}))


@dataclass
class FutureProbeResult:
    config: FutureProbeConfig
    probes: LookaheadResult
    baseline_windows: int  # train windows the baselines were counted on
    control: LookaheadResult | None = None  # the same on i.i.d. random tokens

    def control_dict(self) -> dict:
        """Per k: the validation-chosen probe's held-out accuracy and its difference from
        the strongest baseline on random tokens, and chance (1 / control_tokens)."""
        if self.control is None:
            return {}
        return {
            "chance": 1.0 / self.config.control_tokens,
            "per_k": {
                str(k): {
                    **self.control.selected[k],
                    "probe": self.control.selected_accuracy(k).to_dict(),
                    "difference": self.control.selected_difference(k).to_dict(),
                }
                for k in self.control.offsets
            },
        }

    def to_dict(self) -> dict:
        return {
            **self.probes.to_dict(),
            "baseline_windows": self.baseline_windows,
            "control": self.control_dict(),
        }

    def write(self, out: Path, label: str = "") -> list[Path]:
        """``lookahead.json`` and ``accuracy_by_layer.png`` (with its JSON) in ``out``."""
        from myopia.lookahead.plots import plot_lookahead  # matplotlib only when writing

        out = Path(out)
        curves = self.probes.curves()
        data = atomic_write_json(
            out / "lookahead.json",
            {"model": label, "config": self.config, **self.to_dict(), "curves": curves},
        )
        title = f"{label}: held-out top-1 accuracy of the token at t + k from the state at t"
        plot = plot_lookahead(self.probes, curves, out / "accuracy_by_layer.png", title)
        return [data, plot, plot.with_suffix(".json")]


def split_windows(
    documents: list[Document], tokenizer, config: FutureProbeConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(fit, validation, baseline-table) windows of the train split, held-out windows of
    the eval split, each ``(N, seq_len)``."""
    train_documents = documents[:: config.train_document_stride]
    train = token_windows(train_documents, tokenizer, config.seq_len, "train")
    n_probe = config.n_fit + config.n_val
    if len(train) <= n_probe:
        raise MyopiaError(
            f"the train split has only {len(train)} windows of {config.seq_len} tokens; "
            f"C5 needs more than {n_probe}: give more text"
        )
    order = np.random.default_rng(config.seed).permutation(len(train))
    fit = train[order[: config.n_fit]]
    val = train[order[config.n_fit : n_probe]]
    table = train[np.sort(order[n_probe:])]
    held_out = token_chunks(documents, tokenizer, config.seq_len, config.n_eval, seed=config.seed)
    return fit, val, table, held_out


def measure(
    model: nn.Module,
    tokenizer,
    config: FutureProbeConfig,
    documents: list[Document],
    show_progress: bool = False,
    control: bool = True,
) -> FutureProbeResult:
    """C5: future-token probes of ``model`` on windows of ``documents`` (module docstring);
    ``control``: also on i.i.d. random tokens (the verdict's control)."""
    n_states = model.config.num_hidden_layers + 1
    probe_config = LookaheadConfig(
        n_classes=config.n_classes, layers=config.layers(n_states), seed=config.seed
    )
    fit, val, table, held_out = split_windows(documents, tokenizer, config)
    probes = measure_lookahead(
        model, fit, val, held_out, table, probe_config, show_progress=show_progress
    )
    random = random_token_control(model, config, probe_config, show_progress) if control else None
    return FutureProbeResult(config, probes, len(table), random)


def random_token_control(
    model: nn.Module,
    config: FutureProbeConfig,
    probe_config: LookaheadConfig,
    show_progress: bool = False,
) -> LookaheadResult:
    """The probes and baselines on i.i.d. uniform draws of ``config.control_tokens`` token
    ids (fit, validation, held-out and table windows all fresh): every one must be at
    chance, 1 / control_tokens."""
    vocab = unembedding(model)[0].shape[0]
    rng = np.random.default_rng(config.seed + 1)
    ids = torch.from_numpy(rng.choice(vocab, size=config.control_tokens, replace=False))
    windows = [
        ids[torch.from_numpy(rng.integers(0, config.control_tokens, (n, config.control_len)))]
        for n in config.control_windows
    ]
    fit, val, held_out, table = windows
    control_config = replace(probe_config, n_classes=config.control_tokens)
    return measure_lookahead(
        model, fit, val, held_out, table, control_config, show_progress=show_progress
    )
