"""C4's known-answer control: previous-token heads planted by hand in small GPT-2 models."""

from dataclasses import replace

import pytest
import torch

from myopia.errors import MyopiaError
from myopia.experiments.c4_previous_token_heads import c4_control, c4_main
from myopia.heads import detect_heads, repeated_random_tokens, repeated_token_losses
from myopia.heads.planted import PLANTED_HEAD, planted_model
from myopia.heads.previous_token_role import PreviousTokenHeadsConfig, planted_control

CONFIG = replace(PreviousTokenHeadsConfig.quick(), seed=3)


def test_the_planted_head_attends_to_the_previous_token_and_induction_works():
    model = planted_model("feeds_induction", vocab=32, positions=32)
    ids = repeated_random_tokens(32, 12, 4, seed=0)
    top = detect_heads(model, ids, kinds=("previous_token",)).top("previous_token", 2)
    assert (top[0].layer, top[0].head) == PLANTED_HEAD
    # A perfect previous-token head scores (T - 1) / T: every row but the first.
    assert top[0].score == pytest.approx(23 / 24, abs=1e-6) and top[1].score < 0.3
    losses = repeated_token_losses(model, ids, 12)
    assert losses.second.mean() < 0.3 * losses.first.mean()


def test_a_head_that_serves_only_its_position_leaves_the_second_copy_alone():
    model = planted_model("current_only", vocab=32, positions=32)
    ids = repeated_random_tokens(32, 12, 4, seed=0)
    losses = repeated_token_losses(model, ids, 12)
    assert torch.allclose(losses.second.mean(), losses.first.mean(), rtol=0.1)


def test_the_rule_finds_the_planted_answers_and_the_control_reads_them():
    results = {kind: r.to_dict() for kind, r in planted_control(CONFIG).items()}
    assert c4_main(results["feeds_induction"]).value == "supported"
    assert c4_main(results["current_only"]).value != "supported"
    detected = results["feeds_induction"]
    numbers = {**detected, "planted": results}
    assert c4_control(numbers).passed
    # Swapped known answers: the control must fail.
    swapped = {"feeds_induction": results["current_only"], "current_only": detected}
    assert not c4_control({**detected, "planted": swapped}).passed
    assert not c4_control({**detected, "planted": {}}).passed


def test_an_unknown_planted_kind_is_one_line():
    with pytest.raises(MyopiaError, match="unknown planted model"):
        planted_model("feeds_everything")
