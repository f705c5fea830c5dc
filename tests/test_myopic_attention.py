"""Every myopic mode, on both paths, against the literal one-target-at-a-time definition."""

import pytest
import torch

from myopia.attention import current_mode, myopic, set_myopic
from myopia.errors import MyopiaError
from myopia.gradients.loss import forward_logits, mean_token_loss
from myopia.gradients.reference import reference_myopic_gradient
from myopia.models.fresh import FreshModelConfig, build_fresh_model

# Llama's RMSNorm computes in float32 even in a float64 model (transformers' choice), so
# gradients that take different routes agree to ~1e-7 there and to ~1e-15 in GPT-2.
REL_TOL = 1e-6


def tiny_model(architecture: str) -> torch.nn.Module:
    config = FreshModelConfig(
        architecture=architecture,
        d_model=32,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2 if architecture == "llama" else 4,  # grouped-query attention in Llama
        d_mlp=64,
        vocab_size=50,
        seed=1,
    )
    model = build_fresh_model(config).double()
    model.set_attn_implementation("sdpa")
    return model


def make_batch(padding: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, 50, (2, 8), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    if padding == "left":
        attention_mask[0, :3] = 0
    elif padding == "right":
        attention_mask[1, -3:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def gradients(model) -> dict[str, torch.Tensor]:
    return {
        n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
        for n, p in model.named_parameters()
    }


def assert_close(actual: dict, expected: dict) -> None:
    for name, ref in expected.items():
        err = (actual[name] - ref).norm().item()
        # A parameter the definition gives (numerically) no gradient must get none here.
        assert err <= REL_TOL * max(ref.norm().item(), 1e-9), name


def assert_both_paths_match(model, batch, mode, expected, backends=("eager", "fast")) -> None:
    """One myopic forward/backward per backend gives the ``expected`` gradient."""
    for backend in backends:
        model.zero_grad()
        with myopic(model, mode, backend):
            mean_token_loss(model, batch).backward()
        assert_close(gradients(model), expected)


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request):
    return tiny_model(request.param)


@pytest.mark.parametrize("padding", ["none", "left", "right"])
@pytest.mark.parametrize("mode", ["kv", "residual", "bigram"])
def test_gradient_equals_brute_force_definition(model, mode, padding):
    batch = make_batch(padding)
    assert_both_paths_match(model, batch, mode, reference_myopic_gradient(model, batch, mode))


@pytest.mark.parametrize("mode", ["kv", "residual"])
@pytest.mark.parametrize("backend", ["eager", "fast"])
def test_forward_values_equal_ordinary_attention(model, mode, backend):
    batch = make_batch("left")
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        ordinary = forward_logits(model, batch)
        with myopic(model, mode, backend):
            myopic_logits = forward_logits(model, batch)
    torch.testing.assert_close(myopic_logits[real], ordinary[real], rtol=1e-12, atol=1e-12)


def test_myopic_gradient_differs_from_full_gradient(model):
    # Guards the test above against a reference that silently computes the full gradient.
    batch = make_batch("none")
    model.zero_grad()
    mean_token_loss(model, batch).backward()
    full = gradients(model)
    myopic_grad = reference_myopic_gradient(model, batch, "kv")
    gap = sum((full[n] - myopic_grad[n]).norm() ** 2 for n in full) ** 0.5
    assert gap > 1e-3 * sum(g.norm() ** 2 for g in full.values()) ** 0.5


def test_residual_and_kv_differ_only_in_key_value_projections(model):
    batch = make_batch("none")
    kv = reference_myopic_gradient(model, batch, "kv")
    residual = reference_myopic_gradient(model, batch, "residual")
    for name in kv:
        if not any(k in name for k in ("k_proj", "v_proj", "c_attn")):
            assert (kv[name] - residual[name]).norm() <= 1e-9 * max(kv[name].norm(), 1e-9), name
    assert any((kv[n] - residual[n]).norm() > 1e-6 for n in kv if "k_proj" in n or "c_attn" in n)


def test_bigram_positions_are_independent(model):
    batch = make_batch("none")
    changed = {k: v.clone() for k, v in batch.items()}
    changed["input_ids"][:, :4] = (changed["input_ids"][:, :4] + 7) % 50
    with torch.no_grad(), myopic(model, "bigram"):
        before = forward_logits(model, batch)
        after = forward_logits(model, changed)
    torch.testing.assert_close(before[:, 4:], after[:, 4:])
    assert not torch.allclose(before[:, :4], after[:, :4])


def test_switch_restores_the_original_implementation(model):
    original = model.config._attn_implementation
    with myopic(model, "residual"):
        assert current_mode(model) == "residual"
        with myopic(model, "kv", "eager"):
            assert model.config._attn_implementation == "myopic_kv_eager"
        assert current_mode(model) == "residual"
    assert model.config._attn_implementation == original
    assert current_mode(model) is None
    # No weight-only hooks are left behind: projections produce their ordinary width.
    batch = make_batch("none")
    with torch.no_grad():
        forward_logits(model, batch)


def test_plain_setting_works_through_transformers(model):
    batch = make_batch("none")
    expected = reference_myopic_gradient(model, batch, "kv")
    original = model.config._attn_implementation
    model.set_attn_implementation("myopic_kv")
    try:
        model.zero_grad()
        mean_token_loss(model, batch).backward()
    finally:
        model.set_attn_implementation(original)
    assert_close(gradients(model), expected)


def test_residual_without_its_hooks_is_a_clear_error(model):
    original = model.config._attn_implementation
    model.set_attn_implementation("myopic_residual")
    try:
        with pytest.raises(MyopiaError, match="set_myopic"):
            forward_logits(model, make_batch("none"))
    finally:
        model.set_attn_implementation(original)


def test_unknown_mode_is_a_clear_error(model):
    with pytest.raises(MyopiaError, match="unknown myopic mode"):
        set_myopic(model, "future")


@pytest.mark.parametrize("padding", ["none", "left"])
def test_fast_path_without_fused_kernel_matches_definition(model, padding, monkeypatch):
    # Off the CPU the fast path computes row log-sum-exps itself; check that route here.
    from myopia.attention import functions

    monkeypatch.setattr(functions, "_CPU_FUSED", None)
    batch = make_batch(padding)
    for mode in ["kv", "residual"]:
        expected = reference_myopic_gradient(model, batch, mode)
        assert_both_paths_match(model, batch, mode, expected, backends=("fast",))


def _efficient_kernel_stand_in(q, k, v, bias, compute_log_sumexp, dropout_p, is_causal, *, scale):
    """The CUDA memory-efficient kernel's contract on the CPU (plain math): equal head
    counts, a (B, H, Q, K) bias with 16-aligned rows, a log-sum-exp padded to 32 rows."""
    batch, n_heads, q_len, _ = q.shape
    k_len = k.shape[2]
    assert k.shape[1] == v.shape[1] == n_heads and compute_log_sumexp and dropout_p == 0.0
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, H, Q, K)
    if is_causal:
        assert bias is None
        scores = scores.masked_fill(torch.ones_like(scores, dtype=torch.bool).triu(1), -torch.inf)
    elif bias is not None:
        assert bias.shape == (batch, n_heads, q_len, k_len) and bias.stride(-2) % 16 == 0
        scores = scores + bias
    lse = torch.logsumexp(scores, -1)
    padding = torch.full((batch, n_heads, -q_len % 32), torch.nan, dtype=lse.dtype)
    out = torch.matmul(torch.softmax(scores, -1), v)
    return out, torch.cat([lse, padding], -1), torch.empty(()), torch.empty(())


@pytest.mark.parametrize("padding", ["none", "left"])
def test_fast_path_math_of_the_cuda_kernel_matches_definition(model, padding, monkeypatch):
    # On CUDA the fast path takes row log-sum-exps from the memory-efficient kernel; its
    # use (head expansion, aligned bias, padded log-sum-exp) is checked here on the CPU.
    from myopia.attention import functions

    monkeypatch.setattr(functions, "_CPU_FUSED", None)
    monkeypatch.setattr(functions, "_EFFICIENT", _efficient_kernel_stand_in)
    monkeypatch.setattr(functions, "_uses_efficient_kernel", lambda q: True)
    batch = make_batch(padding)
    for mode in ["kv", "residual"]:
        expected = reference_myopic_gradient(model, batch, mode)
        assert_both_paths_match(model, batch, mode, expected, backends=("fast",))
