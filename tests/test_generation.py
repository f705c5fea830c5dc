"""The one generation path: many prompts in a batch give what each gives alone, sampling
reproduces transformers' generate() draw for draw, and stop strings, end of text and
seeding follow one rule whoever calls (the experiments, the loom's engine, drift)."""

import pytest
import torch
from transformers import GenerationConfig

from myopia.errors import MyopiaError
from myopia.generation import DecodeOptions, LocalEngine, SamplingSettings, generate
from myopia.generation.decode import (
    generate_ids,
    prompt_ids,
    sample_token_ids,
    shared_prefixes,
)

PROMPTS = ["The cat", "A much longer prompt that needs left padding in a batch", "Hi"]

# Rows of different batches (another batch size, other padding) run through different
# CPU kernels, which need not round alike: the same tokens, log-probabilities equal to
# float32 rounding.
BATCH_LOGPROB_TOLERANCE = 1e-5


def assert_same_continuations(a, b) -> None:
    """The same tokens, texts and finish reasons; log-probabilities within tolerance."""
    assert a.text == b.text and a.finish_reason == b.finish_reason
    assert a.token_ids == b.token_ids
    for x, y in zip(a.tokens, b.tokens, strict=True):
        assert x.chosen.text == y.chosen.text
        assert [c.token_id for c in x.alternatives] == [c.token_id for c in y.alternatives]
        got = [x.chosen.logprob] + [c.logprob for c in x.alternatives]
        want = [y.chosen.logprob] + [c.logprob for c in y.alternatives]
        assert got == pytest.approx(want, abs=BATCH_LOGPROB_TOLERANCE)


def left_padded(tokenizer, prompts):
    """What transformers' generate() takes for a batch: left-padded ids and their mask."""
    rows = [prompt_ids(tokenizer, p) for p in prompts]
    width = max(len(r) for r in rows)
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def reference_generate(model, tokenizer, prompts, settings, n=1):
    """transformers' generate() with the same settings, seeded through the global random
    state; each row's new tokens up to its end of text. ``top_k=0``: generate() would
    otherwise fill in its default top-k of 50."""
    ids, mask = left_padded(tokenizer, prompts)
    sampled = settings.temperature > 0
    config = GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        do_sample=sampled,
        temperature=settings.temperature if sampled else None,
        top_p=settings.top_p if sampled else None,
        top_k=0,
        num_return_sequences=n,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(settings.seed)
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    rows = out[:, ids.shape[1] :].tolist()
    end = tokenizer.eos_token_id
    return [tuple(r[: r.index(end)] if end in r else r) for r in rows]


def test_a_batch_gives_what_each_prompt_gives_alone(tiny):
    model, tokenizer = tiny
    settings = SamplingSettings(max_new_tokens=8)
    options = DecodeOptions(alternatives=3)
    batched = generate(model, tokenizer, PROMPTS, settings, options=options, batch_size=3)
    for prompt, [together] in zip(PROMPTS, batched, strict=True):
        [[alone]] = generate(model, tokenizer, [prompt], settings, options=options)
        assert_same_continuations(together, alone)  # padding and batch change nothing
        assert len(together.tokens) == 8 and together.finish_reason == "length"
        assert together.text == tokenizer.decode(list(together.token_ids))


def test_greedy_and_sampling_equal_transformers_generate_with_padding(tiny):
    model, tokenizer = tiny
    for settings, n in (
        (SamplingSettings(max_new_tokens=10), 1),  # generate() samples n > 1 rows only
        (SamplingSettings(max_new_tokens=10, temperature=0.7, seed=3), 2),
        (SamplingSettings(max_new_tokens=10, temperature=1.0, seed=4), 3),
    ):
        got = generate(model, tokenizer, PROMPTS, settings, n=n)
        want = reference_generate(model, tokenizer, PROMPTS, settings, n=n)
        assert [c.token_ids for row in got for c in row] == want


PASSAGE = "Passage: the quick brown fox jumps over the lazy dog, twice.\n"
SHARED = [PASSAGE + "Quote one:", PASSAGE + "Quote two words:", "Hi there", PASSAGE + "Q"]


def test_shared_prefixes_group_consecutive_prompts_with_a_long_common_beginning():
    a, b = list(range(30)), list(range(20)) + [99, 98]
    assert shared_prefixes([a, b, [5, 6], a]) == [(2, 20), (1, 1), (1, 29)]
    assert shared_prefixes([a, [5, 6], a]) is None  # nothing shared: the plain pass
    assert shared_prefixes([a, a[:17]]) == [(2, 16)]  # each keeps a token of its own
    assert shared_prefixes([a, a[:16]]) is None  # 15 shared tokens are too few
    assert shared_prefixes([a, a, [7]]) is None  # a one-token prompt: the plain pass


def test_a_shared_prefix_gives_what_each_prompt_gives_whole(tiny):
    model, tokenizer = tiny
    ids = [prompt_ids(tokenizer, p) for p in SHARED]
    assert shared_prefixes(ids) is not None  # the case this test is about
    options = DecodeOptions(alternatives=3)
    whole = DecodeOptions(alternatives=3, share_prefixes=False)
    for settings, n in (
        (SamplingSettings(max_new_tokens=8), 1),
        (SamplingSettings(max_new_tokens=8, temperature=1.0, seed=6), 2),
    ):
        shared = generate(model, tokenizer, SHARED, settings, n=n, options=options, batch_size=4)
        alone = generate(model, tokenizer, SHARED, settings, n=n, options=whole, batch_size=4)
        for got_row, want_row in zip(shared, alone, strict=True):
            for got, want in zip(got_row, want_row, strict=True):
                assert_same_continuations(got, want)
    # And greedy, against transformers' own generate() over the whole prompts.
    greedy = SamplingSettings(max_new_tokens=10)
    got = generate(model, tokenizer, SHARED, greedy, batch_size=4)
    assert [c.token_ids for row in got for c in row] == reference_generate(
        model, tokenizer, SHARED, greedy
    )


def test_the_loom_engine_and_the_batch_path_give_the_same_continuations(tiny):
    model, tokenizer = tiny
    settings = SamplingSettings(max_new_tokens=8, temperature=1.0, seed=5)
    engine = LocalEngine(model, tokenizer)
    torch.manual_seed(1)  # the global random state plays no part
    from_engine = engine.complete(PROMPTS[0], settings, n=3, alternatives=2)
    torch.manual_seed(2)
    [from_batch] = generate(
        model, tokenizer, PROMPTS[:1], settings, n=3, options=DecodeOptions(alternatives=2)
    )
    assert from_engine == from_batch  # one path: the same arithmetic, bit for bit
    assert len({c.text for c in from_engine}) == 3


def test_when_rows_finish_does_not_change_what_the_others_draw(tiny):
    """Every step draws for every row of the batch, finished or not: a row that ends at a
    stop string leaves the other rows' samples as they were."""
    model, tokenizer = tiny
    settings = SamplingSettings(max_new_tokens=12, temperature=1.0, seed=2)
    free = [c for row in generate(model, tokenizer, PROMPTS, settings, n=2) for c in row]
    # A character in some rows' texts and not in others: those rows end early.
    stop = next(
        ch
        for c in free
        for ch in c.text[1:]
        if 0 < sum(ch in other.text for other in free) < len(free)
    )
    stopped = generate(
        model, tokenizer, PROMPTS, SamplingSettings(12, 1.0, stop=(stop,), seed=2), n=2
    )
    stopped = [c for row in stopped for c in row]
    assert any(c.finish_reason == "stop" for c in stopped)
    assert any(c.finish_reason == "length" for c in stopped)
    for a, b in zip(free, stopped, strict=True):
        if b.finish_reason == "length":
            assert a.token_ids == b.token_ids
        else:
            assert stop not in b.text and a.text.startswith(b.text)


def test_stop_strings_cut_the_text_or_drop_the_whole_token(tiny):
    model, tokenizer = tiny
    [[full]] = generate(model, tokenizer, ["Once"], SamplingSettings(max_new_tokens=16))
    pieces = [t.chosen.text for t in full.tokens]
    k, stop = next(
        (i, pieces[i][-1] + pieces[i + 1][0])  # straddles tokens i and i + 1
        for i in range(3, 15)
        if pieces[i]
        and pieces[i + 1]
        and full.text.find(pieces[i][-1] + pieces[i + 1][0]) == len("".join(pieces[: i + 1])) - 1
    )
    settings = SamplingSettings(max_new_tokens=16, stop=(stop,))
    [[cut]] = generate(model, tokenizer, ["Once"], settings)
    [[whole]] = generate(
        model, tokenizer, ["Once"], settings, options=DecodeOptions(whole_token_stops=True)
    )
    end = full.text.find(stop)
    # Default: the text ends just before the stop string; the token it begins in is kept.
    assert cut.finish_reason == "stop" and cut.text == full.text[:end]
    assert cut.token_ids == full.token_ids[: k + 1]
    # Whole tokens: the token that completes the stop string goes, with all its text.
    assert whole.finish_reason == "stop" and whole.token_ids == full.token_ids[: k + 1]
    assert whole.text == "".join(pieces[: k + 1]) == tokenizer.decode(list(whole.token_ids))
    for c in (cut, whole):
        assert "".join(t.chosen.text for t in c.tokens) == c.text


def test_whole_token_stops_drop_a_token_that_holds_the_stop_string(tiny):
    model, tokenizer = tiny
    [[full]] = generate(model, tokenizer, ["Once"], SamplingSettings(max_new_tokens=12))
    pieces = [t.chosen.text for t in full.tokens]
    k = next(i for i in range(2, 12) if pieces[i])
    stop = pieces[k][0]  # inside token k (a byte tokenizer: the whole token)
    end = full.text.find(stop)
    first = next(i for i in range(len(pieces)) if len("".join(pieces[: i + 1])) > end)
    settings = SamplingSettings(max_new_tokens=12, stop=(stop,))
    [[whole]] = generate(
        model, tokenizer, ["Once"], settings, options=DecodeOptions(whole_token_stops=True)
    )
    assert whole.token_ids == full.token_ids[:first] and stop not in whole.text


def test_end_of_text_ends_a_row_or_is_never_drawn(tiny):
    model, tokenizer = tiny
    settings = SamplingSettings(max_new_tokens=10)
    [[full]] = generate(model, tokenizer, ["Once"], settings)
    ends = frozenset({full.token_ids[3]})  # make the fourth token an end of text
    ids = [prompt_ids(tokenizer, "Once")]
    [[ended]] = generate_ids(model, tokenizer, ids, settings, end_ids=ends)
    assert ended.finish_reason == "eos"
    assert ended.token_ids == full.token_ids[: full.token_ids.index(full.token_ids[3])]
    never = DecodeOptions(end_of_text=False)
    for sampled in (settings, SamplingSettings(10, temperature=1.0, seed=1)):
        [[running]] = generate_ids(model, tokenizer, ids, sampled, options=never, end_ids=ends)
        assert running.finish_reason == "length" and len(running.tokens) == 10
        assert not set(running.token_ids) & ends


def test_token_ids_alone_equal_the_continuations_tokens(tiny):
    """Drift's callers hold token ids and no tokenizer: the same path, without texts."""
    model, tokenizer = tiny
    settings = SamplingSettings(max_new_tokens=6, temperature=1.0, seed=9)
    ids = [prompt_ids(tokenizer, p) for p in ("Hello", "World")]
    with_texts = generate_ids(model, tokenizer, ids, settings)
    alone = sample_token_ids(model, torch.tensor(ids), settings)
    assert [list(c.token_ids) for [c] in with_texts] == alone
    with pytest.raises(MyopiaError, match="stop strings need the tokenizer"):
        sample_token_ids(model, torch.tensor(ids), SamplingSettings(stop=("x",)))


def test_sampling_is_seeded_and_gives_n_continuations(tiny):
    model, tokenizer = tiny
    settings = SamplingSettings(max_new_tokens=6, temperature=1.0, seed=3)
    first = generate(model, tokenizer, ["Hello", "World"], settings, n=3)
    again = generate(model, tokenizer, ["Hello", "World"], settings, n=3)
    assert [len(r) for r in first] == [3, 3]
    assert first == again
    assert len({g.token_ids for g in first[0]}) > 1  # an untrained model samples broadly


@pytest.mark.parametrize(
    ("settings", "n", "options", "message"),
    [
        (SamplingSettings(max_new_tokens=0), 1, DecodeOptions(), "max_new_tokens"),
        (SamplingSettings(temperature=-1.0), 1, DecodeOptions(), "temperature"),
        (SamplingSettings(temperature=1.0, top_p=0.0), 1, DecodeOptions(), "top_p"),
        (SamplingSettings(), 0, DecodeOptions(), "n must be at least 1"),
        (SamplingSettings(), 1, DecodeOptions(alternatives=-1), "alternatives"),
    ],
)
def test_bad_settings_are_one_line_errors(tiny, settings, n, options, message):
    model, tokenizer = tiny
    with pytest.raises(MyopiaError, match=message):
        generate(model, tokenizer, ["Hello"], settings, n=n, options=options)
