"""C4's measurement: ablation by head, per-sequence shares, and the claim rule."""

import numpy as np
import pytest
import torch

from myopia.attribution.components import edit_outputs
from myopia.experiments.c4_previous_token_heads import c4_rule
from myopia.heads.detection import Head
from myopia.heads.induction import repeated_random_tokens, repeated_token_losses
from myopia.heads.matched_null import (
    NullComparison,
    exact_set_effects,
    matched_sets,
    no_matched_null,
    permutation_p,
    set_ablation_effects,
)
from myopia.heads.previous_token_role import (
    PreviousTokenHeadsConfig,
    heads_mean_ablated,
    measure_on,
    per_sequence_head_shares,
)
from myopia.models.loading import load_model
from myopia.report.registry import SectionResult

TINY = "fresh-llama:d_model=32,n_layers=2,n_heads=4,d_mlp=64"


def test_mean_ablation_replaces_exactly_the_chosen_heads():
    model, _ = load_model(TINY)
    ids = torch.randint(3, 200, (3, 10))
    seen = {}

    def record(layer, z):
        seen[layer] = z.detach().clone()
        return z

    with torch.no_grad(), edit_outputs(model, heads=record):
        model(input_ids=ids)
    clean = dict(seen)
    with heads_mean_ablated(model, [Head(1, 2, 0.9)], ids), torch.no_grad():
        with edit_outputs(model, heads=record):
            model(input_ids=ids)
    d = 32 // 4
    head = slice(2 * d, 3 * d)
    assert torch.equal(seen[0], clean[0])  # layer 0 untouched
    expected = clean[1][..., head].mean((0, 1))
    assert torch.allclose(seen[1][..., head], expected.expand_as(seen[1][..., head]))
    others = [i for i in range(32) if not head.start <= i < head.stop]
    assert torch.equal(seen[1][..., others], clean[1][..., others])


def test_shares_are_per_head_and_sequence_and_last_layer_only_serves_the_present():
    model, _ = load_model(TINY)
    components, shares = per_sequence_head_shares(model, torch.randint(3, 200, (2, 12)))
    assert shares.shape == (8, 2) and all(not c.is_mlp for c in components)
    last = [i for i, c in enumerate(components) if c.layer == 1]
    assert torch.all(shares[last] == 0)  # no later layer reads them: future is exactly 0
    assert torch.all(shares[[i for i in range(8) if i not in last]] > 0)


def _comparison(observed, null):
    return NullComparison(observed, list(null)).to_dict()


NULL = np.linspace(0.0, 1.0, 100)  # median 0.5, 95th percentile 0.95


def _found(share, effect):
    return {
        "heads": [{"layer": 0, "head": 0, "score": 0.97}],
        "future_share": _comparison(share, NULL),
        "ablation_effect": _comparison(effect, NULL),
    }


KNOWN = {"feeds_induction": _found(1.2, 3.0), "current_only": _found(0.1, 0.0)}


def _numbers(share, effect, control=(0.5, 0.5), planted=KNOWN):
    return {
        "C4": SectionResult(
            summary="",
            numbers={
                "heads": [{"layer": 1, "head": 0, "score": 0.9}],
                "future_share": _comparison(share, NULL),
                "ablation_effect": _comparison(effect, NULL),
                "control": {
                    "future_share": _comparison(control[0], NULL),
                    "ablation_effect": _comparison(control[1], NULL),
                },
                "planted": planted,
            },
        )
    }


@pytest.mark.parametrize(
    "share, effect, verdict",
    [
        (1.2, 3.0, "supported"),
        (0.3, 3.0, "refuted"),  # the share lies below the null's median
        (1.2, 0.1, "refuted"),
        (0.9, 3.0, "inconclusive"),  # above the median, not above the 95th percentile
    ],
)
def test_rule_against_the_matched_null(share, effect, verdict):
    result = c4_rule(_numbers(share, effect))
    assert result.value == verdict and result.control.passed
    assert c4_rule({}).value == "not run"


def test_a_failed_control_makes_the_rule_inconclusive():
    result = c4_rule(_numbers(1.2, 3.0, control=(1.3, 2.0)))  # a random set "supported"
    assert result.value == "inconclusive" and "failed its control" in result.reason
    assert not result.control.passed
    # The planted head that serves only its own position called supported: failed too.
    wrong = {**KNOWN, "current_only": _found(1.2, 3.0)}
    result = c4_rule(_numbers(1.2, 3.0, planted=wrong))
    assert result.value == "inconclusive" and "serves only its own position: supported" in (
        result.control.summary
    )


def test_permutation_p_counts_the_observed():
    assert permutation_p(2.0, NULL) == pytest.approx(1 / 101)
    assert permutation_p(-1.0, NULL) == 1.0


def test_matched_sets_keep_layers_and_avoid_the_detected_heads():
    heads = [Head(1, 2, 0.9), Head(1, 0, 0.8), Head(3, 1, 0.7)]
    sets = matched_sets(heads, n_heads=4, n_sets=50, seed=0)
    for chosen in sets:
        assert sorted(layer for layer, _ in chosen) == [1, 1, 3]
        assert len(set(chosen)) == 3
        assert not set(chosen) & {(1, 2), (1, 0), (3, 1)}
    assert len({tuple(c) for c in sets}) > 1


def test_no_matched_null_when_a_layer_has_more_detected_heads_than_others():
    # Gemma2's tiny model: 4 heads a layer, 3 of them detected in layer 0.
    heads = [Head(0, 0, 0.9), Head(0, 2, 0.8), Head(0, 3, 0.7)]
    reason = no_matched_null(heads, n_heads=4)
    assert reason is not None and "layer 0 has 3 detected and only 1 other head" in reason
    with pytest.raises(ValueError, match="no layer-matched null"):
        matched_sets(heads, n_heads=4, n_sets=5, seed=0)
    assert no_matched_null([Head(0, 0, 0.9), Head(0, 2, 0.8)], n_heads=4) is None


def test_measurement_without_a_matched_null_says_so_and_the_rule_is_inconclusive():
    """Planted: one layer of two heads, every head detected (threshold 0): there is no
    other head in the layer to stand in for them. The measurement returns the heads and
    the reason instead of failing, and the rule reads it as inconclusive."""
    model, _ = load_model("fresh-llama:d_model=32,n_layers=1,n_heads=2,d_mlp=64")
    config = PreviousTokenHeadsConfig(n=6, top_k=2, threshold=0.0, n_null=5, seed=0)
    result = measure_on(
        model,
        config,
        detect=repeated_random_tokens(200, 6, 2, seed=0),
        ablate=repeated_random_tokens(200, 6, 2, seed=1),
        text=torch.randint(3, 200, (2, 12), generator=torch.Generator().manual_seed(0)),
    )
    assert sorted((h.layer, h.head) for h in result.heads) == [(0, 0), (0, 1)]
    assert result.future_share is None and result.ablation is None
    assert "layer 0 has 2 detected and only 0 other head" in result.no_null
    numbers = result.to_dict()
    assert set(numbers) == {"heads", "no_null"}
    verdict = c4_rule({"C4": SectionResult(summary="", numbers=numbers)})
    assert verdict.value == "inconclusive" and "no layer-matched null" in verdict.reason


def test_batched_exact_ablation_equals_one_set_at_a_time():
    model, _ = load_model(TINY)
    ids = repeated_random_tokens(200, 6, 3, seed=0)
    sets = [[(0, 1)], [(1, 2), (1, 3)], [(0, 0)]]
    batched = exact_set_effects(model, ids, 6, sets)
    clean = repeated_token_losses(model, ids, 6)
    for chosen, value in zip(sets, batched, strict=True):
        with heads_mean_ablated(model, [Head(layer, h, 1.0) for layer, h in chosen], ids):
            ablated = repeated_token_losses(model, ids, 6)
        expected = float(((ablated.second - clean.second) - (ablated.first - clean.first)).mean())
        assert value == pytest.approx(expected, abs=1e-5)
    # first order: one value per (layer, head), averaged over sequences
    per_head = set_ablation_effects(model, ids, 6).mean(-1)
    assert per_head.shape == (2, 4)
