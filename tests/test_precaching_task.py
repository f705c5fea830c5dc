"""The pre-caching task's data, checked against its formula written out as loops."""

import math

import pytest
import torch

from myopia.errors import MyopiaError
from myopia.training.continuous import (
    ContinuousModel,
    PrecachingConfig,
    precaching_batch,
    train_precaching,
)


@pytest.mark.parametrize("lags", [10, 0])
@pytest.mark.parametrize("p", [1.0, 0.5])
def test_targets_follow_the_definition(p, lags):
    config = PrecachingConfig(p=p, lags=lags, batch_size=3, seq_len=16)
    inputs, targets = precaching_batch(config, torch.Generator().manual_seed(1))
    for b in range(3):
        for n in range(16):
            x, z = inputs[b, :, 0], inputs[b, n, 1].item()
            terms = range(1, lags + 1) if lags else [0]
            remembered = sum(math.sin(10 * x[n - i].item()) for i in terms if n - i >= 0)
            expected = z * remembered + (1 - z) * x[n].item()
            assert targets[b, n].item() == pytest.approx(expected, abs=1e-5)
    if p == 1.0:
        assert bool((inputs[..., 1] == 1).all())


def test_model_maps_inputs_to_one_prediction_per_position():
    config = PrecachingConfig(d_model=16, n_heads=2, seq_len=8, batch_size=2)
    inputs, _ = precaching_batch(config, torch.Generator().manual_seed(0))
    assert ContinuousModel(config)(inputs).shape == (2, 8)


def test_short_run_reports_a_finite_loss_and_bad_settings_are_refused():
    run = train_precaching(
        PrecachingConfig(
            d_model=16, seq_len=8, batch_size=4, steps=3, gradient="residual", eval_batches=1
        )
    )
    assert math.isfinite(run.eval_loss) and run.curve[-1][0] == 3
    with pytest.raises(MyopiaError):
        PrecachingConfig(p=1.5)
    with pytest.raises(MyopiaError):
        PrecachingConfig(gradient="bigram")
