"""C4's measurement: ablation by head, per-sequence shares, and the claim rule."""

import math

import pytest
import torch

from myopia.attribution.components import edit_outputs
from myopia.experiments.c4_previous_token_heads import c4_rule
from myopia.heads.detection import Head
from myopia.heads.previous_token_role import heads_mean_ablated, per_sequence_head_shares
from myopia.models.loading import load_model
from myopia.report.registry import SectionResult
from myopia.stats import mean_ci

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


def _numbers(share, margin):
    return {
        "C4": SectionResult(
            summary="",
            numbers={
                "share_difference": mean_ci(share).to_dict(),
                "ratio_margin": mean_ci(margin).to_dict(),
            },
        )
    }


@pytest.mark.parametrize(
    "share, margin, verdict",
    [
        ([0.1, 0.12, 0.09], [5.0, 6.0, 5.5], "supported"),
        ([-0.1, -0.12, -0.09], [5.0, 6.0, 5.5], "refuted"),
        ([0.1, 0.12, 0.09], [-1.0, -2.0, -1.5], "refuted"),
        ([0.1, -0.12, 0.09], [5.0, 6.0, 5.5], "inconclusive"),
    ],
)
def test_rule_reads_both_intervals(share, margin, verdict):
    assert c4_rule(_numbers(share, margin)).value == verdict
    assert c4_rule({}).value == "not run"
    assert math.isinf(mean_ci([1.0]).low)
    assert c4_rule(_numbers([0.1], [5.0])).value == "inconclusive"
