"""The myopia gap on natural text, and ``myopia gap`` run as a user runs it."""

import json

import numpy as np
import pytest

from myopia.attention import myopic
from myopia.training.config import TrainConfig
from myopia.training.gap import loss_by_position, text_gap
from test_cli import myopia

TINY = "fresh-llama:d_model=32,n_layers=1,n_heads=2,d_mlp=64"


@pytest.fixture()
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    lines = (f"Line {i}: the quick brown fox jumps over the lazy dog." for i in range(300))
    path.write_text("\n".join(lines))
    return path


def test_text_gap_pairs_modes_by_seed_and_reuses_finished_runs(tmp_path, text_file):
    base = TrainConfig(
        model=TINY,
        text=text_file,
        seq_len=16,
        batch_size=4,
        steps=6,
        warmup_steps=2,
        eval_every=6,
        checkpoint_every=3,
        out=tmp_path / "runs",
    )
    modes = ("normal", "kv", "bigram")
    result = text_gap(base, [0, 1], modes, eval_windows=8, show_progress=False)
    assert set(result.losses) == set(modes)
    for mode in modes:
        assert len(result.by_position[mode]) == 2  # seeds
        assert all(len(curve) == 15 for curve in result.by_position[mode])  # T - 1 targets
        assert result.losses[mode] == pytest.approx([np.mean(c) for c in result.by_position[mode]])
        assert (tmp_path / "runs" / f"{mode}-seed1" / "log.json").exists()
    gap = result.gap("kv")
    assert gap.mean == pytest.approx(
        np.mean(result.losses["kv"]) - np.mean(result.losses["normal"])
    )
    again = text_gap(base, [0, 1], modes, eval_windows=8, show_progress=False)
    assert again.losses == result.losses  # finished runs are reused, not retrained


def test_bigram_baseline_is_evaluated_as_a_bigram_model(tmp_path, text_file):
    """Under bigram attention a position's loss cannot depend on earlier tokens: changing
    every token but the last two leaves the last loss unchanged."""
    from myopia.models.loading import load_model

    model, _ = load_model(TINY)
    import torch

    a = torch.randint(3, 200, (1, 12))
    b = a.clone()
    b[0, :-2] = torch.randint(3, 200, (10,))
    with myopic(model, "bigram"):
        last = [loss_by_position(model, w, 1)[-1] for w in (a, b)]
    assert last[0] == pytest.approx(last[1], rel=1e-5)
    full = [loss_by_position(model, w, 1)[-1] for w in (a, b)]
    assert full[0] != pytest.approx(full[1], rel=1e-5)


def test_gap_command_writes_json_and_plots(tmp_path):
    """The real command line, once: a subprocess, as a user runs it."""
    out = tmp_path / "gap"
    args = ["gap", "precaching", "--p", "1", "--gradient", "kv", "--seeds", "2", "--steps", "8"]
    tiny = ["--batch-size", "4", "--seq-len", "8", "--d-model", "16", "--lags", "2"]
    result = myopia(*args, *tiny, "--max-lag", "4", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    saved = json.loads((out / "precaching_gap.json").read_text())
    assert saved["config"]["ps"] == [1.0] and len(saved["settings"]["p = 1"]["kv"]["values"]) == 2
    assert "p = 1, kv" in saved["gaps"] and (out / "precaching_loss.png").exists()
    assert (out / "probe_r2.png").exists() and "kv" in result.stdout
