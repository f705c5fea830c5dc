"""C9: natural vs self-generated continuations, their NLL, and the probe between them."""

import numpy as np
import pytest
import torch
from transformers import GenerationConfig

from conftest import TINY_LLAMA as TINY  # the model of the `tiny` fixture
from myopia.drift import DriftConfig, measure_drift, sample_pairs
from myopia.drift.measure import DriftResult, nll_and_states, probe_accuracy
from myopia.errors import MyopiaError
from myopia.experiments.c9_drift import c9_rule, drift_verdict
from myopia.report.registry import MEASURED, SectionResult
from myopia.stats import Interval


def natural_windows(tokenizer, n, width, seed=0):
    """Repetitive English: an untrained model's samples look nothing like it."""
    rng = np.random.default_rng(seed)
    words = "the cat sat on a mat and the dog ran to the red door".split()
    rows = []
    for _ in range(n):
        text = " ".join(rng.choice(words, size=3 * width))
        rows.append(tokenizer(text, add_special_tokens=False)["input_ids"][:width])
    return torch.tensor(rows)


def test_pairs_share_the_prompt_and_length_and_are_seeded(tiny):
    model, tokenizer = tiny
    windows = natural_windows(tokenizer, 6, 20)
    pairs = sample_pairs(model, windows, prompt_len=8, seed=1)
    assert pairs.generated.shape == windows.shape and pairs.continuation_len == 12
    assert torch.equal(pairs.generated[:, :8], windows[:, :8])
    assert torch.equal(pairs.natural, windows)
    assert torch.equal(sample_pairs(model, windows, 8, seed=1).generated, pairs.generated)
    with pytest.raises(MyopiaError):
        sample_pairs(model, windows, prompt_len=20)


def test_pairs_are_transformers_pure_sampling_with_end_of_text_suppressed(tiny):
    """The reference: generate() at temperature 1 with no top-k (``top_k=0``: it would
    otherwise fill in a top-k of 50), end of text held off by ``min_new_tokens``, seeded
    through the global random state, over the same batches."""
    model, tokenizer = tiny
    windows = natural_windows(tokenizer, 5, 16)
    pairs = sample_pairs(model, windows, prompt_len=6, seed=4, batch_size=2)
    config = GenerationConfig(
        do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=10,
        min_new_tokens=10, pad_token_id=0, eos_token_id=model.config.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(4)
    expected = torch.cat(
        [model.generate(input_ids=b, generation_config=config) for b in windows[:, :6].split(2)]
    )
    assert torch.equal(pairs.generated, expected)


def test_nll_and_window_states_equal_a_plain_forward_pass(tiny):
    model, tokenizer = tiny
    sequences = natural_windows(tokenizer, 3, 12)
    nll, states = nll_and_states(model, sequences, 4, [2, 3, 7], [1, 2], batch_size=2, window=3)
    with torch.no_grad():
        out = model(input_ids=sequences, output_hidden_states=True)
    log_probs = torch.log_softmax(out.logits.float(), -1)
    for i in range(3):
        for t in range(4, 12):  # token t is predicted at position t - 1
            assert nll[i, t - 4] == pytest.approx(
                -log_probs[i, t - 1, sequences[i, t]].item(), abs=1e-5
            )
        for j, layer in enumerate([1, 2]):
            for p_index, p in enumerate([2, 3, 7]):  # the 3 tokens ending at p
                expected = out.hidden_states[layer][i, 4 + p - 2 : 4 + p + 1].mean(0)
                assert np.allclose(states[i, j, p_index], expected.numpy(), atol=1e-5)
    # The control's pass reads the states alone (logits at one position): the same states.
    no_nll, states_only = nll_and_states(
        model, sequences, 4, [2, 3, 7], [1, 2], batch_size=2, window=3, with_nll=False
    )
    assert no_nll is None and np.allclose(states_only, states, atol=1e-6)


def test_the_probe_finds_a_planted_difference_and_not_an_absent_one():
    rng = np.random.default_rng(0)
    n, d = 120, 16
    train, test = np.arange(60), np.arange(60, 120)
    natural = rng.normal(size=(n, 2, d))
    shifted = rng.normal(size=(n, 2, d))
    shifted[:, 1, 0] += 5.0  # only layer index 1, feature 0 carries the planted signal
    layer, cv, correct = probe_accuracy(natural, shifted, train, test, folds=3)
    assert layer == 1 and correct.mean() > 0.9 and cv[1] > cv[0]
    same = rng.normal(size=(n, 2, d))
    _, _, chance = probe_accuracy(natural, same, train, test, folds=3)
    assert 0.3 < chance.mean() < 0.7


def test_an_untrained_models_samples_are_told_from_english(tiny):
    model, tokenizer = tiny
    config = DriftConfig(
        prompt_len=6, continuation_len=10, n_prompts=40, lengths=(2, 10), layer_stride=1, window=2
    )
    windows = natural_windows(tokenizer, 40, 16)
    other = natural_windows(tokenizer, 40, 16, seed=1)
    result = measure_drift(model, windows, config, control_windows=other)
    assert result.accuracy[10].mean > 0.9 and result.nll_natural.shape == (40, 10)
    # Control: natural vs other natural text of the same kind stays at chance.
    assert result.control.low <= 0.5 <= result.control.high
    numbers = result.to_dict()
    assert (
        set(numbers["accuracy"]) == {"2", "10"} and len(numbers["nll_by_position"]["natural"]) == 10
    )
    assert numbers["control"]["accuracy"]["mean"] == result.control.mean
    with pytest.raises(MyopiaError, match="probe lengths"):
        measure_drift(model, windows, DriftConfig(prompt_len=6, continuation_len=10, lengths=(11,)))
    with pytest.raises(MyopiaError, match="probe lengths"):  # shorter than the window
        measure_drift(
            model, windows, DriftConfig(prompt_len=6, continuation_len=10, lengths=(1, 10))
        )


def test_the_gap_slope_finds_a_planted_drift_and_not_a_constant_offset():
    rng = np.random.default_rng(0)
    n, length = 50, 32
    generated = rng.normal(size=(n, length))
    offset = generated + 1.0 + 0.1 * rng.normal(size=(n, length))
    drifting = generated + 0.05 * np.arange(length) + 0.1 * rng.normal(size=(n, length))
    base = dict(accuracy={}, layer={}, cv_accuracy={}, rise=None, n_train=0, n_test=0)
    flat = DriftResult(DriftConfig(), offset, generated, **base).gap_slope()
    assert flat.low <= 0 <= flat.high
    rising = DriftResult(DriftConfig(), drifting, generated, **base).gap_slope()
    assert rising.low > 0.04 and rising.high < 0.06


def interval(mean, low, high):
    return Interval(mean=mean, low=low, high=high, n=50, level=0.95)


AT_CHANCE, ABOVE_CHANCE = interval(0.5, 0.42, 0.58), interval(0.65, 0.56, 0.74)


@pytest.mark.parametrize(
    ("accuracy", "rise", "control", "verdict"),
    [
        (interval(0.85, 0.78, 0.92), interval(0.3, 0.2, 0.4), AT_CHANCE, "supported"),
        # high but not rising: the difference is there from the start
        (interval(0.85, 0.78, 0.92), interval(0.02, -0.05, 0.09), AT_CHANCE, "inconclusive"),
        (interval(0.72, 0.65, 0.79), interval(0.3, 0.2, 0.4), AT_CHANCE, "inconclusive"),
        (interval(0.5, 0.42, 0.58), interval(0.0, -0.1, 0.1), AT_CHANCE, "refuted"),
        (interval(0.62, 0.55, 0.69), interval(0.3, 0.2, 0.4), AT_CHANCE, "inconclusive"),
        # failed control: natural vs natural above chance makes any verdict inconclusive
        (interval(0.85, 0.78, 0.92), interval(0.3, 0.2, 0.4), ABOVE_CHANCE, "inconclusive"),
        (interval(0.5, 0.42, 0.58), interval(0.0, -0.1, 0.1), ABOVE_CHANCE, "inconclusive"),
    ],
)
def test_the_c9_rule(accuracy, rise, control, verdict):
    numbers = {
        "accuracy": {"8": interval(0.5, 0.4, 0.6).to_dict(), "64": accuracy.to_dict()},
        "rise": rise.to_dict(),
        "control": {"accuracy": control.to_dict()},
    }
    result = c9_rule({"C9": SectionResult("", numbers=numbers, status=MEASURED)})
    assert result.value == verdict
    assert result.control.passed == (control is AT_CHANCE)
    assert drift_verdict(accuracy, rise, 64).value in ("supported", "refuted", "inconclusive")
    assert c9_rule({}).value == "not run"


def test_the_drift_command_writes_its_json_and_plots(tmp_path):
    import json

    from test_cli import invoke, myopia

    text = tmp_path / "text.txt"
    text.write_text("\n".join(f"Line {i}: the cat sat on the mat by the door." for i in range(400)))
    out = tmp_path / "out"
    result = myopia(
        "drift", "--model", TINY, "--text", str(text), "--n-prompts", "16", "--prompt-len", "4",
        "--continuation-len", "16", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    saved = json.loads((out / "drift.json").read_text())
    assert set(saved["accuracy"]) == {"8", "16"} and saved["control"]["accuracy"] is not None
    assert (out / "nll_by_position.png").exists() and (out / "probe_accuracy.json").exists()
    bad = invoke("drift", "--model", TINY, "--text", str(text), "--length", "99", "--no-progress")
    assert isinstance(bad.exception, MyopiaError) and "probe lengths" in str(bad.exception)
