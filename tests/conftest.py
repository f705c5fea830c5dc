"""Fixtures shared by several test files."""

import pytest
import torch

from myopia.models.loading import load_model

TINY_LLAMA = "fresh-llama:d_model=32,n_layers=2,n_heads=2"


@pytest.fixture(scope="module")
def tiny():
    """A seeded 2-layer Llama in eval mode and its tokenizer (one per test module)."""
    torch.manual_seed(0)
    model, tokenizer = load_model(TINY_LLAMA)
    return model.eval(), tokenizer
