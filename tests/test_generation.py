"""Batched generation: left padding changes nothing, stop strings and end of text cut."""

import pytest

from myopia.errors import MyopiaError
from myopia.generation import SamplingSettings, generate


def test_a_batch_gives_what_each_prompt_gives_alone(tiny):
    model, tokenizer = tiny
    prompts = ["The cat", "A much longer prompt that needs left padding in a batch"]
    settings = SamplingSettings(max_new_tokens=8)
    batched = generate(model, tokenizer, prompts, settings, batch_size=2)
    alone = [generate(model, tokenizer, [p], settings)[0] for p in prompts]
    assert [g[0].token_ids for g in batched] == [g[0].token_ids for g in alone]
    for [g] in batched:
        assert len(g.token_ids) == 8 and g.text == tokenizer.decode(list(g.token_ids))


def test_text_is_cut_before_the_first_stop_string(tiny):
    model, tokenizer = tiny
    [[full]] = generate(model, tokenizer, ["Once"], SamplingSettings(max_new_tokens=12))
    # Stop at the text of the third generated token: the cut keeps at most two tokens.
    stop = tokenizer.decode(list(full.token_ids[:3]))[-1]
    [[cut]] = generate(
        model, tokenizer, ["Once"], SamplingSettings(max_new_tokens=12, stop=(stop,))
    )
    assert stop not in cut.text
    assert full.token_ids[: len(cut.token_ids)] == cut.token_ids
    next_piece = tokenizer.decode(list(full.token_ids[: len(cut.token_ids) + 1]))
    assert stop in next_piece


def test_sampling_is_seeded_and_gives_n_continuations(tiny):
    model, tokenizer = tiny
    settings = SamplingSettings(max_new_tokens=6, temperature=1.0, seed=3)
    first = generate(model, tokenizer, ["Hello", "World"], settings, n=3)
    again = generate(model, tokenizer, ["Hello", "World"], settings, n=3)
    assert [len(r) for r in first] == [3, 3]
    assert first == again
    assert len({g.token_ids for g in first[0]}) > 1  # an untrained model samples broadly


@pytest.mark.parametrize(
    "settings",
    [
        SamplingSettings(max_new_tokens=0),
        SamplingSettings(temperature=-1.0),
        SamplingSettings(temperature=1.0, top_p=0.0),
    ],
)
def test_bad_settings_are_one_line_errors(tiny, settings):
    model, tokenizer = tiny
    with pytest.raises(MyopiaError):
        generate(model, tokenizer, ["Hello"], settings)
