"""The myopia gap on natural text and the ``myopia gap`` / ``myopia train --task`` CLI."""

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


def test_gap_command_writes_json_and_plot(tmp_path):
    out = tmp_path / "gap"
    args = ["gap", "--seeds", "2", "--steps", "8", "--batch-size", "4", "--seq-len", "8"]
    result = myopia(*args, "--d-model", "16", "--lags", "2", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    saved = json.loads((out / "gap.json").read_text())
    assert saved["task"] == "precaching" and len(saved["losses"]["kv"]) == 2
    assert "kv" in saved["gap_ci"] and (out / "gap.png").exists()
    assert "kv" in result.stdout


@pytest.mark.parametrize(
    "bad, message",
    [
        (["gap", "--task", "chess"], "--task"),
        (["gap", "--gradient", "bigram"], "bigram"),
        (["train", "--task", "chess"], "--task"),
        (["train", "--task", "choice", "--seq-len", "8"], "--seq-len"),
    ],
)
def test_bad_task_options_are_one_line_errors(bad, message):
    result = myopia(*bad)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_train_precaching_task_refuses_to_overwrite_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = [
        "train",
        "--task",
        "precaching",
        "--steps",
        "6",
        "--batch-size",
        "4",
        "--seq-len",
        "8",
        "--d-model",
        "16",
        "--warmup-steps",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    first = myopia(*args)
    assert first.returncode == 0, first.stderr
    log = json.loads((out / "log.json").read_text())
    assert log["log"][-1]["step"] == 6 and "eval_loss" in log["log"][-1]
    assert (out / "loss_curve.png").exists()
    again = myopia(*args)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = myopia(*args, "--resume")  # finished: continues nothing, same result
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "log.json").read_text())["eval_loss"] == log["eval_loss"]


@pytest.mark.parametrize(
    "task, extra",
    [
        ("effort", ["--d-model", "8", "--gradient", "kv"]),
        ("choice", ["--gradient", "on-policy", "--batch-size", "16"]),
    ],
)
def test_train_runs_the_other_synthetic_tasks(tmp_path, task, extra):
    out = tmp_path / task
    result = myopia(
        "train",
        "--task",
        task,
        "--steps",
        "25",
        "--warmup-steps",
        "2",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    )
    assert result.returncode == 0, result.stderr
    saved = json.loads((out / "log.json").read_text())
    if task == "effort":
        assert saved["current_loss"] > 0 and saved["later_loss"] > 0
        assert saved["task"]["d_model"] == 8 and saved["fit"]["gradient"] == "kv"
    else:
        assert 0.0 <= saved["final_p_easy"]["on-policy"]["mean"] <= 1.0
