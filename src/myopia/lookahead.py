"""Future-token probes: how well a linear read-out of the hidden state at position t
names the token at t + k, layer by layer, against what token t alone predicts.

>>> model, tokenizer = load_model("smollm2")                            # doctest: +SKIP
>>> train = token_windows(load_corpus(), tokenizer, 128, "train")        # doctest: +SKIP
>>> order = np.random.default_rng(0).permutation(len(train))             # doctest: +SKIP
>>> fit, val, table = (train[order[:64]], train[order[64:88]],
...                    train[np.sort(order[88:])])                       # doctest: +SKIP
>>> held_out = token_chunks(load_corpus(), tokenizer, 128, 64)          # doctest: +SKIP
>>> result = measure_lookahead(model, fit, val, held_out, table)        # doctest: +SKIP
>>> result.selected[2], result.selected_difference(2).text()            # doctest: +SKIP
({'family': 'residual', 'layer': 19, 'baseline': 'bigram'}, '+0.014 (95% CI [+0.009, +0.018])')

The parts, each usable on its own:

- ``collect_states``: every hidden state of a model (``output_hidden_states``; layer 0 is
  the embedding output, the last is the final-norm output the unembedding reads), for a
  batch of token windows, as a ``StateSet``.
- ``NgramTables``: the baselines, counted on text the probes never see. The unigram
  baseline predicts the most frequent token; the bigram baseline at offset k predicts,
  for each value of token t, the token most often found k positions later (ties go to
  the more frequent token; a value never seen falls back to the unigram prediction).
  Pairs are counted within windows, so none spans two windows or two documents. Two
  references that do not vote: the trigram (the most frequent x_{t+k} after the pair
  x_{t-1}, x_t, backing off to the bigram), and "model-chain" (the model's own top-1 next
  token, then the bigram table for the remaining k - 1 steps).
- Two families of linear probes, both fitted in closed form (ridge regression, the
  penalty chosen per layer and offset by generalised cross-validation on the fitting
  positions alone), both linear in the hidden state and scored by top-1 accuracy over
  the ``n_classes`` most frequent tokens of the table text:

  * ``"residual"``: ``scores_c = p_k(c | x_t) + w_c · h_t + b_c``, where ``p_k`` is the
    bigram table's smoothed distribution of token t + k given token t, and ``w`` is fitted
    to the residual ``onehot(x_{t+k}) - p_k(· | x_t)``. With ``w = 0`` it is the bigram
    baseline (over the classes), so it measures what the hidden state adds to token t.
    A probe without the table must relearn a 49152-row bigram table from a few thousand
    positions, and loses to the baseline for want of data rather than information (pilot
    on SmolLM2, train-split windows only: a plain ridge probe on the last layer named the
    next token 24% of the time, the bigram table 25%, the model itself 31%).
  * ``"lens"``: a linear map from h_t (layer l) to the final hidden state at t + k - 1,
    decoded with the model's own unembedding (Future Lens's "linear model approximation",
    Pal et al. 2023). At k = 1 from the last layer it is the model's own prediction, the
    sanity check; it borrows the unembedding's knowledge of the vocabulary instead of
    learning one.

  A target outside the classes counts as wrong for the probes; the baselines predict
  over the whole vocabulary (so the probes carry that handicap alone).

- ``measure_lookahead`` / ``probe_states``: fit on the fit windows, choose on the
  validation windows, score on the held-out windows, and keep per-sequence accuracies.

Multiple comparisons (fixed before measuring): the verdict's probe is chosen on the
validation windows (train text, disjoint from the fit windows), as the (family, layer)
with the highest validation accuracy at each k; the baseline it must beat is the better
of unigram and bigram on the same windows. Only that one probe is scored against that
one baseline on the held-out text for the verdict, so there is one comparison per k, and
the rule reads only k = 2. The per-layer held-out curves are shown for description; their
maximum over layers is biased upward and decides nothing. The design itself (the two
families, ``n_classes``, the penalty grid) was settled in pilot runs on train-split
windows only; the eval split was first scored with it fixed.

Confidence intervals: percentile bootstrap over held-out *sequences* (windows), not
positions, since positions of one window share their context. Every window has the same
number of scored positions, so the mean of per-window accuracies is the pooled accuracy.
Differences are paired: probe and baseline resampled on the same windows.

Scored positions are t = ``first_position`` .. T - 1 - max(k) of each window, the same
positions for every k. Position 0 is left out: windows start mid-text without a BOS
token, and in many models position 0 carries outsized activations (an attention sink)
that would dominate the standardisation of the features.

Cost: everything after the forward passes is closed-form linear algebra in float32
(one Gram matrix and eigendecomposition per layer, one cross-product and one scoring
product per layer, offset and family), so all layers fit in a CPU budget.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sparse
import torch
from torch import nn

from myopia.progress import track
from myopia.stats import Interval, bootstrap_ci

__all__ = [
    "BASELINES",
    "FAMILIES",
    "LookaheadConfig",
    "LookaheadResult",
    "NgramTables",
    "REFERENCES",
    "StateSet",
    "bootstrap_intervals",
    "collect_states",
    "measure_lookahead",
    "probe_states",
]

FAMILIES = ("residual", "lens")
BASELINES = ("unigram", "bigram")  # the ones a probe must beat: token t alone
# Descriptive references that do not vote: tokens t - 1 and t together (does the probe
# know more than a two-token context?), and the model's own next token followed by the
# bigram table (does it know more than the model's next-token guess?).
REFERENCES = ("trigram", "model-chain")


@dataclass(frozen=True)
class LookaheadConfig:
    """How the probes are built and scored (the data sizes are the caller's)."""

    offsets: tuple[int, ...] = (1, 2, 3)
    n_classes: int = 1024  # the most frequent tokens of the table text
    families: tuple[str, ...] = FAMILIES
    layers: tuple[int, ...] | None = None  # hidden-state indices; None: all (0 = embeddings)
    first_position: int = 1
    lambdas: tuple[float, ...] = tuple(float(x) for x in np.logspace(-4, 3, 15))
    smoothing: float = 1.0  # bigram probabilities: (count + s * unigram) / (total + s)
    batch_size: int = 8
    level: float = 0.95
    n_resamples: int = 2000
    seed: int = 0

    def __post_init__(self):
        if not self.offsets or min(self.offsets) < 1:
            raise ValueError(f"offsets must be positive, got {self.offsets}")
        if unknown := set(self.families) - set(FAMILIES):
            raise ValueError(f"unknown probe families {sorted(unknown)}: use {FAMILIES}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {self.n_classes}")
        if self.first_position < 0:
            raise ValueError(f"first_position must be >= 0, got {self.first_position}")


@dataclass
class StateSet:
    """Token windows and what the model computed on them."""

    tokens: torch.Tensor  # (N, T) long
    hidden: torch.Tensor  # (L, N, T, d) float32: the probed layers, in ``layers`` order
    final: torch.Tensor  # (N, T, d) float32: the state the unembedding reads
    layers: list[int]  # hidden-state index of each entry of ``hidden``
    predicted: torch.Tensor | None = None  # (N, T) long: the model's own top-1 next token

    def __post_init__(self):
        n, t = self.tokens.shape
        if self.hidden.shape[1:3] != (n, t) or self.final.shape[:2] != (n, t):
            raise ValueError(
                f"hidden {tuple(self.hidden.shape)} and final {tuple(self.final.shape)} "
                f"do not match tokens {(n, t)}"
            )
        if len(self.layers) != self.hidden.shape[0]:
            raise ValueError(f"{len(self.layers)} layer indices for {self.hidden.shape[0]}")


def unembedding(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The model's output embedding as ``(weight (V, d), bias (V,) or None)``."""
    head = model.get_output_embeddings()
    bias = getattr(head, "bias", None)
    return head.weight.detach().float(), None if bias is None else bias.detach().float()


def collect_states(
    model: nn.Module,
    tokens: torch.Tensor,
    *,
    layers: tuple[int, ...] | None = None,
    batch_size: int = 8,
    predictions: bool = False,
    show_progress: bool = False,
    description: str = "hidden states",
) -> StateSet:
    """Run ``model`` on ``tokens`` (N, T) and keep the hidden states of ``layers`` (indices
    into ``output_hidden_states``; None: all) and the final one. ``predictions=True``
    also keeps the model's own top-1 next token at every position, decided from the final
    state and the unembedding exactly as the model's logits are."""
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be (N, T), got shape {tuple(tokens.shape)}")
    keep_one = {}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        keep_one = {"logits_to_keep": 1}  # the logits are recomputed below, cheaper
    device = next(model.parameters()).device
    hidden, final = [], []
    starts = range(0, len(tokens), batch_size)
    with torch.inference_mode():
        for start in track(starts, description, total=len(starts), enabled=show_progress):
            batch = tokens[start : start + batch_size].to(device)  # (B, T)
            out = model(input_ids=batch, output_hidden_states=True, use_cache=False, **keep_one)
            states = out.hidden_states  # n_layers + 1 tensors of (B, T, d)
            chosen = range(len(states)) if layers is None else layers
            hidden.append(torch.stack([states[i].float().cpu() for i in chosen]))  # (L, B, T, d)
            final.append(states[-1].float().cpu())  # (B, T, d)
    n_states = len(states)
    chosen = list(range(n_states)) if layers is None else [i % n_states for i in layers]
    final_t = torch.cat(final)  # (N, T, d)
    predicted = None
    if predictions:
        weight, bias = unembedding(model)
        flat = final_t.reshape(-1, final_t.shape[-1])  # (N*T, d)
        predicted = _top1(flat, weight.cpu().T, None if bias is None else bias.cpu())
        predicted = predicted.view(final_t.shape[:2])
    return StateSet(tokens.cpu(), torch.cat(hidden, dim=1), final_t, chosen, predicted)


@dataclass
class NgramTables:
    """Unigram and offset-k bigram counts of a text, and the baselines they give."""

    vocab_size: int
    unigram_counts: np.ndarray  # (V,) int64
    pair_counts: dict[int, sparse.csr_matrix]  # k -> (V, V): count of (x_t, x_{t+k})
    smoothing: float = 1.0
    # k -> (sorted keys x_{t-1} * V + x_t, the most frequent x_{t+k} after each key)
    triple_modes: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    _modes: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def count(
        cls, windows: torch.Tensor, vocab_size: int, offsets: tuple[int, ...], smoothing=1.0
    ) -> NgramTables:
        """Count ``windows`` (N, T) of token ids below ``vocab_size``."""
        ids = windows.cpu().numpy().astype(np.int64)
        if ids.size == 0:
            raise ValueError("the table text is empty")
        if ids.min() < 0 or ids.max() >= vocab_size:
            raise ValueError(f"token ids must lie in [0, {vocab_size})")
        unigram = np.bincount(ids.ravel(), minlength=vocab_size)
        pairs = {}
        for k in offsets:
            if k >= ids.shape[1]:
                raise ValueError(f"offset {k} does not fit in windows of {ids.shape[1]} tokens")
            a, b = ids[:, :-k].ravel(), ids[:, k:].ravel()
            matrix = sparse.csr_matrix(
                (np.ones(a.size, dtype=np.int64), (a, b)), shape=(vocab_size, vocab_size)
            )
            matrix.sum_duplicates()
            pairs[k] = matrix
        tables = cls(vocab_size, unigram, pairs, smoothing)
        for k in offsets:
            if k + 1 < ids.shape[1]:
                tables.triple_modes[k] = tables._count_triples(ids, k)
        return tables

    def _count_triples(self, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        v = self.vocab_size
        before, now, later = ids[:, : -k - 1], ids[:, 1:-k], ids[:, k + 1 :]  # (N, T - k - 1)
        key = before.ravel() * v + now.ravel()
        triples, count = np.unique(key * v + later.ravel(), return_counts=True)
        key, later = triples // v, triples % v
        # Per key: highest count, then the more frequent token, then the lower id.
        order = np.lexsort((later, -self.unigram_counts[later], -count, key))
        key, later = key[order], later[order]
        first = np.r_[True, key[1:] != key[:-1]]
        return key[first], later[first]

    @property
    def unigram_prediction(self) -> int:
        """The most frequent token (ties: the lowest id)."""
        return int(np.argmax(self.unigram_counts))

    def top_classes(self, n: int) -> np.ndarray:
        """The ``n`` most frequent token ids, most frequent first (ties: lower id first)."""
        order = np.lexsort((np.arange(self.vocab_size), -self.unigram_counts))
        return order[: min(n, self.vocab_size)]

    def bigram_mode(self, k: int) -> np.ndarray:
        """(V,) the bigram prediction at offset ``k`` for every value of token t."""
        if k not in self._modes:
            coo = self.pair_counts[k].tocoo()
            src, dst, count = coo.row, coo.col, coo.data
            # Per source: highest count, then the more frequent token, then the lower id.
            order = np.lexsort((dst, -self.unigram_counts[dst], -count, src))
            src_sorted = src[order]
            first = np.r_[True, src_sorted[1:] != src_sorted[:-1]] if src.size else []
            mode = np.full(self.vocab_size, self.unigram_prediction, dtype=np.int64)
            mode[src_sorted[first]] = dst[order][first]
            self._modes[k] = mode
        return self._modes[k]

    def bigram_predictions(self, current: np.ndarray, k: int) -> np.ndarray:
        return self.bigram_mode(k)[current]

    def trigram_predictions(self, before: np.ndarray, current: np.ndarray, k: int):
        """The most frequent x_{t+k} after the pair (x_{t-1}, x_t); the bigram prediction
        for a pair the table text never shows."""
        keys, modes = self.triple_modes[k]
        query = before.astype(np.int64) * self.vocab_size + current
        at = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
        seen = keys[at] == query if len(keys) else np.zeros(len(query), dtype=bool)
        return np.where(seen, modes[at] if len(keys) else 0, self.bigram_predictions(current, k))

    def bigram_probabilities(self, current: np.ndarray, k: int, classes: np.ndarray):
        """``p_k(c | x_t)`` for the tokens ``current`` (n,) and ``classes`` (K,), smoothed
        towards the unigram distribution: (n, K) float32."""
        unigram = self.unigram_counts[classes] / self.unigram_counts.sum()  # (K,)
        rows = self.pair_counts[k][current][:, classes].toarray()  # (n, K)
        totals = np.asarray(self.pair_counts[k][current].sum(axis=1)).ravel()  # (n,)
        s = self.smoothing
        return ((rows + s * unigram) / (totals + s)[:, None]).astype(np.float32)


def _top1(
    features: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """argmax over columns of ``features (n, d) @ weight (d, m) + bias (m,) + offset (n, m)``,
    in float32, a block of rows at a time so that the scores stay small in memory."""
    n, m = features.shape[0], weight.shape[1]
    chunk = max(64, min(8192, 2**24 // max(m, 1)))
    winners = torch.empty(n, dtype=torch.long)
    for start in range(0, n, chunk):
        scores = features[start : start + chunk] @ weight  # (c, m)
        if bias is not None:
            scores += bias
        if offset is not None:
            scores += offset[start : start + chunk]
        winners[start : start + chunk] = scores.argmax(1)
    return winners


@dataclass
class _Design:
    """The fitting positions of one layer: standardised features and their spectrum."""

    mean: torch.Tensor  # (d,)
    scale: torch.Tensor  # (d,)
    x: torch.Tensor  # (n, d) standardised, float32
    eigvals: torch.Tensor  # (d,) float64, of the correlation matrix
    eigvecs: torch.Tensor  # (d, d) float64

    @classmethod
    def of(cls, features: torch.Tensor) -> _Design:
        mean = features.double().mean(0)
        centred = features - mean.float()  # (n, d)
        scale = centred.std(0)
        scale = torch.where(scale > 1e-8 * max(float(scale.max()), 1e-30), scale, 1.0)
        x = centred / scale
        gram = (x.T @ x).double() / len(x)  # (d, d) correlation matrix
        eigvals, eigvecs = torch.linalg.eigh(gram)
        return cls(mean.float(), scale, x, eigvals.clamp_min(0.0), eigvecs)

    def solve(
        self, cross: torch.Tensor, target_var: float, lambdas: tuple[float, ...]
    ) -> tuple[torch.Tensor, float]:
        """Ridge weights (d, m) on the standardised features, the penalty chosen by
        generalised cross-validation. ``cross`` = x̃ᵀ z / n (d, m) and ``target_var`` =
        mean over positions of |z - z̄|² for the centred targets z."""
        n = len(self.x)
        s = self.eigvals  # (d,)
        rotated = self.eigvecs.T @ cross.double()  # (d, m)
        alive = s > 1e-10 * max(float(s.max()), 1e-30)
        energy = torch.where(alive, (rotated**2).sum(1) / s.clamp_min(1e-300), 0.0)  # (d,)
        best, best_score = lambdas[0], math.inf
        for lam in lambdas:
            shrink = torch.where(alive, s / (s + lam), 0.0)
            rss = target_var - float(((2 * shrink - shrink**2) * energy).sum())
            dof = float(shrink.sum()) + 1.0  # + the intercept
            score = max(rss, 0.0) / max(1.0 - dof / n, 1e-12) ** 2
            if score < best_score:
                best, best_score = lam, score
        weight = self.eigvecs @ (rotated / (s + best)[:, None])  # (d, m)
        return weight.float(), float(best)

    def to_raw(self, weight: torch.Tensor, target_mean: torch.Tensor):
        """Weight and bias on the raw features: raw @ W + b == standardised @ weight + z̄."""
        raw = weight / self.scale[:, None]  # (d, m)
        return raw, target_mean - self.mean @ raw


@dataclass
class LookaheadResult:
    """Per-sequence held-out accuracies of every probe and baseline, and the choices made
    on the validation windows. Arrays are indexed [layer position, offset position, window]."""

    offsets: list[int]
    layers: list[int]
    families: list[str]
    n_classes: int
    level: float
    n_resamples: int
    seed: int
    probe_eval: dict[str, np.ndarray]  # family -> (L, O, N_eval) accuracy per window
    probe_val: dict[str, np.ndarray]  # family -> (L, O) validation accuracy
    penalty: dict[str, np.ndarray]  # family -> (L, O) the ridge penalty GCV chose
    baseline_eval: dict[str, np.ndarray]  # name -> (O, N_eval)
    baseline_val: dict[str, np.ndarray]  # name -> (O,)
    coverage: np.ndarray  # (O,) share of held-out targets within the classes
    selected: dict[int, dict]  # k -> {"family", "layer", "baseline"}, chosen on validation
    sizes: dict = field(default_factory=dict)

    def _o(self, k: int) -> int:
        return self.offsets.index(k)

    def accuracy(self, family: str, layer: int, k: int) -> np.ndarray:
        return self.probe_eval[family][self.layers.index(layer), self._o(k)]

    def _interval(self, values: np.ndarray) -> Interval:
        rows = bootstrap_intervals(values[None], self.level, self.n_resamples, self.seed)
        return Interval(**rows[0])

    def selected_accuracy(self, k: int) -> Interval:
        """Held-out accuracy of the probe chosen on validation at offset ``k``."""
        chosen = self.selected[k]
        return self._interval(self.accuracy(chosen["family"], chosen["layer"], k))

    def baseline_accuracy(self, name: str, k: int) -> Interval:
        return self._interval(self.baseline_eval[name][self._o(k)])

    def selected_difference(self, k: int) -> Interval:
        """Held-out accuracy of the validation-chosen probe minus the validation-chosen
        baseline at offset ``k``: paired percentile bootstrap over windows."""
        chosen = self.selected[k]
        probe = self.accuracy(chosen["family"], chosen["layer"], k)
        base = self.baseline_eval[chosen["baseline"]][self._o(k)]
        # Bootstrapped in whole positions per window (integers, so equal accuracies differ
        # by exactly 0), then scaled back to a share of positions.
        per_window = self.sizes["positions_per_window"]
        counts = bootstrap_ci(
            np.rint((probe - base) * per_window),
            level=self.level,
            n_resamples=self.n_resamples,
            seed=self.seed,
        )
        return Interval(
            counts.mean / per_window,
            counts.low / per_window,
            counts.high / per_window,
            counts.n,
            counts.level,
        )

    def curves(self) -> dict:
        """Held-out accuracy per family, layer and k with bootstrap intervals (windows
        resampled jointly for all curves), and the baselines: for plots and tables."""
        series = {}
        for family in self.families:
            table = self.probe_eval[family]  # (L, O, N)
            flat = bootstrap_intervals(
                table.reshape(-1, table.shape[-1]), self.level, self.n_resamples, self.seed
            )
            series[family] = {
                str(k): [flat[li * len(self.offsets) + oi] for li in range(len(self.layers))]
                for oi, k in enumerate(self.offsets)
            }
        baselines = {
            name: dict(
                zip(
                    map(str, self.offsets),
                    bootstrap_intervals(values, self.level, self.n_resamples, self.seed),
                    strict=True,
                )
            )
            for name, values in self.baseline_eval.items()
        }
        return {"layers": self.layers, "probes": series, "baselines": baselines}

    def to_dict(self) -> dict:
        return {
            "offsets": self.offsets,
            "layers": self.layers,
            "families": self.families,
            "n_classes": self.n_classes,
            "coverage": dict(zip(map(str, self.offsets), self.coverage.tolist(), strict=True)),
            "selected": {str(k): v for k, v in self.selected.items()},
            "validation": {
                "probes": {f: v.tolist() for f, v in self.probe_val.items()},
                "baselines": {b: v.tolist() for b, v in self.baseline_val.items()},
            },
            "penalty": {f: v.tolist() for f, v in self.penalty.items()},
            "sizes": self.sizes,
            "ci": f"{self.level:.0%} percentile bootstrap over held-out windows "
            f"({self.n_resamples} resamples)",
        }


def bootstrap_intervals(
    values: np.ndarray, level: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> list[dict]:
    """Percentile bootstrap intervals of the mean of each row of ``values`` (m, n), the
    columns (windows) resampled jointly for all rows: ``Interval.to_dict()`` per row.
    The same method as ``myopia.stats.bootstrap_ci``, vectorised for many curves."""
    values = np.asarray(values, dtype=np.float64)
    m, n = values.shape
    means = values.mean(1)
    if n == 1:
        return [Interval(float(v), -math.inf, math.inf, 1, level).to_dict() for v in means]
    draws = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    counts = np.stack([np.bincount(row, minlength=n) for row in draws])  # (R, n)
    replicates = values @ counts.T / n  # (m, R)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha], axis=1)
    return [
        Interval(float(means[i]), float(low[i]), float(high[i]), n, level).to_dict()
        for i in range(m)
    ]


def _positions(seq_len: int, config: LookaheadConfig) -> torch.Tensor:
    last = seq_len - 1 - max(config.offsets)
    if last < config.first_position:
        raise ValueError(
            f"windows of {seq_len} tokens leave no position to score at offsets "
            f"{config.offsets} from position {config.first_position}"
        )
    return torch.arange(config.first_position, last + 1)


def _per_window(correct: torch.Tensor, n_windows: int) -> np.ndarray:
    """(n_windows * P,) booleans -> (n_windows,) accuracy per window."""
    return correct.view(n_windows, -1).double().mean(1).numpy()


def probe_states(
    fit: StateSet,
    val: StateSet,
    held_out: StateSet,
    tables: NgramTables,
    config: LookaheadConfig = LookaheadConfig(),
    unembed: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    show_progress: bool = False,
) -> LookaheadResult:
    """Fit every probe on ``fit``, choose on ``val``, score on ``held_out``.

    ``unembed`` (weight (V, d), bias or None) is needed by the ``"lens"`` family only.
    The three sets must hold the same layers and window length."""
    if not (fit.layers == val.layers == held_out.layers):
        raise ValueError("fit, validation and held-out states must hold the same layers")
    seq_len = fit.tokens.shape[1]
    if val.tokens.shape[1] != seq_len or held_out.tokens.shape[1] != seq_len:
        raise ValueError("fit, validation and held-out windows must have the same length")
    families = list(config.families)
    if "lens" in families and unembed is None:
        raise ValueError("the 'lens' probes need the model's unembedding (unembed=...)")
    positions = _positions(seq_len, config)  # (P,)
    offsets = list(config.offsets)
    classes = tables.top_classes(config.n_classes)  # (K,)
    n_classes = len(classes)
    class_of = torch.full((tables.vocab_size,), n_classes, dtype=torch.long)
    class_of[torch.from_numpy(classes)] = torch.arange(n_classes)  # K: not a class
    classes_t = torch.from_numpy(classes)

    def current(s: StateSet) -> np.ndarray:  # (n,) token t at the scored positions
        return s.tokens[:, positions].reshape(-1).numpy()

    def target(s: StateSet, k: int) -> torch.Tensor:  # (n,) token t + k
        return s.tokens[:, positions + k].reshape(-1)

    def features(s: StateSet, li: int) -> torch.Tensor:  # (n, d)
        return s.hidden[li][:, positions].reshape(-1, s.hidden.shape[-1])

    # The bigram distribution over the classes, for the residual probes: the distinct
    # current tokens of each set, the map position -> distinct token, and per offset the
    # table's rows for them (u, K) and their expansion to positions (n, K).
    sets = {"fit": fit, "val": val, "eval": held_out}
    distinct, tables_at = {}, {}
    if "residual" in families:
        for name, s in sets.items():
            values, inverse = np.unique(current(s), return_inverse=True)
            distinct[name] = torch.from_numpy(inverse.reshape(-1))  # (n,)
            for k in offsets:
                probs = torch.from_numpy(tables.bigram_probabilities(values, k, classes))
                tables_at[name, k] = (probs, probs[distinct[name]])  # (u, K), (n, K)

    # Baselines and the model-chain reference, on validation and held-out windows.
    baseline_val, baseline_eval = {}, {}
    for name in (*BASELINES, *REFERENCES):
        if name == "model-chain" and (val.predicted is None or held_out.predicted is None):
            continue
        if name == "trigram" and config.first_position < 1:
            continue
        per_val, per_eval = [], []
        for k in offsets:
            for s, out in ((val, per_val), (held_out, per_eval)):
                cur = current(s)
                if name == "unigram":
                    guess = np.full_like(cur, tables.unigram_prediction)
                elif name == "bigram":
                    guess = tables.bigram_predictions(cur, k)
                elif name == "trigram":
                    before = s.tokens[:, positions - 1].reshape(-1).numpy()
                    guess = tables.trigram_predictions(before, cur, k)
                else:  # the model's next token at t, then the bigram table for k - 1 more
                    nxt = s.predicted[:, positions].reshape(-1).numpy()
                    guess = nxt if k == 1 else tables.bigram_predictions(nxt, k - 1)
                correct = torch.from_numpy(guess) == target(s, k)
                out.append(_per_window(correct, len(s.tokens)))
        baseline_val[name] = np.array([v.mean() for v in per_val])
        baseline_eval[name] = np.stack(per_eval)

    n_layers, n_offsets = len(fit.layers), len(offsets)
    probe_val = {f: np.zeros((n_layers, n_offsets)) for f in families}
    probe_eval = {f: np.zeros((n_layers, n_offsets, len(held_out.tokens))) for f in families}
    penalty = {f: np.zeros((n_layers, n_offsets)) for f in families}
    if "lens" in families:
        weight_v, bias_v = unembed
        decoder = weight_v[classes_t].T.contiguous()  # (d_final, K)
        decoder_bias = None if bias_v is None else bias_v[classes_t]

    for li in track(range(n_layers), "probes by layer", enabled=show_progress):
        design = _Design.of(features(fit, li))
        n = len(design.x)
        token_sums = None  # (u, d), shared by all offsets
        for oi, k in enumerate(offsets):
            for family in families:
                if family == "residual":
                    probs, per_token = tables_at["fit", k]  # (u, K), (n, K)
                    y = class_of[target(fit, k)]  # (n,) K: outside the classes
                    inside = y < n_classes
                    # x̃ᵀ(Y − P) / n, with Y one-hot and P = per_token: x̃ᵀY by class
                    # sums, x̃ᵀP through the sums of x̃ over the positions of each token.
                    xy = torch.zeros(n_classes, design.x.shape[1])
                    xy.index_add_(0, y[inside], design.x[inside])
                    if token_sums is None:
                        token_sums = torch.zeros(len(probs), design.x.shape[1])
                        token_sums.index_add_(0, distinct["fit"], design.x)  # (u, d)
                    cross = (xy.T - token_sums.T @ probs) / n  # (d, K)
                    p_true = torch.zeros(n)
                    p_true[inside] = per_token[inside].gather(1, y[inside, None])[:, 0]
                    mean_sq = float(
                        (inside.float() - 2 * p_true + (per_token**2).sum(1)).double().mean()
                    )
                    z_mean = torch.bincount(y[inside], minlength=n_classes).float() / n
                    z_mean = z_mean - per_token.mean(0)  # (K,)
                    target_var = mean_sq - float((z_mean.double() ** 2).sum())
                    w, lam = design.solve(cross, target_var, config.lambdas)
                    weight, bias = design.to_raw(w, z_mean)  # (d, K), (K,)
                else:  # lens: the final state at t + k - 1, decoded by the unembedding
                    goal = fit.final[:, positions + k - 1].reshape(n, -1)  # (n, d_final)
                    z_mean = goal.double().mean(0).float()
                    centred = goal - z_mean
                    cross = design.x.T @ centred / n  # (d, d_final)
                    target_var = float((centred.double() ** 2).sum(1).mean())
                    w, lam = design.solve(cross, target_var, config.lambdas)
                    a, a0 = design.to_raw(w, z_mean)  # (d, d_final), (d_final,)
                    weight = a @ decoder  # (d, K)
                    bias = a0 @ decoder if decoder_bias is None else a0 @ decoder + decoder_bias
                penalty[family][li, oi] = lam
                for s, name in ((val, "val"), (held_out, "eval")):
                    offset = tables_at[name, k][1] if family == "residual" else None
                    winner = _top1(features(s, li), weight, bias, offset)
                    correct = classes_t[winner] == target(s, k)
                    per = _per_window(correct, len(s.tokens))
                    if name == "val":
                        probe_val[family][li, oi] = per.mean()
                    else:
                        probe_eval[family][li, oi] = per

    selected = {}
    for oi, k in enumerate(offsets):
        best = max(
            ((f, li) for f in families for li in range(n_layers)),
            key=lambda fl: probe_val[fl[0]][fl[1], oi],
        )
        base = max(BASELINES, key=lambda b: baseline_val[b][oi])
        selected[k] = {"family": best[0], "layer": fit.layers[best[1]], "baseline": base}

    coverage = np.array(
        [float((class_of[target(held_out, k)] < n_classes).double().mean()) for k in offsets]
    )
    return LookaheadResult(
        offsets=offsets,
        layers=list(fit.layers),
        families=families,
        n_classes=n_classes,
        level=config.level,
        n_resamples=config.n_resamples,
        seed=config.seed,
        probe_eval=probe_eval,
        probe_val=probe_val,
        penalty=penalty,
        baseline_eval=baseline_eval,
        baseline_val=baseline_val,
        coverage=coverage,
        selected=selected,
        sizes={
            "fit_windows": len(fit.tokens),
            "validation_windows": len(val.tokens),
            "held_out_windows": len(held_out.tokens),
            "window_tokens": seq_len,
            "positions_per_window": len(positions),
            "first_position": config.first_position,
        },
    )


def measure_lookahead(
    model: nn.Module,
    fit_tokens: torch.Tensor,
    val_tokens: torch.Tensor,
    held_out_tokens: torch.Tensor,
    table_tokens: torch.Tensor,
    config: LookaheadConfig = LookaheadConfig(),
    show_progress: bool = False,
) -> LookaheadResult:
    """Future-token probes of ``model``: hidden states of the three sets of windows
    (N, T), baselines counted on ``table_tokens`` (N', T'), then ``probe_states``.

    For honest numbers the four sets must be disjoint text, and the probes' fit and
    validation windows must come from text the held-out windows do not (the caller's
    job: ``myopia.data.text`` gives train and eval splits)."""
    weight, bias = unembedding(model)
    tables = NgramTables.count(table_tokens, weight.shape[0], config.offsets, config.smoothing)
    states = {}
    for name, tokens, predictions in (
        ("fit", fit_tokens, False),
        ("validation", val_tokens, True),
        ("held-out", held_out_tokens, True),
    ):
        states[name] = collect_states(
            model,
            tokens,
            layers=config.layers,
            batch_size=config.batch_size,
            predictions=predictions,
            show_progress=show_progress,
            description=f"hidden states ({name})",
        )
    return probe_states(
        states["fit"],
        states["validation"],
        states["held-out"],
        tables,
        config,
        unembed=(weight.cpu(), None if bias is None else bias.cpu()),
        show_progress=show_progress,
    )
