"""The trainer: runs, logs, and resumes after a real kill to the same final weights."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from myopia.cli import app
from myopia.errors import MyopiaError
from myopia.training import TrainConfig, train
from myopia.training.checkpoint import load_checkpoint

TINY = "fresh-llama:d_model=32,n_layers=2,n_heads=4,d_mlp=64"


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "text.txt"
    lines = [
        f"Line {i}: the quick brown fox jumps over the lazy dog, and the dog sleeps."
        for i in range(600)
    ]
    path.write_text("\n".join(lines))
    return path


def config(text, out, **overrides) -> TrainConfig:
    settings = dict(
        model=TINY,
        text=text,
        seq_len=32,
        batch_size=4,
        steps=120,
        eval_every=40,
        checkpoint_every=5,
        gradient="kv",
        out=out,
    )
    return TrainConfig(**{**settings, **overrides})


def train_arguments(text, out, steps, eval_every=40, checkpoint_every=5) -> list[str]:
    """``myopia train`` arguments for the same run as ``config(text, out, ...)``."""
    return [
        "train",
        "text",
        "--model",
        TINY,
        "--text",
        str(text),
        "--seq-len",
        "32",
        "--batch-size",
        "4",
        "--steps",
        str(steps),
        "--eval-every",
        str(eval_every),
        "--checkpoint-every",
        str(checkpoint_every),
        "--gradient",
        "kv",
        "--out",
        str(out),
        "--no-progress",
    ]


def test_a_run_writes_checkpoint_log_and_curve(text, tmp_path):
    result = train(config(text, tmp_path, steps=12, eval_every=6), show_progress=False)
    assert [e["step"] for e in result.log] == list(range(1, 13))
    assert sum("eval_loss" in e for e in result.log) == 2
    assert result.final_eval_loss < result.log[0]["train_loss"]
    for name in ("checkpoint.pt", "log.json", "loss_curve.png", "loss_curve.json"):
        assert (tmp_path / name).exists(), name
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 12


def kill_mid_run(arguments: list[str], checkpoint, after_step: int, steps: int) -> None:
    """Run ``myopia <arguments>`` as a real process and SIGKILL it once its checkpoint has
    reached ``after_step``, before it reaches ``steps``."""
    command = [sys.executable, "-m", "myopia.cli", *arguments]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.exists() and load_checkpoint(checkpoint)["step"] >= after_step:
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    assert load_checkpoint(checkpoint)["step"] < steps  # killed mid-way


def assert_same_weights(resumed: dict, uninterrupted: dict) -> None:
    # Exact equality is guaranteed, not lucky: the resumed run executes the same kernels
    # on the same data in the same order from the exact saved state (weights, optimizer,
    # schedule, random streams), so every float operation repeats bit for bit.
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in resumed.items():
        assert torch.equal(tensor, uninterrupted[name]), name


def test_resume_after_kill_reaches_the_same_weights(text, tmp_path):
    uninterrupted = train(config(text, tmp_path / "whole"), show_progress=False).model

    killed = tmp_path / "killed"
    kill_mid_run(train_arguments(text, killed, steps=120), killed / "checkpoint.pt", 20, 120)

    resumed = train(config(text, killed), resume=True, show_progress=False)
    assert [e["step"] for e in resumed.log] == list(range(1, 121))
    assert_same_weights(resumed.model.state_dict(), uninterrupted.state_dict())


def test_a_synthetic_task_resumes_after_kill_to_the_same_weights(tmp_path):
    """The same guarantee for a synthetic task (pre-caching), through the same loop."""
    steps = 1500
    args = [
        "--steps",
        str(steps),
        "--batch-size",
        "4",
        "--seq-len",
        "8",
        "--d-model",
        "16",
        "--gradient",
        "kv",
        "--checkpoint-every",
        "10",
        "--no-progress",
    ]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    kill_mid_run(
        ["train", "precaching", *args, "--out", str(killed)], killed / "checkpoint.pt", 50, steps
    )
    finished = CliRunner().invoke(app, ["train", "precaching", *args, "--out", str(whole)])
    assert finished.exit_code == 0, finished.output
    resumed = CliRunner().invoke(
        app, ["train", "precaching", *args, "--out", str(killed), "--resume"]
    )
    assert resumed.exit_code == 0, resumed.output
    at_end = [load_checkpoint(out / "checkpoint.pt") for out in (killed, whole)]
    assert at_end[0]["step"] == at_end[1]["step"] == steps
    assert_same_weights(at_end[0]["model"], at_end[1]["model"])
    losses = [[e["train_loss"] for e in state["log"]] for state in at_end]
    assert losses[0] == losses[1] and len(losses[0]) == steps


def test_resume_needs_a_checkpoint_and_the_same_settings(text, tmp_path):
    with pytest.raises(MyopiaError, match="nothing to resume"):
        train(config(text, tmp_path), resume=True, show_progress=False)
    train(config(text, tmp_path, steps=5), show_progress=False)
    with pytest.raises(MyopiaError, match="already holds a run"):
        train(config(text, tmp_path, steps=5), show_progress=False)
    with pytest.raises(MyopiaError, match="lr"):
        train(config(text, tmp_path, steps=10, lr=0.5), resume=True, show_progress=False)


def test_bad_settings_are_one_line_errors(text, tmp_path):
    with pytest.raises(MyopiaError, match="unknown gradient mode") as error:
        config(text, tmp_path, gradient="future")
    assert "\n" not in str(error.value)
    with pytest.raises(MyopiaError, match="fewer than one batch"):
        train(config(text, tmp_path, seq_len=256, batch_size=100_000), show_progress=False)
    with pytest.raises(MyopiaError, match="exceeds the model.s context"):
        train(config(text, tmp_path, seq_len=2000, batch_size=64), show_progress=False)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# DDP in the default suite; FSDP's float64 equality in every mode is tests/test_parallel.py,
# and this end-to-end run of the command under FSDP (evaluation and checkpoint gathered
# from the shards) is slow.
@pytest.mark.parametrize("parallel", ["ddp", pytest.param("fsdp", marks=pytest.mark.slow)])
def test_two_gloo_processes_reach_the_weights_of_one(text, tmp_path, parallel):
    settings = dict(steps=10, eval_every=10, checkpoint_every=10, batch_size=4)
    single_run = train(config(text, tmp_path / "one", **settings), show_progress=False)
    single = single_run.model
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "myopia.cli",
        *train_arguments(text, tmp_path / "two", steps=10, eval_every=10, checkpoint_every=10),
        "--parallel",
        parallel,
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    state = load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    distributed = state["model"]
    assert distributed.keys() == single.state_dict().keys()
    for name, tensor in single.state_dict().items():
        # Same arithmetic but for the order of the gradient sums: equal to float rounding.
        torch.testing.assert_close(distributed[name], tensor, rtol=1e-4, atol=1e-6)
    assert state["log"][-1]["eval_loss"] == pytest.approx(single_run.final_eval_loss, rel=1e-4)


def test_a_diverging_run_stops_and_keeps_the_last_finite_checkpoint(text, tmp_path):
    from myopia.training.fit import TrainingDiverged

    with pytest.raises(TrainingDiverged) as error:
        run = config(text, tmp_path, steps=60, lr=1e4, warmup_steps=0, checkpoint_every=1)
        train(run, show_progress=False)
    message = str(error.value)
    assert "\n" not in message and "diverged at step" in message and "--lr" in message
    assert "keeps the last finite weights" in message
    state = load_checkpoint(tmp_path / "checkpoint.pt")  # saved every step until then
    assert all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.parametrize(
    ("overrides", "option"),
    [
        ({"lr": -1.0}, "--lr"),
        ({"lr": float("nan")}, "--lr"),
        ({"lr": float("inf")}, "--lr"),
        ({"weight_decay": -5.0}, "--weight-decay"),
        ({"warmup_steps": -1}, "--warmup-steps"),
        ({"steps": 0}, "--steps"),
    ],
)
def test_optimisation_settings_out_of_range_name_their_option(overrides, option):
    from myopia.training.fit import Optimisation

    settings = {"steps": 10, "lr": 1e-3, "warmup_steps": 0, **overrides}
    with pytest.raises(MyopiaError) as error:
        Optimisation(**settings)
    assert str(error.value).startswith(option) and "\n" not in str(error.value)


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_trains(text, tmp_path):
    arguments = train_arguments(text, tmp_path, steps=1_000_000, checkpoint_every=1_000_000)
    first = subprocess.Popen(
        [sys.executable, "-m", "myopia.cli", *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / ".checkpoint.pt.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the lock file exists just before it is locked
        with pytest.raises(MyopiaError, match="another training run is writing into"):
            train(config(text, tmp_path, steps=5), show_progress=False)
    finally:
        first.kill()
        first.wait()
    # The kernel lets go of a killed run's lock: the folder is usable again at once.
    train(config(text, tmp_path, steps=3, checkpoint_every=1), show_progress=False)


def test_resume_refuses_a_text_whose_contents_changed(text, tmp_path):
    changed = tmp_path / "text.txt"
    changed.write_text(text.read_text())
    train(config(changed, tmp_path / "run", steps=5), show_progress=False)
    changed.write_text(text.read_text().replace("fox", "cat"))
    with pytest.raises(MyopiaError, match="text_sha256"):
        train(config(changed, tmp_path / "run", steps=10), resume=True, show_progress=False)


def test_a_checkpoint_in_a_folder_not_yet_made_is_written(tmp_path):
    # The gap commands checkpoint into runs/p<p>/, which the first run creates: the
    # writer's lock must not need the folder before it exists.
    from myopia.training.fit import Checkpointing, Optimisation, fit

    model = torch.nn.Linear(2, 1)
    path = tmp_path / "runs" / "p1" / "normal-seed0.pt"
    fit(
        model,
        lambda step: model(torch.ones(1, 2)).square().sum(),
        Optimisation(steps=2, lr=1e-2, warmup_steps=0),
        device=torch.device("cpu"),
        checkpoint=Checkpointing(path, 1, {}),
    )
    assert load_checkpoint(path)["step"] == 2


def test_cpu_threads_sets_and_restores_torch_threads_on_the_cpu_only():
    from myopia.training.fit import cpu_threads

    before = torch.get_num_threads()
    target = 1 if before > 1 else 2
    with cpu_threads(target, torch.device("cpu")):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), cpu_threads(target, torch.device("cpu")):
        raise RuntimeError("a failed run")
    assert torch.get_num_threads() == before  # restored after an error too
    for threads, device in ((None, "cpu"), (target, "cuda")):
        with cpu_threads(threads, torch.device(device)):
            assert torch.get_num_threads() == before
