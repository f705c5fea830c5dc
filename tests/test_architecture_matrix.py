"""Every myopic mode on tiny random models of many architectures: exact or refused.

Each cell (architecture x mode x backend x padding) either gives forward values equal to
ordinary attention and a gradient equal to ``eager_reference_gradient`` (the model's own
eager attention, past keys and values detached per target, one backward per target) to
1e-6 relative in float64, or refuses with a one-line MyopiaError when the mode is
switched on or first used. Which cells refuse is fixed here: a cell that starts refusing
(or stops) fails the test.

``python tests/test_architecture_matrix.py`` prints the matrix as a markdown table.
"""

from __future__ import annotations

import functools

import pytest
import torch

from myopia.attention import myopic, set_myopic
from myopia.errors import MyopiaError
from myopia.gradients.loss import forward_logits, mean_token_loss
from myopia.gradients.reference import eager_reference_gradient, own_eager_attention
from myopia.models.tiny import ARCHITECTURES, VOCAB_SIZE, build_tiny_model, sharpen

REL_TOL = 1e-6
MODES = ("kv", "residual", "bigram")
BACKENDS = ("fast", "eager")
PADDINGS = ("none", "left")

# (architecture, mode) -> a phrase the refusal must contain. Every cell is exact at present.
REFUSED: dict[tuple[str, str], str] = {}


@functools.cache
def tiny(architecture: str) -> torch.nn.Module:
    model = build_tiny_model(architecture)
    sharpen(model)
    return model


def make_batch(padding: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, VOCAB_SIZE, (2, 8), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    if padding == "left":
        attention_mask[0, :3] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@functools.cache
def reference(architecture: str, mode: str, padding: str) -> dict[str, torch.Tensor]:
    return eager_reference_gradient(tiny(architecture), make_batch(padding), mode)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    error = (actual - expected).norm().item() / max(expected.norm().item(), 1e-12)
    return error if error == error else float("inf")  # NaN anywhere is a failure


def measure_cell(architecture: str, mode: str, backend: str, padding: str) -> dict:
    """Run one cell: ``{"refused": message}`` or the forward and gradient errors."""
    model, batch = tiny(architecture), make_batch(padding)
    real = batch["attention_mask"].bool()
    with torch.no_grad(), own_eager_attention(model):
        ordinary = forward_logits(model, batch)
    model.zero_grad(set_to_none=True)
    try:
        with myopic(model, mode, backend):
            with torch.no_grad():
                logits = forward_logits(model, batch)
            mean_token_loss(model, batch).backward()
    except MyopiaError as error:
        return {"refused": str(error)}
    expected = reference(architecture, mode, padding)
    grads = {n: p.grad for n, p in model.named_parameters()}
    gradient_error = max(
        relative_error(grads[n] if grads[n] is not None else torch.zeros_like(g), g)
        if g.norm() > 1e-12
        else (grads[n].norm().item() if grads[n] is not None else 0.0)
        for n, g in expected.items()
    )
    forward_error = relative_error(logits[real], ordinary[real]) if mode != "bigram" else None
    return {"gradient": gradient_error, "forward": forward_error}


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_cell_is_exact_or_refused(architecture, mode, backend, padding):
    cell = measure_cell(architecture, mode, backend, padding)
    refusal = REFUSED.get((architecture, mode))
    if refusal is not None:
        assert "refused" in cell, f"expected a refusal containing {refusal!r}, got {cell}"
        assert refusal in cell["refused"] and "\n" not in cell["refused"]
        return
    assert "refused" not in cell, cell["refused"]
    assert cell["gradient"] <= REL_TOL, cell
    if cell["forward"] is not None:
        assert cell["forward"] <= REL_TOL, cell


@pytest.mark.parametrize(
    ("architecture", "feature"),
    [("gemma2", "attn_logit_softcapping"), ("gpt_oss", "sinks")],
)
def test_softcapping_and_sinks_matter_in_these_models(architecture, feature):
    # Guards the matrix: with the feature off, logits and the kv gradient move by far more
    # than the tolerance, so an implementation that ignored it could not pass.
    model, batch = tiny(architecture), make_batch("none")
    with torch.no_grad():
        with_feature = forward_logits(model, batch)
    expected = reference(architecture, "kv", "none")
    if feature == "sinks":
        saved = {n: p.detach().clone() for n, p in model.named_parameters() if "sinks" in n}
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "sinks" in n:
                    p.fill_(-1e4)  # exp(-1e4) = 0: no sink
        restore = lambda: [  # noqa: E731
            p.data.copy_(saved[n]) for n, p in model.named_parameters() if n in saved
        ]
    else:
        attentions = [layer.self_attn for layer in model.model.layers]
        original = attentions[0].attn_logit_softcapping
        for attention in attentions:
            attention.attn_logit_softcapping = None
        restore = lambda: [  # noqa: E731
            setattr(a, "attn_logit_softcapping", original) for a in attentions
        ]
    try:
        with torch.no_grad():
            without = forward_logits(model, batch)
        gradient_without = eager_reference_gradient(model, batch, "kv")
    finally:
        restore()
    assert relative_error(without, with_feature) > 1e-3
    assert max(relative_error(gradient_without[n], g) for n, g in expected.items()) > 1e-3


def test_unimplemented_attention_argument_is_refused():
    model, batch = tiny("llama"), make_batch("none")
    attention = model.model.layers[0].self_attn
    handle = attention.register_forward_pre_hook(
        lambda _m, args, kwargs: (args, {**kwargs, "alibi_slopes": torch.ones(4)}),
        with_kwargs=True,
    )
    try:
        for backend in BACKENDS:
            with myopic(model, "kv", backend), pytest.raises(MyopiaError, match="alibi_slopes"):
                forward_logits(model, batch)
    finally:
        handle.remove()


def test_a_refused_mode_leaves_the_model_as_it_was():
    model = build_tiny_model("llama")
    attention = model.model.layers[1].self_attn
    attention.v_proj = attention.k_proj  # one projection for keys and values: refused
    original = model.config._attn_implementation
    with pytest.raises(MyopiaError, match="use 'kv'"):
        set_myopic(model, "residual")
    assert model.config._attn_implementation == original
    other = "eager" if original != "eager" else "sdpa"
    model.set_attn_implementation(other)  # the refusal left no record of the old setting
    with myopic(model, "kv"):
        pass
    assert model.config._attn_implementation == other


@pytest.mark.parametrize("qk_layernorm", [True, False])
def test_a_fused_projection_of_another_layout_is_refused_in_one_line(qk_layernorm):
    # Persimmon has GPT-NeoX's query_key_value, with optional q/k norms after it: residual
    # mode knows neither its attribute names nor a norm there, and says so before any hook.
    from transformers import AutoConfig, AutoModelForCausalLM

    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4}
    config = AutoConfig.for_model(
        "persimmon", vocab_size=VOCAB_SIZE, num_hidden_layers=1, qk_layernorm=qk_layernorm, **sizes
    )
    model = AutoModelForCausalLM.from_config(config)
    original = model.config._attn_implementation
    with pytest.raises(MyopiaError, match="use 'kv'") as refused:
        set_myopic(model, "residual")
    assert "\n" not in str(refused.value) and "PersimmonAttention" in str(refused.value)
    assert model.config._attn_implementation == original
    assert not model.model.layers[0].self_attn.query_key_value._forward_hooks


def matrix_table() -> str:
    """The matrix as markdown: the worst gradient error over backends and paddings, or
    the refusal."""
    lines = ["| architecture | " + " | ".join(MODES) + " |", "|---" * (len(MODES) + 1) + "|"]
    for architecture in ARCHITECTURES:
        row = []
        for mode in MODES:
            cells = [measure_cell(architecture, mode, b, p) for b in BACKENDS for p in PADDINGS]
            refusals = {c["refused"] for c in cells if "refused" in c}
            if refusals:
                row.append("refused: " + " / ".join(sorted(refusals)))
            else:
                grad = max(c["gradient"] for c in cells)
                if mode == "bigram":  # changes the forward values by design
                    row.append(f"grad {grad:.1e}")
                else:
                    forward = max(c["forward"] for c in cells)
                    row.append(f"grad {grad:.1e}, fwd {forward:.1e}")
        lines.append(f"| {architecture} | " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(matrix_table())
