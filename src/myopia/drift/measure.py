"""Per-position NLL of natural and self-generated text, and a probe that tells them apart.

Design, fixed before measuring (CLAIMS.md C9):

- **NLL by position**: for every continuation token, -log p under the model that made
  the samples, for the natural continuation and for the model's own, with a 95% t
  interval over prompts at each position. At temperature 1 the expected NLL of the
  model's own samples is its entropy; the natural text's is its cross-entropy. A gap
  that changes with position is drift; one that does not is a constant offset.
- **NLL gap slope**: per prompt, the least-squares slope of the gap (natural −
  generated NLL) against position, with a 95% t interval over prompts: drift that
  accumulates makes the gap change with position; a constant offset has slope 0.
- **Probe**: at k continuation tokens (k in ``lengths``), the mean hidden state over a
  *fixed window* of ``window`` tokens ending at token k (tokens k − window + 1 .. k) at
  a candidate layer is the feature, natural (label 0) or self-generated (label 1). The
  window has the same width at every k, so accuracy can rise with k only if the text at
  k differs more, not because the probe averages more tokens (version 1 averaged all k
  tokens, which rises with k by accumulating evidence alone). The prompts are split
  once, by seed, into train and test halves; both versions of a prompt fall in the same
  half. On the train half, for each k, the layer is chosen by cross-validation grouped
  by prompt (folds never split a prompt's pair), then a standardised, L2-regularised
  logistic regression is fitted on all train prompts and scored on the test prompts.
  Accuracy per test prompt is the mean over its two versions (0, ½ or 1); its 95% CI is
  a percentile bootstrap over test prompts. "Rises with length" is the paired difference
  accuracy(longest k) − accuracy(shortest k) over the same test prompts, bootstrapped
  the same way.
- **Control** (natural vs natural): the same probe, the same split and layer choice, at
  the longest k, asked to tell the natural continuations from the natural continuations
  of a second, disjoint set of windows of the same text (labels that mean nothing). Its
  accuracy must stay at chance (CI containing 0.5), else the probe finds differences
  that are not there (a leak between train and test, overfitting the layer choice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from myopia.data.text import Document, token_chunks
from myopia.drift.pairs import ContinuationPairs, sample_pairs
from myopia.errors import MyopiaError
from myopia.io import atomic_write_json
from myopia.models.loading import logits_kept
from myopia.progress import track
from myopia.protocol import VERDICT_SEED
from myopia.stats import Interval, bootstrap_ci, mean_ci
from myopia.threads import one_blas_thread

PROBE_C = 0.05  # inverse L2 strength, fixed: ~100 train rows against d = 576 features


@dataclass(frozen=True)
class DriftConfig:
    prompt_len: int = 32
    continuation_len: int = 64
    n_prompts: int = 160
    lengths: tuple[int, ...] = (8, 16, 32, 64)  # the probe's window ends at these tokens
    window: int = 8  # tokens the probe's feature averages, ending at token k
    layer_stride: int = 5  # candidate probe layers: every stride-th hidden state, and the last
    cv_folds: int = 3
    seed: int = VERDICT_SEED
    batch_size: int = 16  # sequences per forward pass when reading NLL and states
    # Prompts per sampling batch: each decoding step reads every weight once per batch, so
    # larger batches amortise it (SmolLM2 on 2 cores, 112 prompts x 64 tokens: 52 s in
    # batches of 16, 33 s of 56, 31 s of 112); the cache and the logits of 56 rows are small.
    sample_batch_size: int = 56

    @classmethod
    def full(cls) -> DriftConfig:
        """The report's budget (and ``myopia drift``'s defaults)."""
        # Power (fixed before the verdict run): per-prompt accuracy lies in [0, 1], so its
        # sd <= 0.5 whatever the pilot says; n_for_half_width(0.5, 0.135) = 56 test prompts,
        # so 112 prompts (half held out) give a k = 64 CI of at most ±0.135. Pilot seed 1
        # (after the budget was fixed, unchanged by it): sd 0.24 at k = 64 (±0.063), 0.375
        # for the rise (±0.10).
        return cls(prompt_len=32, continuation_len=64, n_prompts=112)

    @classmethod
    def quick(cls) -> DriftConfig:
        """A smoke run: few prompts, short continuations, two candidate layers."""
        return cls(
            prompt_len=16,
            continuation_len=32,
            n_prompts=16,  # one batch of 16
            lengths=(8, 16, 32),
            layer_stride=10,
        )

    def check(self) -> None:
        if self.window < 1:
            raise MyopiaError(f"the probe window must be at least 1 token, not {self.window}")
        if (
            not self.lengths
            or min(self.lengths) < self.window
            or max(self.lengths) > self.continuation_len
        ):
            raise MyopiaError(
                f"probe lengths {self.lengths} must lie between the window ({self.window}) "
                f"and the continuation length {self.continuation_len}"
            )
        if self.n_prompts < 4 * self.cv_folds:
            raise MyopiaError(
                f"{self.n_prompts} prompts are too few for a train/test split with "
                f"{self.cv_folds}-fold cross-validation: use at least {4 * self.cv_folds}"
            )


@dataclass
class DriftResult:
    config: DriftConfig
    nll_natural: np.ndarray  # (N, L) per continuation token
    nll_generated: np.ndarray  # (N, L)
    accuracy: dict[int, Interval]  # held-out probe accuracy after k generated tokens
    layer: dict[int, int]  # the probe layer chosen on the train prompts, per k
    cv_accuracy: dict[int, dict[int, float]]  # k -> layer -> train cross-validated accuracy
    rise: Interval  # accuracy(longest k) - accuracy(shortest k), paired over test prompts
    n_train: int
    n_test: int
    control: Interval | None = None  # natural vs natural at the longest k: chance expected
    control_layer: int | None = None
    per_prompt_accuracy: dict[int, np.ndarray] = field(repr=False, default_factory=dict)

    def nll_by_position(self) -> dict[str, list[dict]]:
        """Mean NLL per continuation position with 95% t intervals over prompts."""
        return {
            name: [mean_ci(values[:, j]).to_dict() for j in range(values.shape[1])]
            for name, values in (("natural", self.nll_natural), ("generated", self.nll_generated))
        }

    def gap_slope(self) -> Interval:
        """Per-prompt least-squares slope of the NLL gap (natural − generated) against
        position, in nats per token, with a 95% t interval over prompts."""
        gap = self.nll_natural - self.nll_generated  # (N, L)
        position = np.arange(gap.shape[1], dtype=np.float64)
        centred = position - position.mean()
        slopes = (gap - gap.mean(1, keepdims=True)) @ centred / (centred @ centred)  # (N,)
        return mean_ci(slopes)

    def gap_quarters(self) -> tuple[Interval, Interval]:
        """Mean NLL gap over the first and the last quarter of positions."""
        gap = self.nll_natural - self.nll_generated  # (N, L)
        quarter = max(1, gap.shape[1] // 4)
        return mean_ci(gap[:, :quarter].mean(1)), mean_ci(gap[:, -quarter:].mean(1))

    def to_dict(self) -> dict:
        gap = self.nll_natural - self.nll_generated  # (N, L)
        first, last = self.gap_quarters()
        return {
            "config": self.config,
            "accuracy": {str(k): v.to_dict() for k, v in self.accuracy.items()},
            "layer": {str(k): v for k, v in self.layer.items()},
            "cv_accuracy": {
                str(k): {str(layer): acc for layer, acc in by_layer.items()}
                for k, by_layer in self.cv_accuracy.items()
            },
            "rise": self.rise.to_dict(),
            "nll_by_position": self.nll_by_position(),
            "mean_nll": {
                "natural": mean_ci(self.nll_natural.mean(axis=1)).to_dict(),
                "generated": mean_ci(self.nll_generated.mean(axis=1)).to_dict(),
                "natural_minus_generated": mean_ci(gap.mean(axis=1)).to_dict(),
            },
            "nll_gap_slope_per_token": self.gap_slope().to_dict(),
            "nll_gap_first_quarter": first.to_dict(),
            "nll_gap_last_quarter": last.to_dict(),
            "control": {
                "what": "natural vs natural continuations (other windows of the same text)",
                "k": max(self.accuracy),
                "accuracy": None if self.control is None else self.control.to_dict(),
                "layer": self.control_layer,
            },
            "n_train_prompts": self.n_train,
            "n_test_prompts": self.n_test,
        }

    def write(self, out: Path, label: str = "") -> list[Path]:
        """``drift.json`` and the NLL-by-position and probe-accuracy plots (each with its
        JSON) in ``out``; ``label`` names the model in the JSON and the titles."""
        from myopia.drift.plots import plot_nll_by_position, plot_probe_accuracy

        out = Path(out)
        return [
            atomic_write_json(out / "drift.json", {"model": label, **self.to_dict()}),
            plot_nll_by_position(self, out / "nll_by_position.png", label),
            plot_probe_accuracy(self, out / "probe_accuracy.png", label),
        ]


def candidate_layers(n_states: int, stride: int) -> tuple[int, ...]:
    """Every ``stride``-th hidden state after the embeddings, and the last one."""
    return tuple(sorted({*range(stride, n_states, stride), n_states - 1}))


@torch.no_grad()
def nll_and_states(
    model,
    sequences: torch.Tensor,
    prompt_len: int,
    positions: list[int],
    layers,
    batch_size,
    window: int,
    with_nll: bool = True,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Per-token NLL of the continuation, ``(N, L)`` (None if not ``with_nll``), and for
    each continuation position p in ``positions`` (0 = first continuation token) the mean
    hidden state over the ``window`` continuation tokens p − window + 1 .. p, at each of
    ``layers``: ``(N, len(layers), len(positions), d)``."""
    if min(positions) < window - 1:
        raise MyopiaError(f"a window of {window} tokens needs positions >= {window - 1}")
    device = next(model.parameters()).device
    continuation_len = sequences.shape[1] - prompt_len
    # The unembedding is a fifth of SmolLM2's forward pass: apply it only where the NLL
    # needs it (the continuation's L tokens are predicted at the last L + 1 positions but
    # one), or at one position when only the states are read.
    keep = logits_kept(model, continuation_len + 1 if with_nll else 1)
    nll, states = [], []
    end = torch.tensor(positions, device=device)
    for batch in sequences.split(batch_size):
        batch = batch.to(device)
        out = model(input_ids=batch, output_hidden_states=True, **keep)
        if with_nll:
            logits = out.logits[:, -continuation_len - 1 : -1].float()  # (b, L, V)
            targets = batch[:, prompt_len:]  # (b, L)
            token_nll = -torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
            nll.append(token_nll.cpu())
        pooled = []
        for layer in layers:
            continuation = out.hidden_states[layer][:, prompt_len:].float()  # (b, L, d)
            # Prefix sums with a zero row in front: sum of tokens a..p = total[p+1] - total[a].
            total = torch.nn.functional.pad(continuation.cumsum(1), (0, 0, 1, 0))  # (b, L+1, d)
            window_sum = total[:, end + 1] - total[:, end + 1 - window]  # (b, n_pos, d)
            pooled.append(window_sum / window)
        states.append(torch.stack(pooled, dim=1).cpu())  # (b, n_layers, n_pos, d)
    return (torch.cat(nll).numpy() if with_nll else None), torch.cat(states).numpy()


def _probe():
    return make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=2000))


@one_blas_thread
def probe_accuracy(
    natural: np.ndarray, generated: np.ndarray, train: np.ndarray, test: np.ndarray, folds: int
) -> tuple[int, dict[int, float], np.ndarray]:
    """Choose a layer on the train prompts, fit there, score the test prompts.

    ``natural``/``generated`` are ``(N, n_layers, d)`` states at one position. Returns the
    chosen layer index (into the layers axis), the cross-validated accuracy of each, and
    the held-out accuracy per test prompt (mean over its two versions)."""
    groups = np.concatenate([train, train])
    labels = np.r_[np.zeros(len(train)), np.ones(len(train))]
    cv = {}
    for j in range(natural.shape[1]):
        features = np.concatenate([natural[train, j], generated[train, j]])
        scores = cross_val_score(
            _probe(), features, labels, groups=groups, cv=GroupKFold(n_splits=folds)
        )
        cv[j] = float(scores.mean())
    best = max(cv, key=cv.get)
    probe = _probe().fit(np.concatenate([natural[train, best], generated[train, best]]), labels)
    correct_natural = probe.predict(natural[test, best]) == 0
    correct_generated = probe.predict(generated[test, best]) == 1
    return best, cv, (correct_natural.astype(float) + correct_generated) / 2


def measure_drift(
    model,
    windows: torch.Tensor,
    config: DriftConfig,
    show_progress: bool = False,
    control_windows: torch.Tensor | None = None,
) -> DriftResult:
    """``windows``: ``(N, prompt_len + continuation_len)`` token ids of natural text;
    ``control_windows``: N other windows of the same text for the natural-vs-natural
    control (None: no control is run)."""
    config.check()
    for name, rows in (("windows", windows), ("control windows", control_windows)):
        if rows is not None and rows.shape[1] != config.prompt_len + config.continuation_len:
            raise MyopiaError(
                f"{name} have {rows.shape[1]} tokens; the config asks for "
                f"{config.prompt_len} + {config.continuation_len}"
            )
    if control_windows is not None and len(control_windows) != len(windows):
        raise MyopiaError("the control needs as many windows as the measurement")
    pairs: ContinuationPairs = sample_pairs(
        model, windows, config.prompt_len, config.seed, config.sample_batch_size, show_progress
    )
    n_states = model.config.num_hidden_layers + 1
    layers = candidate_layers(n_states, config.layer_stride)
    positions = [k - 1 for k in config.lengths]
    texts = [("natural", pairs.natural), ("generated", pairs.generated)]
    if control_windows is not None:
        texts.append(("other natural", control_windows))
    measured = {}
    for name, sequences in track(texts, "reading states", total=len(texts), enabled=show_progress):
        measured[name] = nll_and_states(
            model,
            sequences,
            config.prompt_len,
            positions,
            layers,
            config.batch_size,
            config.window,
            with_nll=name != "other natural",  # the control compares states only
        )

    n = len(windows)
    order = np.random.default_rng(config.seed).permutation(n)
    train, test = np.sort(order[: n // 2]), np.sort(order[n // 2 :])
    accuracy, chosen, cv_accuracy, per_prompt = {}, {}, {}, {}
    for i, k in enumerate(config.lengths):
        best, cv, correct = probe_accuracy(
            measured["natural"][1][:, :, i],
            measured["generated"][1][:, :, i],
            train,
            test,
            config.cv_folds,
        )
        chosen[k] = layers[best]
        cv_accuracy[k] = {layers[j]: acc for j, acc in cv.items()}
        per_prompt[k] = correct
        accuracy[k] = bootstrap_ci(correct, seed=config.seed)
    shortest, longest = min(config.lengths), max(config.lengths)
    rise = bootstrap_ci(per_prompt[longest] - per_prompt[shortest], seed=config.seed)
    control = control_layer = None
    if control_windows is not None:
        best, _, correct = probe_accuracy(
            measured["natural"][1][:, :, -1],
            measured["other natural"][1][:, :, -1],
            train,
            test,
            config.cv_folds,
        )
        control, control_layer = bootstrap_ci(correct, seed=config.seed), layers[best]
    return DriftResult(
        config=config,
        nll_natural=measured["natural"][0],
        nll_generated=measured["generated"][0],
        accuracy=accuracy,
        layer=chosen,
        cv_accuracy=cv_accuracy,
        rise=rise,
        n_train=len(train),
        n_test=len(test),
        control=control,
        control_layer=control_layer,
        per_prompt_accuracy=per_prompt,
    )


def measure(
    model, tokenizer, config: DriftConfig, documents: list[Document], show_progress: bool = False
) -> DriftResult:
    """C9's measurement: ``2 × config.n_prompts`` non-overlapping windows of the documents'
    eval split (drawn by ``config.seed``): the first ``n_prompts`` are continued by the text
    and by the model, the others are the natural-vs-natural control's second text; see the
    module docstring."""
    config.check()
    drawn = token_chunks(
        documents,
        tokenizer,
        config.prompt_len + config.continuation_len,
        2 * config.n_prompts,
        seed=config.seed,
    )
    windows, control = drawn[: config.n_prompts], drawn[config.n_prompts :]
    return measure_drift(
        model, windows, config, show_progress=show_progress, control_windows=control
    )
