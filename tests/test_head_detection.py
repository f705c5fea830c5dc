"""Head detection: planted heads in tiny real models, patterns checked by hand, the
TransformerLens metric checked against a loop that follows its definition literally."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from myopia.attention import myopic
from myopia.data.text import load_corpus
from myopia.errors import MyopiaError
from myopia.gradients.loss import forward_logits, token_losses
from myopia.heads import (
    Head,
    HeadScores,
    attention_patterns,
    detect_heads,
    duplicate_token_pattern,
    induction_pattern,
    induction_stripe_scores,
    previous_token_pattern,
    repeated_random_tokens,
    repeated_token_losses,
    returning_weights,
)
from myopia.heads.scan import HeadScanConfig, measure, text_batch
from myopia.models.loading import load_model

SHARP = 10.0  # query scale of planted heads: off-target attention below e^-50


def positional_gpt2(offsets: dict[int, int], positions: int = 32, n_layers: int = 2):
    """A GPT-2 whose layer-0 head h attends from every query t >= offsets[h] exactly to
    key t - offsets[h]; every other head has zero queries, so uniform causal attention.

    Tokens are ignored (zero token embeddings). Position p's embedding is
    e_p - e_{positions + p}, which layer norm maps to sqrt(d/2) times itself, so with
    head size >= positions a query can be position t one-hot and a key position s + offset
    one-hot: their dot product is large exactly when s = t - offset.
    """
    d_model, n_heads = 2 * positions, 2
    head_size = d_model // n_heads
    config = GPT2Config(
        vocab_size=64,
        n_embd=d_model,
        n_layer=n_layers,
        n_head=n_heads,
        n_positions=positions,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        model.transformer.wte.weight.zero_()
        wpe = torch.zeros(positions, d_model)
        wpe[torch.arange(positions), torch.arange(positions)] = 1.0
        wpe[torch.arange(positions), positions + torch.arange(positions)] = -1.0
        model.transformer.wpe.weight.copy_(wpe)
        for block in model.transformer.h:
            block.ln_1.weight.fill_(1.0)
            block.ln_1.bias.zero_()
            block.attn.c_attn.weight[:, :d_model] = 0.0  # Conv1D weight: (d_in, q|k|v)
            block.attn.c_attn.bias[:d_model] = 0.0
        c_attn = model.transformer.h[0].attn.c_attn
        for head, offset in offsets.items():
            q0, k0 = head * head_size, d_model + head * head_size
            c_attn.weight[:, k0 : k0 + head_size] = 0.0
            for j in range(head_size):
                c_attn.weight[j, q0 + j] = SHARP  # query: position t one-hot
                if j + offset < head_size:
                    c_attn.weight[j, k0 + j + offset] = 1.0  # key: position s + offset
    return model


def rope_previous_token_llama(planted_head: int = 3):
    """A Llama with 4 query heads sharing 2 key/value heads whose query head
    ``planted_head`` attends from t to t - 1, by rotary positions alone: constant query
    and key (biases only) whose angle in the three fastest rotary planes is minus one
    step, so the score is sum_i A cos((t - s - 1) theta_i). Other heads: zero queries."""
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attention_bias=True,
        attention_dropout=0.0,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    head_size, groups = 16, 2
    theta = model.model.rotary_emb.inv_freq  # (head_size / 2,) radians per position
    amplitude = 160.0  # margin sum_i (1 - cos(m theta_i)) >= 0.51 for m != 0, m < 64
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.zero_()
            layer.self_attn.q_proj.bias.zero_()
        attn = model.model.layers[0].self_attn
        q = slice(planted_head * head_size, (planted_head + 1) * head_size)
        kv = slice((planted_head // groups) * head_size, (planted_head // groups + 1) * head_size)
        attn.k_proj.weight[kv] = 0.0
        key_bias, query_bias = torch.zeros(head_size), torch.zeros(head_size)
        half = head_size // 2
        for i in range(3):  # plane i is dims (i, i + half), rotated by position * theta_i
            key_bias[i] = 1.0
            query_bias[i] = amplitude * math.cos(theta[i])
            query_bias[i + half] = -amplitude * math.sin(theta[i])
        attn.k_proj.bias[kv] = key_bias
        attn.q_proj.bias[q] = query_bias
    return model


def uniform_score(pattern: torch.Tensor) -> torch.Tensor:
    """The 'mul' score of a head attending uniformly to 0..t, per sequence: (B,)."""
    seq_len = pattern.shape[-1]
    row_counts = pattern.float().sum(-1)  # (B, T): pattern entries in query row t
    return (row_counts / torch.arange(1, seq_len + 1)).sum(-1) / seq_len


def loop_reference(attention, input_ids, kind, exclude_bos, exclude_current_token):
    """TransformerLens's per-sequence, per-head procedure written out with loops."""
    batch, n_heads, seq_len, _ = attention.shape
    scores = torch.zeros(batch, n_heads)
    for b in range(batch):
        tokens = input_ids[b].tolist()
        target = torch.zeros(seq_len, seq_len)
        for i in range(seq_len):
            for j in range(i + 1):
                if kind == "previous_token":
                    target[i, j] = float(j == i - 1)
                elif kind == "duplicate_token":
                    target[i, j] = float(j < i and tokens[j] == tokens[i])
                else:  # the key after an earlier copy of the query's token
                    target[i, j] = float(j >= 1 and j - 1 < i and tokens[j - 1] == tokens[i])
        for h in range(n_heads):
            a = attention[b, h].clone()
            if exclude_bos:
                a[:, 0] = 0
            if exclude_current_token:
                a.fill_diagonal_(0)
            scores[b, h] = (a * target).sum() / a.sum()
    return scores.mean(0)


def test_patterns_by_hand():
    ids = torch.tensor([[5, 7, 9, 5, 7, 5]])

    def pairs(pattern):
        return sorted(map(tuple, pattern[0].nonzero().tolist()))

    assert pairs(previous_token_pattern(ids)) == [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4)]
    assert pairs(duplicate_token_pattern(ids)) == [(3, 0), (4, 1), (5, 0), (5, 3)]
    assert pairs(induction_pattern(ids)) == [(3, 1), (4, 2), (5, 1), (5, 4)]
    # A token repeating the one before it: as in TransformerLens, its own position is the
    # "token after the earlier copy".
    assert pairs(induction_pattern(torch.tensor([[3, 3, 4]]))) == [(1, 1)]
    assert pairs(duplicate_token_pattern(torch.tensor([[3, 3, 4]]))) == [(1, 0)]
    # Batched: each row has its own pattern.
    both = duplicate_token_pattern(torch.tensor([[1, 2, 1], [1, 1, 2]]))
    assert both[0].nonzero().tolist() == [[2, 0]] and both[1].nonzero().tolist() == [[1, 0]]


def test_planted_previous_token_head_gpt2():
    model = positional_gpt2({0: 1})
    seq_len = 24
    ids = torch.randint(0, 64, (3, seq_len), generator=torch.Generator().manual_seed(1))
    scores = detect_heads(model, ids)
    prev = scores["previous_token"]
    assert prev.shape == (2, 2)
    # Every query but the first puts all its attention on t - 1: (T - 1) / T of the mass.
    assert prev[0, 0].item() == pytest.approx((seq_len - 1) / seq_len, abs=1e-5)
    expected_uniform = uniform_score(previous_token_pattern(ids[:1]))[0].item()
    assert expected_uniform < 0.2
    for layer, head in [(0, 1), (1, 0), (1, 1)]:
        assert prev[layer, head].item() == pytest.approx(expected_uniform, abs=1e-5)
    assert scores.top("previous_token", 1) == [Head(0, 0, pytest.approx(prev[0, 0].item()))]
    # Without the first query's forced attention to itself, the head is perfect.
    no_self = detect_heads(model, ids, ["previous_token"], exclude_current_token=True)
    assert no_self["previous_token"][0, 0].item() == pytest.approx(1.0, abs=1e-5)
    # Uniform heads on duplicate tokens: the exact expected value, per sequence, averaged.
    expected_dup = uniform_score(duplicate_token_pattern(ids)).mean().item()
    assert scores["duplicate_token"][1, 1].item() == pytest.approx(expected_dup, abs=1e-5)


def test_gqa_scores_per_query_head():
    model = rope_previous_token_llama(planted_head=3)
    assert model.config._attn_implementation == "sdpa"
    seq_len = 40
    ids = torch.randint(0, 64, (2, seq_len), generator=torch.Generator().manual_seed(2))
    scores = detect_heads(model, ids, ("previous_token", "induction"))
    prev = scores["previous_token"]
    assert prev.shape == (2, 4)  # one score per query head, not per key/value head
    assert prev[0, 3].item() == pytest.approx((seq_len - 1) / seq_len, abs=1e-4)
    uniform = uniform_score(previous_token_pattern(ids[:1]))[0].item()
    others = [prev[layer, head].item() for layer in range(2) for head in range(4)]
    others.remove(prev[0, 3].item())
    assert others == pytest.approx([uniform] * 7, abs=1e-5)  # head 2 shares head 3's keys
    assert model.config._attn_implementation == "sdpa"  # restored


def test_fresh_models_shapes_and_implementation_restored():
    for spec, heads in [
        ("fresh-llama:d_model=48,n_layers=3,n_heads=6,n_kv_heads=2", 6),
        ("fresh-gpt2:d_model=32,n_layers=3,n_heads=4", 4),
    ]:
        model, _ = load_model(spec)
        ids = torch.randint(3, 300, (2, 10), generator=torch.Generator().manual_seed(0))
        scores = detect_heads(model, ids)
        assert set(scores.kinds) == {"previous_token", "duplicate_token", "induction"}
        for table in scores.scores.values():
            assert table.shape == (3, heads)
            assert ((table >= 0) & (table <= 1)).all()
        assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize(
    "exclude_bos,exclude_current", [(False, False), (True, False), (False, True), (True, True)]
)
def test_metric_matches_transformerlens_procedure(exclude_bos, exclude_current):
    model, _ = load_model("fresh-llama:d_model=32,n_layers=2,n_heads=4")
    # Few distinct tokens, so duplicates and induction targets are frequent.
    ids = torch.randint(3, 8, (3, 12), generator=torch.Generator().manual_seed(3))
    scores = detect_heads(
        model, ids, exclude_bos=exclude_bos, exclude_current_token=exclude_current, batch_size=2
    )
    patterns = attention_patterns(model, ids)
    for kind in scores.kinds:
        for layer, attention in enumerate(patterns):
            expected = loop_reference(attention, ids, kind, exclude_bos, exclude_current)
            assert torch.allclose(scores[kind][layer], expected, atol=1e-6), (kind, layer)


def test_returning_weights_switches_and_restores():
    model, _ = load_model("fresh-llama:d_model=32,n_layers=1,n_heads=2")
    with returning_weights(model):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError), returning_weights(model):
        raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"
    with myopic(model, "kv"):  # the eager twin of the registered myopic backend
        with returning_weights(model):
            assert model.config._attn_implementation == "myopic_kv_eager"
        assert model.config._attn_implementation == "myopic_kv"


def test_repeated_random_tokens():
    _, tokenizer = load_model("fresh-gpt2:d_model=16,n_layers=1,n_heads=2")
    ids = repeated_random_tokens(tokenizer, n=500, batch=4, seed=7)
    assert ids.shape == (4, 1000)  # the byte tokenizer has no BOS
    assert torch.equal(ids[:, :500], ids[:, 500:])
    assert not set(ids.unique().tolist()) & set(tokenizer.all_special_ids)
    assert torch.equal(ids, repeated_random_tokens(tokenizer, n=500, batch=4, seed=7))
    assert not torch.equal(ids, repeated_random_tokens(tokenizer, n=500, batch=4, seed=8))
    with_bos = repeated_random_tokens(100, n=5, batch=2, seed=0, bos=99)
    assert with_bos.shape == (2, 11) and (with_bos[:, 0] == 99).all()
    assert torch.equal(with_bos[:, 1:6], with_bos[:, 6:]) and with_bos[:, 1:].max() < 100
    with pytest.raises(MyopiaError):
        repeated_random_tokens(100, n=1, batch=2)


def test_induction_stripe_on_planted_heads():
    n, batch = 8, 3
    model = positional_gpt2({0: n - 1, 1: 1})
    # Distinct tokens within a copy, so the only induction target is the stripe.
    generator = torch.Generator().manual_seed(4)
    copies = torch.stack([torch.randperm(60, generator=generator)[:n] for _ in range(batch)])
    ids = torch.cat([torch.full((batch, 1), 63), copies, copies], dim=1)  # (3, 17)
    stripe = induction_stripe_scores(model, n, input_ids=ids)["induction_stripe"]
    assert stripe.shape == (2, 2)
    assert stripe[0, 0].item() == pytest.approx(1.0, abs=1e-5)  # attends to t - n + 1
    assert stripe[0, 1].item() == pytest.approx(0.0, abs=1e-5)  # attends to t - 1
    second_copy = torch.arange(1 + n, 1 + 2 * n)
    uniform = (1.0 / (second_copy + 1)).mean().item()
    assert stripe[1].tolist() == pytest.approx([uniform, uniform], abs=1e-6)
    # TransformerLens's induction pattern agrees: n of the 2n + 1 queries hit it fully.
    tl = detect_heads(model, ids, ["induction"])["induction"]
    assert tl[0, 0].item() == pytest.approx(n / (2 * n + 1), abs=1e-5)
    # Without a BOS the stripe moves with the copies.
    no_bos = induction_stripe_scores(model, n, input_ids=ids[:, 1:])["induction_stripe"]
    assert no_bos[0, 0].item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(MyopiaError):
        induction_stripe_scores(model, n, input_ids=ids[:, :12])


def test_induction_stripe_draws_tokens():
    model, tokenizer = load_model("fresh-gpt2:d_model=16,n_layers=2,n_heads=2")
    scores = induction_stripe_scores(model, n=6, batch=2, seed=1, tokenizer=tokenizer)
    assert scores.seq_len == 12 and scores.n_sequences == 2
    assert scores.method["prefix"] == 0
    assert scores["induction_stripe"].shape == (2, 2)


def test_repeated_token_losses_by_hand():
    model, _ = load_model("fresh-llama:d_model=32,n_layers=1,n_heads=2")
    n = 4
    for prefix, bos in [(1, 50), (0, False)]:
        ids = repeated_random_tokens(300, n, batch=3, seed=5, bos=bos)
        result = repeated_token_losses(model, ids, n)
        assert result.prefix == prefix
        with torch.no_grad():
            losses = token_losses(forward_logits(model, {"input_ids": ids}), ids)  # (B, T-1)
        # Predicted token positions: first copy (with something before it), second copy.
        first_positions = [p for p in range(prefix, prefix + n) if p >= 1]
        second_positions = list(range(prefix + n, prefix + 2 * n))
        first = losses[:, [p - 1 for p in first_positions]].mean(1)
        second = losses[:, [p - 1 for p in second_positions]].mean(1)
        assert torch.allclose(result.first, first, atol=1e-6)
        assert torch.allclose(result.second, second, atol=1e-6)
        assert math.isnan(result.per_position[0].item())
        assert torch.allclose(result.per_position[1:], losses.mean(0), atol=1e-6)
        json.dumps(result.to_dict())


def test_head_scores_top_and_dict():
    table = torch.tensor([[0.1, 0.9, 0.3], [0.9, 0.2, 0.5]])
    scores = HeadScores({"induction": table}, n_sequences=2, seq_len=5)
    top = scores.top("induction", 3)
    assert [(h.layer, h.head) for h in top] == [(0, 1), (1, 0), (1, 2)]
    assert top[0].score == pytest.approx(0.9)
    data = json.loads(json.dumps(scores.to_dict(k=2)))
    assert data["scores"]["induction"][1][2] == pytest.approx(0.5)
    assert data["top"]["induction"][1] == {"layer": 1, "head": 0, "score": pytest.approx(0.9)}
    with pytest.raises(MyopiaError):
        scores["previous_token"]


def test_bad_inputs():
    model, _ = load_model("fresh-gpt2:d_model=16,n_layers=1,n_heads=2")
    ids = torch.randint(3, 100, (2, 8))
    with pytest.raises(MyopiaError, match="unknown head kind"):
        detect_heads(model, ids, ["successor"])
    with pytest.raises(MyopiaError, match="2 or more tokens"):
        detect_heads(model, ids[:, :1])
    with pytest.raises(MyopiaError, match="integer"):
        detect_heads(model, ids.float())
    with pytest.raises(MyopiaError, match="context"):
        detect_heads(model, torch.zeros(1, 600, dtype=torch.long))


def test_a_head_scan_writes_figure_and_json(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat and the dog sat on the log.\n" * 40)
    documents = load_corpus(text)
    model, tokenizer = load_model("fresh-gpt2:d_model=32,n_layers=2,n_heads=4")
    report = measure(model, tokenizer, HeadScanConfig(seq_len=24, batch=3), documents, "text")
    assert report.kinds == ("previous_token", "duplicate_token", "induction", "induction_stripe")
    files = report.write(tmp_path / "out", "tiny")
    assert [p.name for p in files] == ["heads.png", "heads.json"]
    assert all(p.stat().st_size > 0 for p in files)
    data = json.loads(files[1].read_text())
    assert data["detection"]["n_sequences"] == 3 and data["detection"]["seq_len"] == 24
    assert data["stripe"]["method"]["n"] == 12  # no BOS in the byte tokenizer: 24 // 2
    assert len(data["detection"]["scores"]["induction"]) == 2
    lines = report.summary_lines(k=2)
    assert len(lines) == 5 and lines[0].startswith("previous_token")
    # More windows than the held-out part has: the rest of the text supplies them.
    assert text_batch(tokenizer, documents, 24, 20).shape == (20, 24)
    with pytest.raises(MyopiaError, match="windows"):
        measure(model, tokenizer, HeadScanConfig(seq_len=24, batch=10_000), documents)
