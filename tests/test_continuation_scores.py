"""Continuation scores: the KV-cache tree agrees with one full forward pass per text."""

import pytest
import torch

from myopia.errors import MyopiaError
from myopia.faithfulness.continuation_scores import (
    ScoreRequest,
    score_continuations,
    score_continuations_reference,
    score_requests,
)
from myopia.models.loading import load_model

TINY = {
    "llama": "fresh-llama:d_model=32,n_layers=2,n_heads=2",
    "gpt2": "fresh-gpt2:d_model=32,n_layers=2,n_heads=2",
}
REQUESTS = [
    ScoreRequest(
        "Article: coffee is a drink.",
        "\nQuestion: who?\nAnswer:",
        (" Dumbledore", " The article does not say.", " x"),
    ),
    ScoreRequest("Article: coffee is a drink.", "", (" Hello there, friend",)),
    ScoreRequest(
        "A much longer context with many words in it, longer than all the others here.",
        "\nQ: ok",
        (" yes", " no, it is not ok at all, not in the least"),
    ),
    ScoreRequest("Short", "\nQ:", (" a", " bb b b")),
    ScoreRequest("Article: coffee is a drink.", "\nQ: and tea?\nA:", (" Tea is too.",)),
    # One-token continuations (a byte each) are read from the query's last state alone.
    ScoreRequest("Short", "\nA:", ("y", " yes", "n")),
]


@pytest.fixture(scope="module", params=list(TINY))
def tiny_by_architecture(request):
    torch.manual_seed(0)
    return load_model(TINY[request.param])


def _reference(model, tokenizer, requests):
    return [
        score_continuations_reference(model, tokenizer, r.context, r.continuations, r.query)
        for r in requests
    ]


@pytest.mark.parametrize("batch_size,contexts", [(64, 8), (2, 1), (3, 2)])
def test_cached_scores_equal_the_reference(tiny_by_architecture, batch_size, contexts):
    model, tokenizer = tiny_by_architecture
    fast = score_requests(model, tokenizer, REQUESTS, batch_size, contexts_per_batch=contexts)
    slow = _reference(model, tokenizer, REQUESTS)
    assert [len(row) for row in fast] == [len(r.continuations) for r in REQUESTS]
    for fast_row, slow_row in zip(fast, slow, strict=True):
        torch.testing.assert_close(
            torch.tensor(fast_row), torch.tensor(slow_row), rtol=1e-5, atol=1e-4
        )


def test_the_comparison_can_fail(tiny_by_architecture):
    """The reference is sensitive to what the cache would get wrong: the prompt and the
    positions. A continuation scored after another prompt, or shifted by padding, differs."""
    model, tokenizer = tiny_by_architecture
    one = score_continuations_reference(model, tokenizer, "Article: coffee.", [" a b c d"])
    other = score_continuations_reference(model, tokenizer, "Article: tea!!", [" a b c d"])
    shifted = score_continuations_reference(model, tokenizer, "  Article: coffee.", [" a b c d"])
    assert abs(one[0] - other[0]) > 1e-4 and abs(one[0] - shifted[0]) > 1e-4


def test_single_prefix_form_and_probabilities(tiny_by_architecture):
    model, tokenizer = tiny_by_architecture
    scores = score_continuations(model, tokenizer, "The cat", [" sat", " sat on the mat"])
    assert scores == pytest.approx(
        score_continuations_reference(model, tokenizer, "The cat", [" sat", " sat on the mat"]),
        abs=1e-4,
    )
    # A longer continuation that starts with a shorter one is less probable.
    assert all(s < 0 for s in scores) and scores[1] < scores[0]


def test_empty_texts_are_one_line_errors(tiny_by_architecture):
    model, tokenizer = tiny_by_architecture
    with pytest.raises(MyopiaError, match="continuation is empty"):
        score_continuations(model, tokenizer, "The cat", [" sat", ""])
    with pytest.raises(MyopiaError, match="context is empty"):
        score_continuations(model, tokenizer, "", [" sat"])


def test_smollm2_agrees_with_the_reference():
    model, tokenizer = load_model("smollm2")
    requests = REQUESTS[:3]
    fast = score_requests(model, tokenizer, requests, batch_size=4, contexts_per_batch=2)
    for fast_row, slow_row in zip(fast, _reference(model, tokenizer, requests), strict=True):
        assert fast_row == pytest.approx(slow_row, abs=2e-3)
