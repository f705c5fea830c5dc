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


def test_segment_lengths_vary_so_no_fixed_offset_finds_the_copy():
    ids = repeated_segments(10, 8, 64, torch.Generator().manual_seed(0), min_len=4)
    lengths = set()
    for row in ids:
        m = next(m for m in range(8, 3, -1) if torch.equal(row[-m:], row[-2 * m : -m]))
        lengths.add(m)
    assert lengths == set(range(4, 9))


def test_short_training_learns_the_unigram_level_only():
    """The first copy is random: its loss cannot go below log V (~ what 60 steps reach)."""
    task = InductionTask(n_tokens=16, half_len=8, d_model=16, steps=60, lr=1e-2)
    run = train_induction_model(task, seed=0)
    assert run.first_copy_loss == pytest.approx(math.log(16), abs=0.25)
    assert run.first_copy_loss >= math.log(16) - 0.25


@pytest.mark.slow
def test_induction_forms_and_only_helps_the_second_copy():
    run = train_induction_model(InductionTask(), seed=0)  # ~1-2 min
    assert run.second_copy_loss < 0.6 * run.first_copy_loss
    ids = repeated_segments(32, 24, 8, torch.Generator().manual_seed(5))
    first, second = copy_losses(run.model, ids)
    assert second < first


def test_bad_sizes_are_refused():
    with pytest.raises(MyopiaError, match="half_len"):
        InductionTask(half_len=1)
