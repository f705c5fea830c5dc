"""The gradient split: current = exact myopic gradient, current + future = full gradient."""

import pytest
import torch

from myopia.errors import MyopiaError
from myopia.gradients.future_share import measure_future_share
from myopia.gradients.reference import reference_myopic_gradient
from myopia.gradients.split import NORM_ROW, parameter_group, split_gradient, squared_norm
from test_myopic_attention import assert_close, make_batch, tiny_model


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request):
    return tiny_model(request.param)


def ordinary_gradient(model, batch):
    from myopia.gradients.loss import mean_token_loss

    model.zero_grad()
    mean_token_loss(model, batch).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("mode", ["kv", "residual"])
def test_parts_match_definitions(model, mode):
    batch = make_batch("right")
    split = split_gradient(model, batch, mode=mode)
    assert_close(split.current, reference_myopic_gradient(model, batch, mode))
    assert_close(split.full, ordinary_gradient(model, batch))


def test_last_layer_mlp_and_head_have_no_future_gradient(model):
    # Position s's last MLP, final norm and unembedding feed only the loss at s: their
    # future gradient is exactly zero, while earlier layers' is not.
    split = split_gradient(model, make_batch("none"))
    last = f"layer {model.config.num_hidden_layers - 1}"
    for name, future in split.future.items():
        group = parameter_group(name)
        if group == "head" or (group == last and "mlp" in name):
            assert future.norm() <= 1e-12 * max(split.current[name].norm(), 1e-12), name
    first_mlp = [n for n in split.future if parameter_group(n) == "layer 0" and "mlp" in n]
    assert all(split.future[n].norm() > 1e-3 * split.current[n].norm() for n in first_mlp)


def test_no_future_share_when_attention_moves_nothing():
    # Absent effect: with the attention output projection zeroed, no position reads any
    # other, so the whole gradient is current.
    model = tiny_model("llama")
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
    split = split_gradient(model, make_batch("none"))
    for share in split.layer_shares():
        assert share.future_norm <= 1e-12 * max(share.full_norm, 1e-12), share.group
    assert split.shares(lambda _n: "all")[0].future_share == pytest.approx(0.0, abs=1e-10)


def test_future_share_per_sequence_with_intervals(model):
    sequences = make_batch("none")["input_ids"]
    result = measure_future_share(model, sequences, show_progress=False)
    assert result.n_sequences == 2
    assert result.groups[0] == "embeddings" or result.groups[0].startswith("layer")
    overall = result.overall_interval()
    assert 0 < overall.mean < 1 and overall.n == 2
    assert result.to_dict()["by_group"].keys() == set(result.groups)


def test_bigram_has_no_split(model):
    with pytest.raises(MyopiaError, match="bigram"):
        split_gradient(model, make_batch("none"), mode="bigram")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_squared_norm_agrees_with_float64(dtype):
    # Large enough that one float32 pass drifts visibly, with a tail that fills no row.
    tensor = torch.randn(16_000 * NORM_ROW + 17, generator=torch.Generator().manual_seed(0)) * 7
    tensor = tensor.to(dtype)
    exact = float(tensor.double().square().sum())
    assert squared_norm(tensor) == pytest.approx(exact, rel=1e-7)
    assert squared_norm(tensor[:5]) == pytest.approx(float(tensor[:5].double().square().sum()))
