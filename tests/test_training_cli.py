"""``myopia train <task>`` and the measurement commands of C1a, C2 and C3, run in-process with
typer's CliRunner. Each command also runs once as a real process: ``train text`` in
test_training (killed and resumed), ``gap precaching`` in test_gap, ``myopic-action`` and
``effort-allocation`` here."""

import json
import sys

import pytest
from typer.testing import CliRunner

import myopia.experiments.c1a_natural_text as c1a_text
import myopia.experiments.c1a_precaching as c1a
import myopia.experiments.c2_myopic_action as c2
import myopia.experiments.c3_effort_allocation as c3
import myopia.training.effort_allocation as effort_allocation
import myopia.training.myopic_action as myopic_action
import myopia.training.precaching_gap as precaching_gap
import myopia.training.text_gap as text_gap
from myopia.cli import app
from myopia.errors import MyopiaError
from myopia.report.context import ReportConfig, ReportContext
from protocol_helpers import Recorded
from test_cli import myopia


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def train(task: str, out, *args: str):
    return invoke("train", task, "--out", str(out), "--no-progress", *args)


# --- one measurement, one configuration ------------------------------------------------------


def recorder(calls: list):
    """A stand-in for a training measurement's ``measure(config, ...)`` (these take no
    model: each run builds its own), recording ``config`` and stopping there."""

    def measure(config, *args, **kwargs):
        calls.append(config)
        raise Recorded(config)

    return measure


MEASUREMENTS = [
    # (command, report section, measurement module, name of its measure function)
    (["gap", "precaching"], c1a.precaching_gap_section, precaching_gap, "measure_precaching_gap"),
    (["gap", "text"], c1a_text.natural_text_gap, text_gap, "measure_text_gap"),
    (["myopic-action"], c2.myopic_action, myopic_action, "measure_myopic_action"),
    (["effort-allocation"], c3.effort_allocation, effort_allocation, "measure_effort_allocation"),
]


@pytest.mark.parametrize("command, section, module, measure", MEASUREMENTS)
def test_a_command_with_its_defaults_measures_the_reports_full_configuration(
    command, section, module, measure, tmp_path, monkeypatch
):
    from_cli, from_report = [], []
    monkeypatch.setattr(module, measure, recorder(from_cli))
    result = invoke(*command, "--out", str(tmp_path / "cli"), "--no-progress")
    assert isinstance(result.exception, Recorded), result.output
    # The report's section calls the same function (imported into its module) at full budget.
    monkeypatch.setattr(sys.modules[section.__module__], measure, recorder(from_report))
    report = ReportConfig(
        out=tmp_path / "report",
        quick=False,
        seed=from_cli[0].seed,
        show_progress=False,
    )
    with pytest.raises(Recorded):
        section(ReportContext(report, model=None, tokenizer=None, model_info={}))
    config_class = type(from_cli[0])
    assert from_cli[0] == from_report[0] == config_class.full()
    assert config_class.quick() != config_class.full()


def test_each_option_replaces_one_field(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(precaching_gap, "measure_precaching_gap", recorder(calls))
    invoke(
        "gap",
        "precaching",
        "--steps",
        "7",
        "--p",
        "0.5",
        "--gradient",
        "residual",
        "--out",
        str(tmp_path),
    )
    full = precaching_gap.PrecachingGapConfig.full()
    expected = precaching_gap.PrecachingGapConfig(
        **{
            **full.__dict__,
            "steps": 7,
            "ps": (0.5,),
            "modes_at_primary": ("normal", "residual"),
            "modes": ("normal", "residual"),
        }
    )
    assert calls == [expected]


# --- myopia train <task> -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, wrong",
    [
        (["train", "chess"], "chess"),
        (["train", "choice", "--seq-len", "8"], "--seq-len"),
        (["train", "precaching", "--text", "x.txt"], "--text"),
        (["train", "text", "--lags", "3"], "--lags"),
        (["train", "choice", "--resume"], "--resume"),
        (["gap", "text", "--lags", "3"], "--lags"),
        (["gap", "chess"], "chess"),
    ],
)
def test_an_option_or_task_that_does_not_apply_is_an_error(args, wrong):
    result = invoke(*args)
    assert result.exit_code == 2 and wrong in result.output, result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["gap", "precaching", "--gradient", "bigram"], "bigram"),
        (["train", "choice", "--gradient", "residual"], "residual"),
    ],
)
def test_bad_values_are_one_line_myopia_errors(args, message, tmp_path):
    result = invoke(*args, "--out", str(tmp_path))
    assert isinstance(result.exception, MyopiaError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)


def test_train_precaching_refuses_to_overwrite_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["--steps", "6", "--batch-size", "4", "--seq-len", "8", "--d-model", "16"]
    first = train("precaching", out, *args, "--warmup-steps", "2")
    assert first.exit_code == 0, first.output
    log = json.loads((out / "log.json").read_text())
    assert log["log"][-1]["step"] == 6 and "eval_loss" in log["log"][-1]
    assert log["fit"]["steps"] == 6 and log["task"]["p"] == 1.0
    assert (out / "loss_curve.png").exists()
    again = train("precaching", out, *args, "--warmup-steps", "2")
    assert isinstance(again.exception, MyopiaError) and "--resume" in str(again.exception)
    resumed = train("precaching", out, *args, "--warmup-steps", "2", "--resume")
    assert resumed.exit_code == 0, resumed.output  # finished: continues nothing, same result
    assert json.loads((out / "log.json").read_text())["eval_loss"] == log["eval_loss"]
    other = train("precaching", out, *args, "--warmup-steps", "3", "--resume")
    assert isinstance(other.exception, MyopiaError)
    assert "fit.warmup_steps" in str(other.exception)


@pytest.mark.parametrize(
    "task, extra",
    [
        ("effort", ["--d-model", "8", "--gradient", "kv", "--warmup-steps", "2"]),
        ("choice", ["--gradient", "on-policy", "--batch-size", "16", "--warmup-steps", "2"]),
        ("induction", ["--half-len", "6", "--d-model", "16", "--batch-size", "4"]),
    ],
)
def test_train_runs_each_synthetic_task(tmp_path, task, extra):
    out = tmp_path / task
    result = train(task, out, "--steps", "25", *extra)
    assert result.exit_code == 0, result.output
    if task == "choice":
        saved = json.loads((out / "myopic_action.json").read_text())
        assert 0.0 <= saved["final_p_easy"]["on-policy"]["mean"] <= 1.0
        assert saved["config"]["steps"] == 25 and saved["seeds"] == [0]
        return
    saved = json.loads((out / "log.json").read_text())
    assert saved["log"][-1]["step"] == 25 and saved["device"]
    if task == "effort":
        assert saved["current_loss"] > 0 and saved["later_loss"] > 0
        assert saved["task"]["d_model"] == 8 and saved["fit"]["gradient"] == "kv"
    else:
        assert saved["task"]["half_len"] == 6 and saved["second_copy_loss"] > 0


# --- the real command line ---------------------------------------------------------------------


def test_myopic_action_command_runs(tmp_path):
    out = tmp_path / "c2"
    budget = ["--steps", "4", "--batch-size", "8", "--warmup-steps", "1", "--eval-every", "2"]
    result = myopia("myopic-action", *budget, "--seeds", "2", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    saved = json.loads((out / "myopic_action.json").read_text())
    assert set(saved["final_p_easy"]) == {"normal", "kv", "on-policy"} and saved["seeds"] == [0, 1]
    assert (out / "p_easy_over_training.png").exists() and "on-policy" in result.stdout


def test_effort_allocation_command_runs(tmp_path):
    out = tmp_path / "c3"
    budget = ["--width", "4", "--steps", "2", "--batch-size", "4", "--eval-batches", "1"]
    result = myopia(
        "effort-allocation", *budget, "--seeds", "2", "--out", str(out), "--no-progress"
    )
    assert result.returncode == 0, result.stderr
    saved = json.loads((out / "loss_by_width.json").read_text())
    assert saved["widths"] == [4] and len(saved["runs"]) == 4 and saved["device"]
    assert (out / "loss_by_width.png").exists()
