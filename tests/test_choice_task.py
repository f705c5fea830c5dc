"""The choice task of C2: its data process, the on-policy estimator, the three trainers, the
section and the claim's rule."""

import json
import math

import pytest
import torch

from myopia.errors import MyopiaError
from myopia.experiments import c2_myopic_action as c2
from myopia.report.context import ReportConfig, ReportContext
from myopia.report.registry import FAILED, SectionResult
from myopia.stats import Interval, mean_ci
from myopia.training.choice_task import (
    ASK,
    BOS,
    P0,
    P1,
    REGIME_LABELS,
    REGIMES,
    ChoiceConfig,
    choice_sequences,
    eval_contexts,
    leave_one_out_mean,
    on_policy_surrogate,
    train_choice,
)
from myopia.training.myopic_action import MyopicActionConfig

# A budget at which a run takes about a second on one thread.
SHORT = dict(steps=60, batch_size=64, lr=5e-3, warmup_steps=5, eval_every=20)


def split(config: ChoiceConfig, sequences: torch.Tensor):
    c = config.choice_index
    return sequences[:, :c], sequences[:, c], sequences[:, c + 1 :]


@pytest.mark.parametrize("stratified", [False, True])
def test_data_choose_p1_half_the_time_and_follow_each_choice_as_defined(stratified):
    config = ChoiceConfig()
    generator = torch.Generator().manual_seed(0)
    # 400 batches of 64: 25,600 sequences, so a frequency is known to about ±0.003.
    batches = [choice_sequences(config, 64, generator, stratified) for _ in range(400)]
    sequences = torch.cat(batches)
    before, choice, after = split(config, sequences)
    assert set(choice.tolist()) == {P0, P1}
    assert (choice == P1).float().mean().item() == pytest.approx(0.5, abs=0.012)
    # Each place in a batch is P1 half the time (stratified batches shuffle their P1s).
    first_in_batch = torch.stack([split(config, b)[1][0] for b in batches])
    assert (first_in_batch == P1).float().mean().item() == pytest.approx(0.5, abs=0.1)
    if stratified:
        assert all((split(config, b)[1] == P1).sum() == 32 for b in batches)

    assert (before[:, 0] == BOS).all() and (before[:, -1] == ASK).all()
    context = before[:, 1:-1]
    assert context.min() >= 5 and context.max() < 5 + config.n_context_tokens

    easy, hard = after[choice == P1], after[choice == P0]
    assert (easy == config.easy_continuation()).all()
    content = range(config.first_content, config.first_content + config.n_content_tokens)
    counts = torch.bincount(hard.flatten() - config.first_content, minlength=len(content))
    assert counts.shape[0] == config.n_content_tokens and hard.min() >= content.start
    expected = hard.numel() / config.n_content_tokens
    assert (counts - expected).abs().max() < 5 * math.sqrt(expected)  # uniform
    # Random means random: hard continuations almost never spell the easy string.
    assert (hard == config.easy_continuation()).all(dim=1).float().mean() < 0.01


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
        dict(warmup_steps=300, steps=250),
        dict(d_model=30, n_heads=4),
    ):
        with pytest.raises(MyopiaError) as error:
            ChoiceConfig(**bad)
        assert "\n" not in str(error.value)
    with pytest.raises(MyopiaError):
        train_choice(ChoiceConfig(), "myopic", seed=0)


def test_leave_one_out_mean_excludes_only_its_own_value():
    values = torch.tensor([1.0, 2.0, 6.0, 7.0])
    expected = [(16.0 - v) / 3 for v in (1.0, 2.0, 6.0, 7.0)]
    assert leave_one_out_mean(values).tolist() == pytest.approx(expected)


def planted_logits(config: ChoiceConfig, sequences: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) of a model that knows P1's string and nothing after P0, with
    P(P1 | P0 or P1) = 0.8 at the choice."""
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
    sequences = choice_sequences(config, 32, torch.Generator().manual_seed(1))
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


def test_teacher_forcing_follows_the_data_and_on_policy_training_chooses_the_easy_branch():
    # The data choose P1 a quarter of the time: a teacher-forced model must learn that
    # rate (so ending near the data's rate is learned, not left over from the symmetric
    # start), while the on-policy model goes for the easy branch anyway.
    config = ChoiceConfig(p_easy=0.25, **SHORT)
    normal = train_choice(config, "normal", seed=0)
    assert normal.p_easy[0] == pytest.approx(0.5, abs=0.1)
    assert normal.final_p_easy == pytest.approx(0.25, abs=0.03)
    assert normal.choice_mass > 0.8
    assert normal.loss_after_easy < 0.5 < 2.5 < normal.loss_after_hard
    on_policy = train_choice(config, "on-policy", seed=0)
    assert on_policy.final_p_easy > 0.9
    myopic = train_choice(ChoiceConfig(**SHORT), "kv", seed=0)
    assert myopic.final_p_easy == pytest.approx(0.5, abs=0.03)


def test_a_run_is_fixed_by_its_seed_and_the_myopic_regime_changes_the_gradient():
    config = ChoiceConfig(steps=4, batch_size=8, warmup_steps=1, eval_every=2)
    first, again = (train_choice(config, "on-policy", seed=3) for _ in range(2))
    other = train_choice(config, "on-policy", seed=4)
    assert first.steps == [0, 2, 4]
    assert first.p_easy == again.p_easy != other.p_easy
    # Same seed, same first batch: the teacher-forced regimes differ only in the gradient
    # (the forward pass is the same), so the myopic one must end elsewhere.
    normal, myopic = (train_choice(config, regime, seed=3) for regime in ("normal", "kv"))
    assert normal.p_easy[0] == myopic.p_easy[0] and normal.p_easy[1:] != myopic.p_easy[1:]


def test_section_writes_its_plot_with_data_and_decides_by_the_rule(tmp_path, monkeypatch):
    tiny = MyopicActionConfig(steps=4, batch_size=8, warmup_steps=1, eval_every=2)
    monkeypatch.setattr(MyopicActionConfig, "quick", classmethod(lambda cls: tiny))
    config = ReportConfig(out=tmp_path, quick=True, seed=5, show_progress=False)
    result = c2.myopic_action(ReportContext(config, model=None, tokenizer=None, model_info={}))
    assert result.budget["seeds"] == [5, 6, 7] and result.budget["steps"] == 4
    plot = tmp_path / result.plots[0].path
    data = json.loads(plot.with_suffix(".json").read_text())
    assert plot.exists() and data["steps"] == [0, 2, 4]
    assert set(data["regimes"]) == {"normal", "kv", "on-policy"}
    assert [r["regime"] for r in result.rows] == [REGIME_LABELS[r] for r in REGIMES]
    json.dumps(result.numbers)
    verdict = c2.c2_rule({"C2": result})
    assert verdict == c2.myopic_action_verdict(
        {r: Interval(**result.numbers["final_p_easy"][r]) for r in REGIMES}
    )
    assert verdict.value in result.summary


def rule_on(normal, kv, on_policy):
    finals = {"normal": normal, "kv": kv, "on-policy": on_policy}
    numbers = {"final_p_easy": {r: mean_ci(v).to_dict() for r, v in finals.items()}}
    return c2.c2_rule({"C2": SectionResult(summary="planted", numbers=numbers)})


def test_rule_gives_each_verdict_from_the_numbers():
    level = [0.499, 0.500, 0.501]
    assert rule_on(level, level, [0.95, 0.97, 0.99]).value == "supported"
    refuted = rule_on(level, [0.56, 0.57, 0.58], [0.95, 0.97, 0.99])
    assert refuted.value == "refuted" and "myopic" in refuted.reason
    refuted = rule_on(level, level, [0.50, 0.51, 0.52])
    assert refuted.value == "refuted" and "below 0.6" in refuted.reason
    inconclusive = rule_on([0.50, 0.52, 0.54], level, [0.95, 0.97, 0.99])
    assert inconclusive.value == "inconclusive" and "seeds" in inconclusive.reason
    inconclusive = rule_on(level, level, [0.55, 0.60, 0.65])
    assert inconclusive.value == "inconclusive" and "only longer training" in inconclusive.reason
    # A refuting regime outweighs an undecided one.
    assert rule_on([0.40, 0.41, 0.42], [0.50, 0.52, 0.54], [0.9, 0.95, 0.99]).value == "refuted"
    assert c2.c2_rule({}).value == "not run"
    failed = SectionResult(summary="broke", status=FAILED)
    assert c2.c2_rule({"C2": failed}).value == "not run"


def test_seeds_to_decide_is_the_fewest_that_clear_the_band():
    values = [0.50, 0.52, 0.54]  # mean 0.52, sd 0.02: 0.01 from the band's edge
    seeds = c2._seeds_to_decide(mean_ci(values), c2.BAND)
    sd = 0.02

    def clears(n):  # n seeds with this mean and spread: is the CI inside the band?
        spread = [0.52 + sd * z for z in _unit_spread(n)]
        return mean_ci(spread).high < c2.BAND[1]

    assert clears(seeds) and not clears(seeds - 1)


def _unit_spread(n: int) -> list[float]:
    """n values with mean 0 and sample standard deviation exactly 1."""
    raw = torch.linspace(-1, 1, n, dtype=torch.float64)
    return (raw / raw.std()).tolist()
