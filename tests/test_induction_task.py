"""C4's small model: attention-only, trained on repeated random segments."""

import math

import pytest
import torch

from myopia.errors import MyopiaError
from myopia.models.loading import load_model
from myopia.training.induction_task import (
    FIRST_TOKEN,
    InductionTask,
    copy_losses,
    repeated_segments,
    train_induction_model,
)


def test_segments_repeat_and_use_the_task_tokens():
    ids = repeated_segments(10, 6, 4, torch.Generator().manual_seed(0))
    assert ids.shape == (4, 12)
    assert torch.equal(ids[:, :6], ids[:, 6:])
    assert int(ids.min()) >= FIRST_TOKEN and int(ids.max()) < FIRST_TOKEN + 10


def test_attention_only_blocks_add_nothing_but_attention():
    model, _ = load_model("fresh-llama:attention_only=1,d_model=16,n_heads=2,n_layers=1")
    layer = model.model.layers[0]
    hidden = torch.randn(1, 3, 16)
    assert torch.equal(layer.mlp(hidden), torch.zeros_like(hidden))
    assert not any("mlp" in name for name, _ in model.named_parameters())


def test_induction_forms_and_only_helps_the_second_copy():
    task = InductionTask(n_tokens=16, half_len=12, d_model=32, steps=200, lr=5e-3)
    run = train_induction_model(task, seed=0)
    assert run.first_copy_loss == pytest.approx(math.log(16), abs=0.15)  # random: log V
    assert run.second_copy_loss < 0.5  # copied by induction
    ids = repeated_segments(16, 12, 8, torch.Generator().manual_seed(5))
    first, second = copy_losses(run.model, ids)
    assert second < first


def test_bad_sizes_are_refused():
    with pytest.raises(MyopiaError, match="half_len"):
        InductionTask(half_len=1)
