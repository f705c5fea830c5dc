"""Fit every probe, choose on the validation windows, score on the held-out ones."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from myopia.lookahead.config import BASELINES, REFERENCES, LookaheadConfig
from myopia.lookahead.ngrams import NgramTables
from myopia.lookahead.result import LookaheadResult
from myopia.lookahead.ridge import _Design
from myopia.lookahead.states import StateSet, _top1, collect_states, unembedding
from myopia.progress import track


def _positions(seq_len: int, config: LookaheadConfig) -> torch.Tensor:
    last = seq_len - 1 - max(config.offsets)
    if last < config.first_position:
        raise ValueError(
            f"windows of {seq_len} tokens leave no position to score at offsets "
            f"{config.offsets} from position {config.first_position}"
        )
    return torch.arange(config.first_position, last + 1)


CONTEXT = {"trigram": 2, "4-gram": 3}  # tokens of context of each table baseline


def _onehot_features(tables: NgramTables, n_tokens: int):
    """A function from contexts (n, m) of token ids (-1: before the window) to the
    concatenated one-hots (n, m * (n_tokens + 1)) of each token among the ``n_tokens`` most
    frequent of the table text, the last column of each block meaning "any other"."""
    index = np.full(tables.vocab_size + 1, n_tokens, dtype=np.int64)  # the last: id -1
    top = tables.top_classes(n_tokens)
    index[top] = np.arange(len(top))
    width = n_tokens + 1

    def features(context: np.ndarray) -> torch.Tensor:
        n, m = context.shape
        out = torch.zeros(n, m * width)
        cols = torch.from_numpy(index[context] + width * np.arange(m))  # (n, m)
        out.scatter_(1, cols, 1.0)
        return out

    return features


def _fit_residual(
    design: _Design,
    y: torch.Tensor,
    table: tuple[torch.Tensor, torch.Tensor],
    distinct: torch.Tensor,
    n_classes: int,
    lambdas: tuple[float, ...],
    token_sums: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """A residual probe: ridge weights (d, K) and bias (K,) fitted to onehot(y) − p_k(· | x_t)
    on the design's positions, and the penalty GCV chose. ``y`` (n,) holds class indices (K:
    outside the classes), ``table`` the bigram rows of the distinct current tokens and their
    expansion to positions, ``distinct`` (n,) each position's row."""
    probs, per_token = table  # (u, K), (n, K)
    n = len(design.x)
    inside = y < n_classes
    # x̃ᵀ(Y − P) / n, with Y one-hot and P = per_token: x̃ᵀY by class sums, x̃ᵀP through
    # the sums of x̃ over the positions of each token.
    xy = torch.zeros(n_classes, design.x.shape[1])
    xy.index_add_(0, y[inside], design.x[inside])
    if token_sums is None:
        token_sums = torch.zeros(len(probs), design.x.shape[1])
        token_sums.index_add_(0, distinct, design.x)  # (u, d)
    cross = (xy.T - token_sums.T @ probs) / n  # (d, K)
    p_true = torch.zeros(n)
    p_true[inside] = per_token[inside].gather(1, y[inside, None])[:, 0]
    mean_sq = float((inside.float() - 2 * p_true + (per_token**2).sum(1)).double().mean())
    z_mean = torch.bincount(y[inside], minlength=n_classes).float() / n
    z_mean = z_mean - per_token.mean(0)  # (K,)
    target_var = mean_sq - float((z_mean.double() ** 2).sum())
    w, lam = design.solve(cross, target_var, lambdas)
    weight, bias = design.to_raw(w, z_mean)  # (d, K), (K,)
    return weight, bias, lam


def _per_window(correct: torch.Tensor, n_windows: int) -> np.ndarray:
    """(n_windows * P,) booleans -> (n_windows,) accuracy per window."""
    return correct.view(n_windows, -1).double().mean(1).numpy()


def probe_states(
    fit: StateSet,
    val: StateSet,
    held_out: StateSet,
    tables: NgramTables,
    config: LookaheadConfig | None = None,
    unembed: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    show_progress: bool = False,
) -> LookaheadResult:
    """Fit every probe on ``fit``, choose on ``val``, score on ``held_out``.

    ``unembed`` (weight (V, d), bias or None) is needed by the ``"lens"`` family only.
    The three sets must hold the same layers and window length."""
    config = config or LookaheadConfig()
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
    def context(s: StateSet, m: int) -> np.ndarray:  # (n, m) tokens t-m+1..t, -1 before 0
        padded = torch.cat([torch.full((len(s.tokens), m), -1), s.tokens], dim=1)
        cols = [padded[:, positions + m - j] for j in range(m - 1, -1, -1)]
        return torch.stack(cols, -1).reshape(-1, m).numpy()

    sets = {"fit": fit, "val": val, "eval": held_out}
    distinct, tables_at = {}, {}
    if "residual" in families or "onehot-3" in BASELINES:
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
        if name == "onehot-3":
            continue  # fitted below, like a probe
        per_val, per_eval = [], []
        for k in offsets:
            for s, out in ((val, per_val), (held_out, per_eval)):
                cur = current(s)
                if name == "unigram":
                    guess = np.full_like(cur, tables.unigram_prediction)
                elif name == "bigram":
                    guess = tables.bigram_predictions(cur, k)
                elif name in ("trigram", "4-gram"):
                    guess = tables.context_predictions(context(s, CONTEXT[name]), k)
                else:  # the model's next token at t, then the bigram table for k - 1 more
                    nxt = s.predicted[:, positions].reshape(-1).numpy()
                    guess = nxt if k == 1 else tables.bigram_predictions(nxt, k - 1)
                correct = torch.from_numpy(guess) == target(s, k)
                out.append(_per_window(correct, len(s.tokens)))
        baseline_val[name] = np.array([v.mean() for v in per_val])
        baseline_eval[name] = np.stack(per_eval)

    if "onehot-3" in BASELINES:
        onehot = _onehot_features(tables, config.onehot_classes)
        design = _Design.of(onehot(context(fit, 3)))
        per_val, per_eval = [], []
        for k in offsets:
            weight, bias, _ = _fit_residual(
                design,
                class_of[target(fit, k)],
                tables_at["fit", k],
                distinct["fit"],
                n_classes,
                config.lambdas,
            )
            for s, name, out in ((val, "val", per_val), (held_out, "eval", per_eval)):
                winner = _top1(onehot(context(s, 3)), weight, bias, tables_at[name, k][1])
                out.append(_per_window(classes_t[winner] == target(s, k), len(s.tokens)))
        baseline_val["onehot-3"] = np.array([v.mean() for v in per_val])
        baseline_eval["onehot-3"] = np.stack(per_eval)

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
                    if token_sums is None:
                        token_sums = torch.zeros(len(tables_at["fit", k][0]), design.x.shape[1])
                        token_sums.index_add_(0, distinct["fit"], design.x)  # (u, d)
                    weight, bias, lam = _fit_residual(
                        design,
                        class_of[target(fit, k)],
                        tables_at["fit", k],
                        distinct["fit"],
                        n_classes,
                        config.lambdas,
                        token_sums,
                    )
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
    config: LookaheadConfig | None = None,
    show_progress: bool = False,
) -> LookaheadResult:
    """Future-token probes of ``model``: hidden states of the three sets of windows
    (N, T), baselines counted on ``table_tokens`` (N', T'), then ``probe_states``.

    For honest numbers the four sets must be disjoint text, and the probes' fit and
    validation windows must come from text the held-out windows do not (the caller's
    job: ``myopia.data.text`` gives train and eval splits)."""
    config = config or LookaheadConfig()
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
