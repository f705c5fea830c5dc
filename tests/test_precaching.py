"""The pre-caching task (C1a): its data against the formula, the probe, resumable
training, and the two properties the experiment stands on: a planted future benefit is
found (normal beats myopic) and an absent one is not (the lags = 0 control)."""

import math

import numpy as np
import pytest
import torch

from myopia.errors import MyopiaError
from myopia.training.continuous import ContinuousFit, ContinuousModel, fit_continuous
from myopia.training.gap import precaching_gap
from myopia.training.precaching import PrecachingTask, lagged_sine_r2

# The smallest budget at which the normal model learns the task on this CPU (~2 s a run).
SMALL_TASK = {"frequency": 3.0, "seq_len": 16, "d_model": 64}
SMALL_FIT = ContinuousFit(steps=150, batch_size=32, lr=3e-3, warmup_steps=20)


@pytest.mark.parametrize("lags", [10, 0])
@pytest.mark.parametrize("p", [1.0, 0.5])
def test_targets_follow_the_definition(p, lags):
    task = PrecachingTask(p=p, lags=lags, frequency=10.0, seq_len=16)
    inputs, targets = task.batch(torch.Generator().manual_seed(1), 3)
    for b in range(3):
        for n in range(16):
            x, z = inputs[b, :, 0], inputs[b, n, 1].item()
            terms = range(1, lags + 1) if lags else [0]
            remembered = sum(math.sin(10 * x[n - i].item()) for i in terms if n - i >= 0)
            expected = z * remembered + (1 - z) * x[n].item()
            assert targets[b, n, 0].item() == pytest.approx(expected, abs=1e-5)
    if p == 1.0:
        assert bool((inputs[..., 1] == 1).all())


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(MyopiaError, match="probability"):
        PrecachingTask(p=1.5)
    with pytest.raises(MyopiaError, match="lags"):
        PrecachingTask(lags=-1)
    with pytest.raises(MyopiaError, match="gradient"):
        ContinuousFit(gradient="bigram")


def test_model_maps_inputs_to_one_prediction_per_position():
    task = PrecachingTask(lags=3, d_model=16, n_heads=2, seq_len=8)
    inputs, targets = task.batch(torch.Generator().manual_seed(0), 2)
    assert task.model()(inputs).shape == targets.shape == (2, 8, 1)
    assert len(task.model().hidden_states(inputs)) == task.n_layers + 1


def test_resumed_run_reaches_the_uninterrupted_weights(tmp_path):
    task = PrecachingTask(lags=3, seq_len=8, d_model=16)
    fit = ContinuousFit(steps=10, batch_size=4, gradient="kv", warmup_steps=2)

    def batches(generator):
        return task.batch(generator, fit.batch_size)

    torch.manual_seed(0)
    whole = task.model()
    fit_continuous(whole, batches, fit)

    calls = 0

    def crashing_batches(generator):  # dies while drawing the batch of step 7
        nonlocal calls
        calls += 1
        if calls == 7:
            raise KeyboardInterrupt
        return batches(generator)

    checkpoint = tmp_path / "run.pt"
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        fit_continuous(
            task.model(), crashing_batches, fit, checkpoint=checkpoint, checkpoint_every=4
        )
    torch.manual_seed(0)
    resumed = task.model()
    curve = fit_continuous(resumed, batches, fit, checkpoint=checkpoint, checkpoint_every=4)
    assert curve[-1][0] == 10
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(MyopiaError, match="other settings"):
        fit_continuous(task.model(), batches, ContinuousFit(steps=11), checkpoint=checkpoint)


def test_planted_future_benefit_is_found():
    """Targets that need earlier positions' work: normal training clearly beats myopic."""
    task = PrecachingTask(p=1.0, lags=3, **SMALL_TASK)
    result, runs = precaching_gap(task, SMALL_FIT, [0, 1, 2], show_progress=False)
    gap = result.gap("kv")
    assert gap.low > 0.05, gap
    # The myopic model gets nowhere below predicting 0, the normal one well below it.
    assert result.loss("kv").mean > 0.9 * result.extra["trivial_loss"]
    assert result.loss("normal").mean < 0.8 * result.extra["trivial_loss"]


def test_absent_future_benefit_is_not_found():
    """lags = 0: the target depends on the current input only; the gap is ~0."""
    task = PrecachingTask(p=1.0, lags=0, **SMALL_TASK)
    result, _ = precaching_gap(task, SMALL_FIT, [0, 1, 2], show_progress=False)
    gap = result.gap("kv")
    assert gap.low < 0 < gap.high, gap
    assert abs(gap.mean) < 0.03, gap
    assert result.loss("normal").mean < 0.2 * result.extra["trivial_loss"]  # both learn it


def test_probe_reads_a_planted_feature_and_not_an_absent_one():
    """A model whose hidden state is (x, sin(f x)) linearly gives R² ≈ 1 at lag 0 and
    ≈ 0 at other lags (inputs are independent)."""
    task = PrecachingTask(lags=3, frequency=3.0, seq_len=12, d_model=8, n_layers=1, n_heads=2)

    class Planted(ContinuousModel):
        def hidden_states(self, inputs):
            x = inputs[..., 0]
            return (torch.stack([x, torch.sin(3.0 * x)], dim=-1),)

    r2 = lagged_sine_r2(Planted(8, 1, 2, 12, 2), task, max_lag=4, n_sequences=64)
    assert r2.shape == (1, 5)
    assert r2[0, 0] > 0.99
    assert np.all(np.abs(r2[0, 1:]) < 0.05)


def test_lags_past_the_sequence_and_bad_frequencies_are_one_line():
    from myopia.errors import MyopiaError
    from myopia.training.precaching import PrecachingTask

    for bad, option in (
        ({"lags": 40, "seq_len": 32}, "--lags"),
        ({"frequency": float("nan")}, "--frequency"),
        ({"frequency": 0.0}, "--frequency"),
    ):
        with pytest.raises(MyopiaError) as error:
            PrecachingTask(**bad)
        assert str(error.value).startswith(option) and "\n" not in str(error.value)
