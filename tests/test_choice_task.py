"""The choice task of C2: its two arms, the tied model, the on-policy estimator, the
trainers (a forced channel moves Δ, teacher forcing does not), the section and the rule."""

import json
import math

import pytest
import torch

from myopia.errors import MyopiaError
from myopia.experiments import c2_myopic_action as c2
from myopia.report.context import ReportConfig, ReportContext
from myopia.report.registry import FAILED, SectionResult
from myopia.stats import mean_ci
from myopia.training.choice_task import (
    ARMS,
    ASK,
    BOS,
    P0,
    P1,
    ChoiceConfig,
    build_choice_model,
    choice_sequences,
    eval_contexts,
    leave_one_out_mean,
    on_policy_surrogate,
    train_choice,
)
from myopia.training.myopic_action import MyopicActionConfig

# A budget at which a run takes well under a second on one thread.
SHORT = dict(steps=40, batch_size=64, warmup_steps=5, eval_every=20)


def split(config: ChoiceConfig, sequences: torch.Tensor):
    c = config.choice_index
    return sequences[:, :c], sequences[:, c], sequences[:, c + 1 :]


@pytest.mark.parametrize("arm", ARMS)
def test_data_choose_p1_half_the_time_and_follow_each_arm_as_defined(arm):
    config = ChoiceConfig()
    generator = torch.Generator().manual_seed(0)
    # 400 unstratified batches of 64: a frequency is known to about ±0.003.
    batches = [choice_sequences(config, 64, arm, generator) for _ in range(400)]
    sequences = torch.cat(batches)
    before, choice, after = split(config, sequences)
    assert set(choice.tolist()) == {P0, P1}
    assert (choice == P1).float().mean().item() == pytest.approx(0.5, abs=0.012)
    # Unstratified: the batch's P1 count varies (binomial sd 4 in 64).
    counts_per_batch = torch.stack([(split(config, b)[1] == P1).sum() for b in batches])
    assert counts_per_batch.float().std() > 2

    assert (before[:, 0] == BOS).all() and (before[:, -1] == ASK).all()
    context = before[:, 1:-1]
    assert context.min() >= 5 and context.max() < 5 + config.n_context_tokens

    easy_token = P1 if arm == "P1-easy" else P0
    easy, hard = after[choice == easy_token], after[choice != easy_token]
    assert (easy == config.easy_continuation()).all()
    content = range(config.first_content, config.first_content + config.n_content_tokens)
    counts = torch.bincount(hard.flatten() - config.first_content, minlength=len(content))
    assert counts.shape[0] == config.n_content_tokens and hard.min() >= content.start
    expected = hard.numel() / config.n_content_tokens
    assert (counts - expected).abs().max() < 5 * math.sqrt(expected)  # uniform
    assert (hard == config.easy_continuation()).all(dim=1).float().mean() < 0.01


def test_the_arms_of_one_seed_draw_the_same_contexts_and_choices():
    config = ChoiceConfig()
    one, other = (
        choice_sequences(config, 256, arm, torch.Generator().manual_seed(3)) for arm in ARMS
    )
    c = config.choice_index
    assert torch.equal(one[:, : c + 1], other[:, : c + 1])
    assert not torch.equal(one, other)


def test_the_model_ties_its_embeddings_so_the_choice_shares_the_continuations_parameters():
    config = ChoiceConfig()
    model = build_choice_model(config, seed=0)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    untied = build_choice_model(ChoiceConfig(tied_embeddings=False), seed=0)
    assert untied.lm_head.weight is not untied.model.embed_tokens.weight


def test_eval_contexts_are_every_context_once():
    config = ChoiceConfig(context_len=2, n_context_tokens=4)
    contexts = eval_contexts(config)
    assert contexts.shape == (16, 4)
    assert len({tuple(c) for c in contexts.tolist()}) == 16


def test_bad_settings_are_refused_with_one_line():
    for bad in (
        dict(p_easy=1.0),
        dict(continuation_len=20, n_content_tokens=16),
        dict(batch_size=1),
        dict(steps=0),
        dict(warmup_steps=-1),
        dict(d_model=30, n_heads=4),
    ):
        with pytest.raises(MyopiaError) as error:
            ChoiceConfig(**bad)
        assert "\n" not in str(error.value)
    with pytest.raises(MyopiaError):
        train_choice(ChoiceConfig(), "myopic", "P1-easy", seed=0)
    with pytest.raises(MyopiaError, match="arm"):
        train_choice(ChoiceConfig(), "normal", "P2-easy", seed=0)


def test_leave_one_out_mean_excludes_only_its_own_value():
    values = torch.tensor([1.0, 2.0, 6.0, 7.0])
    expected = [(16.0 - v) / 3 for v in (1.0, 2.0, 6.0, 7.0)]
    assert leave_one_out_mean(values).tolist() == pytest.approx(expected)


def planted_logits(config: ChoiceConfig, sequences: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) of a model that knows P1's string and nothing after P0 (arm
    P1-easy), with P(P1 | P0 or P1) = 0.8 at the choice."""
    b, t = sequences.shape
    logits = torch.zeros(b, t, config.vocab_size)
    c, k = config.choice_index, config.continuation_len
    logits[:, c - 1, P1] = math.log(4.0)
    took_easy = sequences[:, c] == P1
    for i in range(k):  # column c + i predicts continuation token i
        target = config.easy_continuation()[i]
        logits[took_easy, c + i, target] = 10.0
    return logits.requires_grad_()


def test_on_policy_credit_raises_the_choice_whose_continuation_is_easier():
    config = ChoiceConfig()
    sequences = choice_sequences(config, 32, "P1-easy", torch.Generator().manual_seed(1))
    logits = planted_logits(config, sequences)
    surrogate, continuation_loss = on_policy_surrogate(logits, sequences, config)
    took_easy = sequences[:, config.choice_index] == P1
    assert continuation_loss[took_easy].max() < 0.01
    assert continuation_loss[~took_easy].min() > 2.7
    surrogate.backward()
    at_choice = logits.grad[:, config.choice_index - 1]  # (B, V)
    # Descent raises P1's logit and lowers P0's for every sequence, whichever it chose.
    assert (at_choice[:, P1] < 0).all() and (at_choice[:, P0] > 0).all()
    # The continuation is trained on its plain likelihood: REINFORCE's term reaches only
    # the choice (its advantage is a constant).
    plain = logits.detach().clone().requires_grad_()
    on_policy_surrogate(plain, sequences, config)[1].mean().backward()
    after_choice = slice(config.choice_index, None)
    assert torch.allclose(logits.grad[:, after_choice], plain.grad[:, after_choice])
    # The choice gets no likelihood loss: with equal continuation losses, no credit at all.
    logits = torch.zeros(32, config.seq_len, config.vocab_size, requires_grad=True)
    on_policy_surrogate(logits, sequences, config)[0].backward()
    assert logits.grad[:, config.choice_index - 1].abs().max() < 1e-7


def delta(config: ChoiceConfig, regime: str, seed: int) -> float:
    p1_easy, p0_easy = (train_choice(config, regime, arm, seed) for arm in ARMS)
    return p1_easy.final_p1 - p0_easy.final_p1


def test_a_forced_channel_moves_delta_and_teacher_forcing_without_one_does_not():
    # Planted: on-policy credit is a channel from the continuation's ease to the choice.
    config = ChoiceConfig(**SHORT)
    assert delta(config, "on-policy", seed=0) > 0.5
    # Absent: teacher-forced to the end of the full schedule (mid-training, while the easy
    # string is being learned, the arms swing apart by up to ~0.2 and back), the two arms
    # (same contexts and choices) agree.
    p1_easy, p0_easy = (train_choice(ChoiceConfig(), "normal", arm, seed=0) for arm in ARMS)
    assert p1_easy.final_p1 - p0_easy.final_p1 == pytest.approx(0.0, abs=0.03)
    assert p1_easy.choice_mass > 0.5 and p1_easy.loss_after_easy < p1_easy.loss_after_hard


def test_teacher_forcing_follows_the_datas_rate_not_the_symmetric_start():
    config = ChoiceConfig(p_easy=0.25, **SHORT)
    run = train_choice(config, "normal", "P0-easy", seed=1)
    assert run.p1[0] == pytest.approx(0.5, abs=0.1)
    assert run.final_p1 == pytest.approx(0.25, abs=0.05)


def test_a_run_is_fixed_by_its_seed_and_the_myopic_regime_changes_the_gradient():
    config = ChoiceConfig(steps=4, batch_size=8, warmup_steps=1, eval_every=2)
    first, again = (train_choice(config, "on-policy", "P1-easy", seed=3) for _ in range(2))
    other = train_choice(config, "on-policy", "P1-easy", seed=4)
    assert first.steps == [0, 2, 4]
    assert first.p1 == again.p1 != other.p1
    normal, myopic = (train_choice(config, r, "P1-easy", seed=3) for r in ("normal", "kv"))
    assert normal.p1[0] == myopic.p1[0] and normal.p1[1:] != myopic.p1[1:]


def test_section_writes_its_plot_with_data_and_decides_by_the_rule(tmp_path, monkeypatch):
    tiny = MyopicActionConfig(n_seeds=2, steps=4, batch_size=8, warmup_steps=1, eval_every=2)
    monkeypatch.setattr(MyopicActionConfig, "quick", classmethod(lambda cls: tiny))
    config = ReportConfig(out=tmp_path, quick=True, seed=5, show_progress=False)
    result = c2.myopic_action(ReportContext(config, model=None, tokenizer=None, model_info={}))
    assert result.budget["seeds"] == [5, 6] and result.budget["steps"] == 4
    plot = tmp_path / result.plots[0].path
    data = json.loads(plot.with_suffix(".json").read_text())
    assert plot.exists() and data["steps"] == [0, 2, 4] and len(data["curves"]) == 6
    assert set(result.numbers["delta"]) == {"normal", "kv", "on-policy"}
    json.dumps(result.numbers)
    verdict = c2.c2_rule({"C2": result})
    assert verdict.control is not None and verdict.value in result.summary


# --- the rule on hand-made numbers ---------------------------------------------------------


def rule_on(normal: list[float], on_policy: list[float]):
    numbers = {
        "delta": {"normal": mean_ci(normal).to_dict(), "on-policy": mean_ci(on_policy).to_dict()}
    }
    return c2.c2_rule({"C2": SectionResult(summary="hand-made", numbers=numbers)})


MOVED = [0.95, 0.97, 0.99]  # the on-policy control moved Δ well above 0.2


def test_rule_gives_each_verdict_from_the_numbers():
    supported = rule_on([-0.001, 0.0, 0.001], MOVED)
    assert supported.value == "supported" and supported.control.passed
    refuted = rule_on([0.08, 0.09, 0.10], MOVED)
    assert refuted.value == "refuted" and "wholly outside" in refuted.reason
    assert rule_on([-0.10, -0.09, -0.08], MOVED).value == "refuted"
    inconclusive = rule_on([0.00, 0.02, 0.04], MOVED)
    assert inconclusive.value == "inconclusive" and "edge" in inconclusive.reason


def test_a_failed_control_makes_any_verdict_inconclusive():
    for on_policy in ([0.05, 0.10, 0.15], [0.10, 0.20, 0.30]):  # below, or straddling 0.2
        verdict = rule_on([-0.001, 0.0, 0.001], on_policy)
        assert verdict.value == "inconclusive" and not verdict.control.passed
        assert "failed its control" in verdict.reason
    assert rule_on([0.08, 0.09, 0.10], [0.0, 0.01, 0.02]).value == "inconclusive"


def test_rule_without_its_measurement_is_not_run():
    assert c2.c2_rule({}).value == "not run"
    assert c2.c2_rule({"C2": SectionResult(summary="broke", status=FAILED)}).value == "not run"
