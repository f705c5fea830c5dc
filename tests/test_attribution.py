"""Current/future attribution of heads and MLPs: the fast method against its definitions."""

import json

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from myopia.attribution import agreement, all_components, attribute, sample
from myopia.attribution.components import Component, edit_outputs
from myopia.attribution.first_order import output_gradients
from myopia.attribution.readout import position_readouts
from myopia.attribution.run import AttributionConfig, measure
from myopia.data.text import load_corpus
from myopia.errors import MyopiaError
from myopia.gradients.loss import mean_token_loss
from myopia.models.fresh import FreshModelConfig, build_fresh_model
from myopia.models.loading import load_model
from test_myopic_attention import make_batch, tiny_model


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request):
    return tiny_model(request.param)


def brute_force_current_gradients(model, batch):
    """The definition, one position at a time: for each t, the gradient of L_t alone
    (ordinary attention) with respect to every component output at t. (kind, layer) ->
    (B, T-1, W)."""
    seq_len = batch["input_ids"].shape[1]
    rows: dict[tuple[str, int], list[torch.Tensor]] = {}
    for t in range(seq_len - 1):
        deltas = {}

        def leaf(kind, deltas=deltas):
            def edit(layer, value):
                deltas[kind, layer] = torch.zeros_like(value, requires_grad=True)
                return value + deltas[kind, layer]

            return edit

        with edit_outputs(model, leaf("heads"), leaf("mlp")):
            readouts = position_readouts(model, batch, "loss")
        keys = list(deltas)
        grads = torch.autograd.grad(readouts[:, t].sum(), [deltas[k] for k in keys])
        for key, grad in zip(keys, grads, strict=True):
            rows.setdefault(key, []).append(grad[:, t])
    return {key: torch.stack(row, dim=1) for key, row in rows.items()}


@pytest.mark.parametrize("padding", ["none", "right"])
def test_myopic_backward_gives_each_positions_own_gradient(model, padding):
    # (a) One backward of Σ_s L_s under myopic(model, "kv") gives, at every component
    # output at t, the gradient of L_t alone; the ordinary backward gives more than that.
    batch = make_batch(padding)
    expected = brute_force_current_gradients(model, batch)
    current = output_gradients(model, batch, mode="kv")
    total = output_gradients(model, batch)
    # Llama's RMSNorm computes in float32 even in a float64 model.
    tol = 1e-6 if model.config.model_type == "llama" else 1e-12
    n_layers = model.config.num_hidden_layers
    for layer in range(n_layers):
        for kind, grads, totals in (
            ("heads", current.head_grads, total.head_grads),
            ("mlp", current.mlp_grads, total.mlp_grads),
        ):
            want = expected[kind, layer]
            got = grads[layer][:, :-1]
            assert (got - want).norm() <= tol * want.norm(), (kind, layer)
            if layer < n_layers - 1:  # earlier layers' outputs also serve later tokens
                assert (totals[layer][:, :-1] - want).norm() > 1e-3 * want.norm()


def affine_gpt2() -> torch.nn.Module:
    """A 2-layer GPT-2 whose read-out is an affine function of every component output.

    - LayerNorm eps = 1e20 (weights 1e10): var + eps rounds to exactly eps in float64
      while var < ~1e4, so each LayerNorm is x -> (x - mean x) * 1e-10 * 1e10 + b, affine;
    - layer 1's query and key weights are zero: all its scores are 0 and its attention
      weights uniform over the causal prefix whatever the input, so its output is a fixed
      average of values, affine in the residual stream (and layer 0's later positions
      still reach later tokens through it: nonzero future effects);
    - both MLPs' input weights are zero: their output is GELU(0) W + b = b, a constant.
    """
    config = GPT2Config(
        vocab_size=50,
        n_embd=32,
        n_inner=64,
        n_layer=2,
        n_head=4,
        n_positions=64,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e20,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(3)
    model = GPT2LMHeadModel(config).double().eval()
    model.set_attn_implementation("sdpa")
    with torch.no_grad():
        for name, param in model.named_parameters():  # larger than GPT-2's init: big effects
            if name.endswith("weight"):
                param.normal_(0, 0.3)
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1e10)
        for block in model.transformer.h:
            block.mlp.c_fc.weight.zero_()
            block.mlp.c_fc.bias.zero_()
            block.mlp.c_proj.bias.normal_()
        c_attn = model.transformer.h[1].attn.c_attn  # Conv1D (D, 3D): q | k | v
        c_attn.weight[:, : 2 * config.n_embd].zero_()
        c_attn.bias[: 2 * config.n_embd].zero_()
    return model


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_first_order_equals_ablation_where_first_order_is_exact(ablation):
    # (b) With the read-out -logit (linear in the logits) on a model where the path from
    # every component output to the logits is affine, f(o + Δ) - f(o) = ∂f/∂o · Δ exactly:
    # the two methods must agree to rounding error.
    model = affine_gpt2()
    ids = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(0))
    fast = attribute(model, ids, ablation=ablation, readout="logit")
    exact = attribute(model, ids, method="ablation", ablation=ablation, readout="logit")
    assert fast.names == exact.names and fast.positions == exact.positions == list(range(9))
    for part in ("current", "future"):
        got, want = getattr(fast, part), getattr(exact, part)
        assert (got - want).abs().max() <= 1e-10 * want.abs().max(), part
    layer0 = torch.tensor([c.layer == 0 for c in exact.components])
    # Not a vacuous check: layer 0's heads (and, zero-ablated, its constant MLP, whose mean
    # ablation changes nothing) reach later tokens.
    moved = layer0 & torch.tensor([ablation == "zero" or not c.is_mlp for c in exact.components])
    assert (exact.future[moved].abs().sum((1, 2)) > 0).all()
    assert (exact.future[~layer0] == 0).all()


def briefly_trained_llama() -> tuple[torch.nn.Module, torch.Tensor]:
    config = FreshModelConfig(d_model=64, n_layers=3, n_heads=4, d_mlp=128, seed=0)
    model = build_fresh_model(config)
    text = b"the cat sat on the mat. the dog sat on the log. " * 40
    data = torch.tensor(list(text), dtype=torch.long).unfold(0, 33, 17)  # (N, 33) bytes
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(60):
        batch = data[(step * 8) % (len(data) - 8) :][:8]
        loss = mean_token_loss(model, {"input_ids": batch})
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    eval_ids = torch.tensor(list(b"the log sat on the cat. the mat"), dtype=torch.long)
    return model, torch.stack([eval_ids, eval_ids.flip(0)])


def test_fast_ranks_components_as_ablation_does():
    # (c) On a small briefly trained model the first-order effects rank like the exact ones.
    # Measured here (mean ablation): rho 0.99 (current) and 1.00 (future) over components,
    # 0.78 and 0.73 over single (component, sequence, position) effects.
    model, ids = briefly_trained_llama()
    fast = attribute(model, ids)
    exact = attribute(model, ids, method="ablation")
    rho = agreement(fast, exact)
    assert rho["n_components_with_future"] == 10  # the last layer's 5 have none
    assert rho["current_over_components"] > 0.9, rho
    assert rho["future_over_components"] > 0.9, rho
    assert rho["current_per_entry"] > 0.6, rho
    assert rho["future_per_entry"] > 0.6, rho


@pytest.mark.parametrize("method", ["first_order", "ablation"])
def test_nothing_after_the_last_position_or_the_last_layer(model, method):
    # (d) The last position that predicts a token has no later loss; the last layer's
    # outputs reach only their own position's loss. Both futures are exactly zero.
    ids = make_batch("none")["input_ids"]
    result = attribute(model, ids, method=method)
    assert result.positions[-1] == ids.shape[1] - 2
    assert (result.future[:, :, -1] == 0).all()
    last = torch.tensor([c.layer == model.config.num_hidden_layers - 1 for c in result.components])
    assert (result.future[last] == 0).all()
    assert (result.future[~last].abs().sum((1, 2)) > 0).all()
    assert (result.current.abs().sum((1, 2)) > 0).all()


def test_padding_changes_nothing_for_the_real_tokens(model):
    # Zero ablation of a sequence does not depend on the rest of the batch; with a padded
    # neighbour it must give what it gives alone, and nothing at the padded positions.
    batch = make_batch("right")  # sequence 1 ends in 3 padding tokens
    for method in ("first_order", "ablation"):
        padded = attribute(
            model, batch["input_ids"], method, "zero", attention_mask=batch["attention_mask"]
        )
        alone = attribute(model, batch["input_ids"][:1], method, "zero")
        assert torch.allclose(padded.current[:, :1], alone.current, rtol=1e-6, atol=1e-12)
        assert torch.allclose(padded.future[:, :1], alone.future, rtol=1e-6, atol=1e-12)
        assert (padded.current[:, 1, -3:] == 0).all()


def test_sampling_and_batching_the_ablations_change_nothing(model):
    ids = make_batch("none")["input_ids"]
    names, positions = sample(model, ids.shape[1], n_components=4, n_positions=3, seed=1)
    assert len(names) == 4 and len(positions) == 3 and positions == sorted(positions)
    one = attribute(model, ids, "ablation", components=names, positions=positions, chunk=1)
    many = attribute(model, ids, "ablation", components=names, positions=positions, chunk=5)
    full = attribute(model, ids, "ablation")
    # chunk sets how many ablations share a batch: batched kernels need not be
    # bit-identical across batch sizes, so equal means equal to float64 rounding.
    assert torch.allclose(one.current, many.current, rtol=1e-9, atol=1e-14)
    assert torch.allclose(one.future, many.future, rtol=1e-9, atol=1e-14)
    picked = full.select(names, positions)
    assert torch.allclose(picked.current, one.current, rtol=1e-9, atol=1e-14)
    assert torch.allclose(picked.future, one.future, rtol=1e-9, atol=1e-14)
    fast = attribute(model, ids, components=names, positions=positions)
    assert fast.names == names and fast.current.shape == (4, 2, 3)


def test_result_api(model):
    ids = make_batch("none")["input_ids"]
    result = attribute(model, ids[0])  # (T,) is one sequence
    names = [c.name for c in all_components(model)]
    assert names[:5] == ["L0.H0", "L0.H1", "L0.H2", "L0.H3", "L0.MLP"]
    assert result.names == names and result.current.shape == (10, 1, 7)
    shares = result.future_share()
    assert set(shares) == set(names) and all(0 <= s <= 1 for s in shares.values())
    assert shares["L1.MLP"] == 0 and shares["L0.H2"] > 0
    data = json.loads(json.dumps(result.to_dict()))
    assert data["components"]["L0.H2"]["future_share"] == pytest.approx(shares["L0.H2"])
    assert len(data["by_position"]["heads_future"]) == 7
    grid = result.share_grid()
    assert grid.shape == (2, 5) and grid[0, 2] == pytest.approx(shares["L0.H2"])
    assert Component.parse("L12.H3") == Component(12, 3) and Component(4).name == "L4.MLP"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "exact"}, "unknown method"),
        ({"ablation": "resample"}, "unknown ablation"),
        ({"readout": "prob"}, "unknown read-out"),
        ({"components": ["L9.H0"]}, "no component L9.H0"),
        ({"components": ["layer0"]}, "bad component name"),
        ({"positions": [7]}, "outside 0..6"),
    ],
)
def test_mistakes_are_explained(model, kwargs, message):
    with pytest.raises(MyopiaError, match=message):
        attribute(model, make_batch("none")["input_ids"], **kwargs)


def test_refuses_a_model_left_in_myopic_mode(model):
    from myopia.attention import set_myopic

    set_myopic(model, "bigram")
    try:
        with pytest.raises(MyopiaError, match="myopic mode 'bigram'"):
            attribute(model, make_batch("none")["input_ids"])
    finally:
        set_myopic(model, None)


def test_command_writes_plots_with_their_data(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    out = tmp_path / "out"
    model, tokenizer = load_model("fresh-llama:d_model=32,n_layers=2,n_heads=4")
    config = AttributionConfig(seq_len=24, n_sequences=2)
    run = measure(model, tokenizer, config, load_corpus(text))
    files = run.write(out, "tiny")
    assert [f.name for f in files] == [
        "future_share_heatmap.png",
        "effect_by_position.png",
        "attribution.json",
    ]
    for name in ("future_share_heatmap", "effect_by_position"):
        assert (out / f"{name}.png").stat().st_size > 1000
        assert json.loads((out / f"{name}.json").read_text())
    heatmap = json.loads((out / "future_share_heatmap.json").read_text())
    assert heatmap["columns"][-1] == "MLP" and len(heatmap["future_share"]) == 2
    assert run.to_dict(per_position=False)["components"].keys() == set(run.attribution.names)
    assert json.loads((out / "attribution.json").read_text())["per_position"]["L0.H0"]
