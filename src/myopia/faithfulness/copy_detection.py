"""C6 end to end: ask for quotes, label them, read features, fit and score detectors.

``detect_copy`` runs, for any loaded model and any list of ``QuoteRequest``:

0. requests whose prompt + ``max_new_tokens`` exceed the model's context are dropped
   (``fit_to_context``; the result says how many and why), the rest go on;
1. greedy generation of each quote (``myopia.generation``), stopped at the closing quote
   mark, a line break or ``max_new_tokens``;
2. labels by exact and by fuzzy match against the context (``span_match``); quotes too
   short to label are dropped;
3. one forward pass over prompt + quote per labelled request (``lookback``): lookback
   ratio per head, mean residual state per layer, length, mean log probability;
4. the detectors and baselines of ``copy_detector`` on the exact labels (the verdict's;
   with the shuffled-label control and the AUROC per request type) and on the fuzzy
   labels (reported);
5. which heads carry the signal: each head's lookback ratio as a detector on its own
   (AUROC - 0.5 over all labelled requests: description, not held out), against the
   induction heads ``myopia.heads.detect_heads`` finds on repeated random tokens.

``generations`` may be passed instead of step 1 (quotes decided elsewhere, e.g. a test's
planted copies); their token ids are then read as the model's continuation.

``measure`` is C6 as the report and ``myopia detect-copy`` run it: the requests made from
the eval split of a text (or given), then ``detect_copy``; ``CopyDetectionConfig.full()``
and ``quick()`` are the report's budgets.

>>> result = measure(model, tokenizer, CopyDetectionConfig.full(), documents)  # doctest: +SKIP
>>> result.exact.lookback.text(".3f")                                          # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from myopia.data.text import Document, split_text
from myopia.errors import MyopiaError
from myopia.faithfulness.copy_detector import (
    SHUFFLES,
    DetectorOutcome,
    auroc,
    evaluate_detectors,
)
from myopia.faithfulness.lookback import shared_span_features
from myopia.faithfulness.quote_data import QuoteRequest, make_quote_requests, quote_prompt
from myopia.faithfulness.span_match import (
    COPIED,
    HALLUCINATED,
    MIN_WORDS,
    QuoteLabel,
    label_quote,
)
from myopia.generation import Continuation, DecodeOptions, SamplingSettings, generate
from myopia.generation.decode import prompt_ids
from myopia.heads import detect_heads, repeated_random_tokens
from myopia.io import atomic_write_json, save_figure
from myopia.jobs import Pool
from myopia.models.loading import context_length
from myopia.plots import plt  # the one place that picks the file-only backend
from myopia.protocol import VERDICT_SEED

__all__ = [
    "CopyDetectionConfig",
    "CopyDetectionResult",
    "ContextFit",
    "NothingFits",
    "detect_copy",
    "fit_to_context",
    "measure",
    "plot_detector_aurocs",
    "plot_head_signal",
]

STOP = ('"', "\n")  # a quote ends at its closing mark or at the end of the line
# A quote is whole tokens (its token ids are read back), so a stop drops the whole token.
WHOLE_TOKENS = DecodeOptions(whole_token_stops=True)
EXTRA_FEATURES = ("span length (tokens)", "mean log-prob", "mean entropy")  # output only


@dataclass(frozen=True)
class CopyDetectionConfig:
    # The requests ``measure`` makes from a text (``quote_data.make_quote_requests``).
    n_contexts: int = 50  # passages
    n_present: int = 3  # requests per passage for a word it contains
    n_absent: int = 1  # ... and for a word it does not
    lines: tuple[int, int] = (4, 5)  # lines per passage, fewest and most
    # Generation, labels and detectors.
    max_new_tokens: int = 24
    min_words: int = MIN_WORDS  # shorter quotes are not labelled
    batch_size: int = 8  # prompts per generation batch
    n_folds: int = 5  # held-out folds of contexts
    n_resamples: int = 1000  # cluster-bootstrap resamples
    n_shuffles: int = SHUFFLES  # shuffled labellings in the control
    seed: int = 0
    residual_layer_stride: int | None = None  # probe every stride-th hidden state and the
    # last; None: every hidden state
    induction_tokens: int = 32  # n of the repeated random tokens (BOS + n + n)
    induction_batch: int = 4
    top_k: int = 10  # heads compared between copy signal and induction score

    @classmethod
    def full(cls) -> CopyDetectionConfig:
        # Power argument (pilot seed 1, 50 passages): the paired difference detector -
        # baseline had CI half-width 0.041, a per-passage sd of 0.145; resolving a 0.03
        # advantage (half-width 0.03) takes n_for_half_width(0.145, 0.03) = 93 passages
        # (the AUROC against 0.8 needs only 23: sd 0.174, half-width 0.076).
        return cls(
            n_contexts=93,
            max_new_tokens=16,
            batch_size=16,
            residual_layer_stride=3,
            seed=VERDICT_SEED,
        )

    @classmethod
    def quick(cls) -> CopyDetectionConfig:
        """A smoke run: few contexts, short quotes; its CIs are wide."""
        return cls(
            n_contexts=7,
            n_present=2,
            lines=(4, 4),
            max_new_tokens=16,
            batch_size=16,
            n_folds=3,
            residual_layer_stride=6,
            n_shuffles=5,
        )

    def residual_layers(self, n_states: int) -> tuple[int, ...] | None:
        """The hidden states the residual probe may choose from (None: all)."""
        stride = self.residual_layer_stride
        if stride is None:
            return None
        return tuple(sorted({*range(0, n_states, stride), n_states - 1}))


@dataclass(frozen=True)
class ContextFit:
    """Which quote requests fit the model's context: prompt + new tokens (``max_new_tokens``,
    or the given quote's length) at most ``context`` (None: the model does not say, and
    every request fits)."""

    kept: list[int]  # indices of the requests that fit, in order
    dropped: list[int]  # ... and of those that do not
    prompt_tokens: list[int]  # each request's prompt, in tokens
    context: int | None
    max_new_tokens: int | None  # None: the quotes were given, each with its own length

    def reason(self) -> str:
        """One line: how many were dropped and why ("" when none was)."""
        if not self.dropped:
            return ""
        longest = max(self.prompt_tokens[i] for i in self.dropped)
        shortest = min(self.prompt_tokens[i] for i in self.dropped)
        sizes = f"{shortest}" if shortest == longest else f"{shortest} to {longest}"
        added = (
            "their quotes"
            if self.max_new_tokens is None
            else f"max_new_tokens ({self.max_new_tokens})"
        )
        return (
            f"{len(self.dropped)} of {len(self.prompt_tokens)} quote requests do not fit the "
            f"model's context of {self.context} tokens: their prompts ({sizes} tokens) + "
            f"{added} exceed it"
        )

    def to_dict(self) -> dict:
        return {
            "n": len(self.dropped),
            "reason": self.reason(),
            "context": self.context,
            "max_new_tokens": self.max_new_tokens,
            "longest_prompt_tokens": max(self.prompt_tokens, default=0),
        }


class NothingFits(MyopiaError):
    """No quote request fits the model's context: nothing is left to measure."""

    def __init__(self, fit: ContextFit):
        super().__init__(
            f"{fit.reason()}: nothing is left to measure; give shorter passages or a "
            "smaller max_new_tokens"
        )
        self.fit = fit


def fit_to_context(
    model,
    tokenizer,
    requests: list[QuoteRequest],
    max_new_tokens: int,
    generations: list[Continuation] | None = None,
) -> ContextFit:
    """Split ``requests`` by whether prompt + ``max_new_tokens`` (or, given, the length of
    each request's quote in ``generations``) fits the model's context, the limit
    generation and the feature pass enforce: a passage too long for a small model is
    dropped before generating, not an error that stops the rest."""
    sizes = [len(prompt_ids(tokenizer, quote_prompt(r))) for r in requests]
    if generations is None:
        added = [max_new_tokens] * len(requests)
    else:
        added = [len(g.token_ids) for g in generations]
    context = context_length(model)
    fits = [context is None or n + k <= context for n, k in zip(sizes, added, strict=True)]
    return ContextFit(
        kept=[i for i, ok in enumerate(fits) if ok],
        dropped=[i for i, ok in enumerate(fits) if not ok],
        prompt_tokens=sizes,
        context=context,
        max_new_tokens=max_new_tokens if generations is None else None,
    )


@dataclass
class CopyDetectionResult:
    requests: list[QuoteRequest]  # those measured: the ones that fit the model's context
    quotes: list[str]
    labels: list[QuoteLabel]
    exact: DetectorOutcome | None  # None: could not be measured, see ``reasons``
    fuzzy: DetectorOutcome | None
    head_signal: np.ndarray | None  # (L, H) single-head AUROC - 0.5, exact labels
    induction: np.ndarray  # (L, H) TransformerLens induction score
    overlap: dict
    reasons: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    dropped: dict = field(default_factory=dict)  # ``ContextFit.to_dict()``: requests left out

    def label_counts(self) -> dict:
        """``{"exact"|"fuzzy": {"present"|"absent": {label: count}}}``."""
        counts: dict = {"exact": {}, "fuzzy": {}}
        for request, label in zip(self.requests, self.labels, strict=True):
            kind = "present" if request.present else "absent"
            for scheme in counts:
                row = counts[scheme].setdefault(kind, {})
                value = getattr(label, scheme)
                row[value] = row.get(value, 0) + 1
        return counts

    def to_dict(self) -> dict:
        return {
            "n_requests": len(self.requests),
            "n_contexts": len({r.context_id for r in self.requests}),
            "label_counts": self.label_counts(),
            "exact": None if self.exact is None else self.exact.to_dict(),
            "fuzzy": None if self.fuzzy is None else self.fuzzy.to_dict(),
            "reasons": self.reasons,
            "dropped": self.dropped,
            "head_signal": None if self.head_signal is None else self.head_signal.tolist(),
            "induction": self.induction.tolist(),
            "overlap": self.overlap,
            "timings_s": self.timings,
            "quotes": [
                {
                    "id": r.id,
                    "context_id": r.context_id,
                    "target": r.target,
                    "present": r.present,
                    "quote": q,
                    "exact": lab.exact,
                    "fuzzy": lab.fuzzy,
                    "coverage": round(lab.coverage, 4),
                }
                for r, q, lab in zip(self.requests, self.quotes, self.labels, strict=True)
            ],
        }

    def write(self, out: Path, label: str = "") -> list[Path]:
        """``copy_detection.json`` and, where detectors were scored, the AUROC bars and the
        per-head signal (each with its JSON) in ``out``; ``label`` names the model."""
        out = Path(out)
        files = [atomic_write_json(out / "copy_detection.json", self.to_dict())]
        for plotted in (
            plot_detector_aurocs(self, out / "detector_auroc.png", f"{label}: held-out AUROC"),
            plot_head_signal(self, out / "head_signal.png", f"{label}: single-head AUROC − 0.5"),
        ):
            if plotted is not None:
                files += [plotted, plotted.with_suffix(".json")]
        return files


def _head_overlap(signal: np.ndarray | None, induction: np.ndarray, k: int) -> dict:
    """Rank correlation of |copy signal| with induction score, and the top-k overlap."""
    if signal is None:
        return {}
    strength, flat = np.abs(signal).ravel(), induction.ravel()
    k = min(k, flat.size)
    top_signal = set(np.argsort(-strength)[:k].tolist())
    top_induction = set(np.argsort(-flat)[:k].tolist())
    rho = spearmanr(strength, flat).statistic
    return {
        "spearman": float(rho),
        "k": k,
        "top_k_shared": len(top_signal & top_induction),
        "expected_by_chance": k * k / flat.size,
        "top_signal_heads": [divmod(int(i), induction.shape[1]) for i in np.argsort(-strength)[:k]],
    }


def detect_copy(
    model,
    tokenizer,
    requests: list[QuoteRequest],
    config: CopyDetectionConfig = CopyDetectionConfig(),
    generations: list[Continuation] | None = None,
    show_progress: bool = False,
    workers: int = 1,
) -> CopyDetectionResult:
    """Generate, label, read features and score detectors (module docstring). Requests
    whose prompt + ``config.max_new_tokens`` (+ their quote, where ``generations`` are
    given) exceed the model's context are dropped first; when none fits, one line says so.
    ``workers``: processes for the shuffled-label control's refits (the numbers do not
    depend on it)."""
    if not requests:
        raise MyopiaError("no quote requests: give at least one")
    if generations is not None and len(generations) != len(requests):
        raise MyopiaError(f"{len(generations)} generations for {len(requests)} requests")
    fit = fit_to_context(model, tokenizer, requests, config.max_new_tokens, generations)
    if not fit.kept:
        raise NothingFits(fit)
    if fit.dropped:
        requests = [requests[i] for i in fit.kept]
        if generations is not None:
            generations = [generations[i] for i in fit.kept]
    timings = {}
    prompts = [quote_prompt(r) for r in requests]
    start = time.perf_counter()
    if generations is None:
        settings = SamplingSettings(
            max_new_tokens=config.max_new_tokens, stop=STOP, seed=config.seed
        )
        generations = [
            g[0]
            for g in generate(
                model,
                tokenizer,
                prompts,
                settings,
                options=WHOLE_TOKENS,
                batch_size=config.batch_size,
                show_progress=show_progress,
            )
        ]
    timings["generation"] = time.perf_counter() - start

    labels = [
        label_quote(g.text, r.context, config.min_words)
        for g, r in zip(generations, requests, strict=True)
    ]
    usable = [
        i
        for i, lab in enumerate(labels)
        if lab.exact in (COPIED, HALLUCINATED) and generations[i].token_ids
    ]
    reasons: dict = {}
    exact = fuzzy = head_signal = None
    start = time.perf_counter()
    if len(usable) >= 2:
        prompt_ids = [tokenizer(prompts[i], add_special_tokens=False)["input_ids"] for i in usable]
        span_ids = [list(generations[i].token_ids) for i in usable]
        # The requests about one passage share its encoding (most of each prompt).
        passages = [requests[i].context_id for i in usable]
        features = shared_span_features(
            model, prompt_ids, span_ids, passages, show_progress=show_progress
        )
        timings["features"] = time.perf_counter() - start
        n, n_layers, n_heads = features.lookback.shape
        lookback = features.lookback.reshape(n, n_layers * n_heads)
        names = [f"lookback L{i // n_heads}.H{i % n_heads}" for i in range(n_layers * n_heads)]
        extra = np.stack(
            [features.span_tokens, features.mean_logprob, features.mean_entropy], axis=1
        ).astype(float)
        groups = np.array([requests[i].context_id for i in usable])
        types = np.array(["present" if requests[i].present else "absent" for i in usable])
        exact_y = np.array([labels[i].exact == HALLUCINATED for i in usable], dtype=int)
        if len(set(exact_y.tolist())) == 2:
            head_signal = np.array([auroc(exact_y, f) - 0.5 for f in lookback.T]).reshape(
                n_layers, n_heads
            )
        start = time.perf_counter()
        keep = np.array([labels[i].fuzzy in (COPIED, HALLUCINATED) for i in usable])
        fuzzy_y = np.array([labels[i].fuzzy == HALLUCINATED for i in usable], dtype=int)
        with Pool(workers) as pool:  # both label sets' controls share its processes
            try:
                exact = evaluate_detectors(
                    lookback, names, extra, list(EXTRA_FEATURES), features.residual, exact_y,
                    groups, n_folds=config.n_folds, n_resamples=config.n_resamples,
                    seed=config.seed, types=types, n_shuffles=config.n_shuffles, workers=pool,
                    residual_layers=config.residual_layers(model.config.num_hidden_layers + 1),
                )  # fmt: skip
            except MyopiaError as error:
                reasons["exact"] = str(error)
            try:
                fuzzy = evaluate_detectors(
                    lookback[keep], names, extra[keep], list(EXTRA_FEATURES), None,
                    fuzzy_y[keep], groups[keep], n_folds=config.n_folds,
                    n_resamples=config.n_resamples, seed=config.seed,
                    n_shuffles=config.n_shuffles, workers=pool,
                )  # fmt: skip
            except MyopiaError as error:
                reasons["fuzzy"] = str(error)
        timings["detectors"] = time.perf_counter() - start
    else:
        reasons["exact"] = reasons["fuzzy"] = (
            f"only {len(usable)} quotes had {config.min_words} or more words to label"
        )

    start = time.perf_counter()
    tokens = repeated_random_tokens(
        tokenizer, config.induction_tokens, config.induction_batch, seed=config.seed
    )
    induction = detect_heads(model, tokens)["induction"].numpy()
    timings["induction_heads"] = time.perf_counter() - start
    return CopyDetectionResult(
        requests=list(requests),
        quotes=[g.text for g in generations],
        labels=labels,
        exact=exact,
        fuzzy=fuzzy,
        head_signal=head_signal,
        induction=induction,
        overlap=_head_overlap(head_signal, induction, config.top_k),
        reasons=reasons,
        timings={k: round(v, 2) for k, v in timings.items()},
        dropped=fit.to_dict(),
    )


def plot_head_signal(result: CopyDetectionResult, path: Path, title: str) -> Path | None:
    """Heatmap (layer x head) of each head's lookback ratio as a lone detector, AUROC -
    0.5; boxes mark the top-k induction heads. None when there is no signal to show."""
    if result.head_signal is None:
        return None
    path = Path(path)
    signal = result.head_signal
    n_layers, n_heads = signal.shape
    fig, ax = plt.subplots(figsize=(2.0 + 0.45 * n_heads, 1.5 + 0.2 * n_layers))
    bound = max(float(np.abs(signal).max()), 1e-6)
    image = ax.imshow(signal, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    k = result.overlap.get("k", 0)
    top = np.argsort(-result.induction.ravel())[:k]
    for index in top:
        layer, head = divmod(int(index), n_heads)
        ax.add_patch(plt.Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, ec="black", lw=1.5))
    ax.set_xlabel("query head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(n_heads))
    fig.colorbar(image, ax=ax, label="AUROC − 0.5 (red: higher ratio when hallucinating)")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(
        path.with_suffix(".json"),
        {
            "head_signal_auroc_minus_half": signal.tolist(),
            "induction_score": result.induction.tolist(),
            "boxed_top_induction_heads": [divmod(int(i), n_heads) for i in top],
            "overlap": result.overlap,
        },
    )
    return path


def _bars(result: CopyDetectionResult) -> list[tuple[str, dict]]:
    bars = []
    if result.exact is not None:
        bars += [
            ("lookback detector", result.exact.lookback.to_dict()),
            ("best single feature", result.exact.baseline.to_dict()),
            ("output only", result.exact.output_only.to_dict()),
        ]
        if result.exact.residual is not None:
            bars.append(("residual probe", result.exact.residual.to_dict()))
        bars.append(("lookback, shuffled labels", result.exact.shuffled.to_dict()))
    if result.fuzzy is not None:
        bars.append(("lookback, fuzzy labels", result.fuzzy.lookback.to_dict()))
    return bars


def plot_detector_aurocs(
    result: CopyDetectionResult, path: Path, title: str, threshold: float = 0.8
) -> Path | None:
    """Held-out AUROC of each detector with its cluster-bootstrap CI; lines at chance and
    at the rule's threshold. None when nothing was measured."""
    bars = _bars(result)
    if not bars:
        return None
    path = Path(path)
    fig, ax = plt.subplots(figsize=(7.4, 3.4))
    means = [b["mean"] for _, b in bars]
    errors = [[b["mean"] - b["low"] for _, b in bars], [b["high"] - b["mean"] for _, b in bars]]
    colours = ["C0", "C1", "C5", "C2", "C7", "C4"][: len(bars)]
    ax.bar(range(len(bars)), means, yerr=errors, capsize=4, color=colours)
    ax.axhline(0.5, ls=":", color="grey", lw=1, label="chance")
    ax.axhline(threshold, ls="--", color="black", lw=1, label=f"rule threshold {threshold}")
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels([name for name, _ in bars], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out AUROC (hallucinated = positive)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    atomic_write_json(
        path.with_suffix(".json"),
        {"threshold": threshold, "bars": {name: b for name, b in bars}},
    )
    return path


def measure(
    model,
    tokenizer,
    config: CopyDetectionConfig,
    documents: list[Document] | None = None,
    requests: list[QuoteRequest] | None = None,
    show_progress: bool = False,
    workers: int = 1,
) -> CopyDetectionResult:
    """C6: the quote ``requests`` given, or ``config.n_contexts`` passages' worth made from
    the eval split of ``documents`` (seeded by ``config.seed``), through ``detect_copy``."""
    if (documents is None) == (requests is None):
        raise MyopiaError("give either quote requests or documents to make them from")
    if requests is None:
        requests = make_requests(config, documents)
    return detect_copy(
        model, tokenizer, requests, config, show_progress=show_progress, workers=workers
    )


def make_requests(config: CopyDetectionConfig, documents: list[Document]) -> list[QuoteRequest]:
    """The quote requests ``measure`` makes from the eval split of ``documents`` (held-out
    text, as the other measurements use; nothing is trained here)."""
    held_out = [Document(d.name, split_text(d.text, "eval")) for d in documents]
    return make_quote_requests(
        held_out,
        config.n_contexts,
        config.seed,
        n_present=config.n_present,
        n_absent=config.n_absent,
        lines=config.lines,
    )
