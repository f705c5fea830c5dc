"""The command line, run as a user runs it: real files, in-process (typer's CliRunner),
with one real subprocess per command to show the installed entry point works."""

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner, Result

from myopia.cli import app
from myopia.errors import MyopiaError

ROOT = Path(__file__).resolve().parents[1]
TINY = "fresh-gpt2:d_model=32,n_layers=2,n_heads=4,d_mlp=64"


def myopia(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "myopia.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        **kwargs,
    )


def invoke(*args: str) -> Result:
    """``myopia ARGS`` in-process. A ``MyopiaError`` (exit status 2 and one line on the
    command line, as the subprocess tests show) is left in ``result.exception``."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def commands() -> dict[str, click.Command]:
    return typer.main.get_command(app).commands


def test_help_lists_every_command_with_a_sentence():
    result = myopia("--help")
    assert result.returncode == 0
    for name, command in commands().items():
        assert name in result.stdout
        assert command.help and command.help.strip().endswith(".")


def test_every_option_is_documented_in_help_and_readme():
    readme = (ROOT / "README.md").read_text()
    for name, command in commands().items():
        assert f"myopia {name}" in readme, f"README does not mention `myopia {name}`"
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"{name} --{param.name} has no help text"


def test_missing_model_is_one_line_and_nonzero():
    result = myopia("report", "--model", "/no/such/path")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "/no/such/path" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_bad_text_file_is_one_line_and_nonzero(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = myopia("gradient-split", "--model", TINY, "--text", str(empty))
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "empty.txt" in result.stderr


def test_gradient_split_prints_a_table_and_writes_plot_and_json(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(
        "\n".join(f"Line {i}: the quick brown fox jumps over the lazy dog." for i in range(400))
    )
    out = tmp_path / "out"
    args = ["--model", TINY, "--text", str(text), "--seq-len", "32", "--n-sequences", "3"]
    result = invoke("gradient-split", *args, "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "whole model" in result.stdout and "layer 1" in result.stdout
    data = json.loads((out / "future_share_by_layer.json").read_text())
    assert data["n_sequences"] == 3 and data["mode"] == "kv"
    assert (out / "future_share_by_layer.png").stat().st_size > 0
    # The same through the installed entry point, once.
    again = myopia("gradient-split", *args, "--out", str(tmp_path / "again"), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "again" / "future_share_by_layer.json").read_text())["by_group"]


@pytest.mark.parametrize(
    ("bad", "error"), [(["--mode", "bigram"], MyopiaError), (["--seq-len", "1"], SystemExit)]
)
def test_bad_options_are_rejected(bad, error):
    result = invoke("gradient-split", "--model", TINY, *bad)
    assert result.exit_code != 0 and isinstance(result.exception, error)
