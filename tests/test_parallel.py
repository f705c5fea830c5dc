"""FSDP2 training (``--parallel fsdp``) reaches the weights of one process, in every
gradient mode: two gloo processes on the CPU, float64."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from myopia.errors import MyopiaError
from myopia.training import TrainConfig
from myopia.training.checkpoint import load_checkpoint
from myopia.training.parallel import blocks, wrap

sys.path.insert(0, str(Path(__file__).parent))
import parallel_worker  # noqa: E402

# The default suite: normal and one myopic mode; the other two (residual's forward hooks
# on the sharded projections, bigram's unused query/key weights) in the slow suite.
MODES = [("normal", "kv"), pytest.param(("residual", "bigram"), marks=pytest.mark.slow)]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script: Path, *arguments: str, processes: int = 2) -> None:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        str(processes),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(script),
        *arguments,
    ]
    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": src}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]


def assert_same_state(sharded: dict, single: dict) -> None:
    # Float64; the only difference is where the batch's gradient sum is split (two
    # halves averaged by the reduce-scatter): 1e-9 relative leaves room for Adam's
    # division by small second moments, and a wrong gradient is off by far more.
    assert sharded.keys() == single.keys()
    for name, tensor in single.items():
        torch.testing.assert_close(sharded[name], tensor, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("modes", MODES)
def test_fsdp_on_two_processes_reaches_the_weights_of_one(tmp_path, modes):
    torchrun(Path(parallel_worker.__file__), str(tmp_path / "fsdp"), *modes)
    parallel_worker.run("normal", tmp_path / "one")  # what every other mode must differ from
    for mode in modes:
        if mode != "normal":
            parallel_worker.run(mode, tmp_path / "one")
        sharded = load_checkpoint(tmp_path / "fsdp" / f"{mode}.pt")
        single = load_checkpoint(tmp_path / "one" / f"{mode}.pt")
        assert_same_state(sharded["model"], single["model"])
        # The optimizer state, gathered, is the one a single process writes: a run
        # continues under FSDP, DDP or on one process alike.
        assert sharded["optimizer"]["param_groups"] == single["optimizer"]["param_groups"]
        for index, moments in single["optimizer"]["state"].items():
            assert_same_state(sharded["optimizer"]["state"][index], moments)
        for key in ("train_loss", "eval_loss"):
            assert [e[key] for e in sharded["log"]] == pytest.approx(
                [e[key] for e in single["log"]], rel=1e-9
            )
        if mode != "normal":  # the tolerance tells the modes apart: the test can fail
            normal = load_checkpoint(tmp_path / "one" / "normal.pt")["model"]
            with pytest.raises(AssertionError):
                assert_same_state(sharded["model"], normal)


def test_fsdp_shards_the_blocks_transformers_names_and_refuses_a_model_without_them():
    from myopia.models.loading import load_model
    from myopia.training.continuous import ContinuousModel

    model, _ = load_model(parallel_worker.TINY)
    assert [type(b).__name__ for b in blocks(model)] == ["LlamaDecoderLayer"] * 2
    with pytest.raises(MyopiaError, match="use --parallel ddp") as error:
        blocks(ContinuousModel(8, 1, 2, 4, n_inputs=2))
    assert "\n" not in str(error.value)
    # One process: nothing to wrap, whatever the choice; an unknown choice is refused.
    assert wrap(model, "fsdp", 1, torch.device("cpu"), unused=False) is model
    with pytest.raises(MyopiaError, match="unknown parallel"):
        wrap(model, "zero3", 1, torch.device("cpu"), unused=False)
    with pytest.raises(MyopiaError, match="unknown parallel"):
        TrainConfig(parallel="zero3")
