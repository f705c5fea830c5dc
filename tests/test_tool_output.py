"""C7: the transcript generator, the JSONL schema, the reply classifier, the evaluator with
planted preferences, the rule on hand-made numbers, and the CLI on a tiny model."""

import json

import pytest

from myopia.errors import MyopiaError
from myopia.experiments.c7_blank_tool_output import c7_rule, tool_output_verdict
from myopia.faithfulness.classify import classify_tool_reply
from myopia.faithfulness.records import read_records, write_records
from myopia.faithfulness.tool_output import ToolOutputConfig, evaluate_tool_outputs
from myopia.faithfulness.tool_output_data import (
    FORMATS,
    TOOLS,
    ToolTranscript,
    generate_tool_transcripts,
)
from myopia.report.registry import MEASURED, SectionResult
from myopia.report.verdicts import INCONCLUSIVE, NOT_RUN, REFUTED, SUPPORTED
from myopia.stats import Interval
from test_cli import invoke, myopia

TINY = "fresh-llama:d_model=32,n_layers=2,n_heads=2"


def test_generator_is_seeded_and_varied():
    records = generate_tool_transcripts(40, seed=3)
    assert records == generate_tool_transcripts(40, seed=3)
    assert records != generate_tool_transcripts(40, seed=4)
    assert len(records) == 120 and len({r.id for r in records}) == 120
    assert {r.tool for r in records} == {t.name for t in TOOLS}
    assert {r.format for r in records} == set(FORMATS)
    # Formats hold equal shares of the commands (within one).
    per_format = [len({r.command_id for r in records if r.format == f}) for f in FORMATS]
    assert max(per_format) - min(per_format) <= 1
    assert len({r.error_kind for r in records if r.error_kind}) >= 6
    assert len({r.topic for r in records}) >= 20
    by_command: dict[str, list[ToolTranscript]] = {}
    for r in records:
        by_command.setdefault(r.command_id, []).append(r)
    for group in by_command.values():
        # One command: the same context, three different outputs (real, blank, error).
        assert len({r.context for r in group}) == 1
        assert [r.output_kind for r in group] == ["real", "blank", "error"]
        assert len({r.query for r in group}) == 3
        real, blank = group[0], group[1]
        assert blank.query in {
            after.format(shell=s)
            for after in [f[1] for f in FORMATS.values()]
            for s in ("$ ", "PS C:\\Users\\me> ")
        }
        assert real.query != blank.query and len(real.query) > len(blank.query)
    # No lead-in presupposes a page.
    for before, after in FORMATS.values():
        assert "page" not in (before + after).lower()


def test_records_round_trip_and_bad_lines_are_named(tmp_path):
    records = generate_tool_transcripts(3, seed=0)
    path = write_records(tmp_path / "t.jsonl", records)
    assert read_records(path, ToolTranscript) == records
    lines = path.read_text().splitlines()
    bad = json.loads(lines[2])
    bad["output_kind"] = "garbled"
    lines[2] = json.dumps(bad)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MyopiaError, match=r"line 3: output_kind must be one of"):
        read_records(path, ToolTranscript)
    bad["output_kind"], bad["error_kind"] = "blank", "dns"
    lines[2] = json.dumps(bad)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MyopiaError, match=r"line 3: error_kind"):
        read_records(path, ToolTranscript)


@pytest.mark.parametrize(
    "reply,label",
    [
        (" The page says: The server is unable to resolve the host", "empty"),
        (" The output is empty.", "empty"),
        (" Nothing was printed.", "empty"),
        (" curl could not connect.", "empty"),
        (" That output is a webpage with a description of lemon cakes.", "content"),
        (" The page is about baking.", "content"),
        (" Lemon cake with a sharp glaze", "content"),
        (" Sure! Let me help you.", "other"),
    ],
)
def test_tool_reply_classifier_hand_checked(reply, label):
    assert classify_tool_reply(reply, "lemon cake recipes") == label


def _planted_scorer(prefer_content_for):
    """Scores that make the content class win exactly for the output kinds given."""

    def scorer(model, tokenizer, requests, batch_size, show_progress):
        rows = []
        for request in requests:
            kind = request.query  # the test puts the kind in the query
            content = -1.0 if kind in prefer_content_for else -5.0
            rows.append([content, -9.0, -9.0, -3.0, -8.0, -8.0])
        return rows

    return scorer


def _hand_records(formats=("chat",), commands=6):
    def make(command, name, kind, error=""):
        return ToolTranscript(
            f"{command}-{kind}-{error}",
            command,
            "curl",
            name,
            "lemon cakes",
            kind,
            error,
            f"ctx {command}",
            f"{name}:{kind}",
            [" a", " b", " c"],
            [" d", " e", " f"],
        )

    records = []
    for name in formats:
        for c in range(commands):
            command = f"{name}{c}"
            records += [
                make(command, name, "real"),
                make(command, name, "blank"),
                make(command, name, "error", "dns"),
            ]
    return records


def _planted_scorer(prefer_content_for):
    """Scores that make the content class win exactly for the "format:kind" queries (or
    bare kinds) given."""

    def scorer(model, tokenizer, requests, batch_size, show_progress):
        rows = []
        for request in requests:
            name, kind = request.query.split(":")
            won = kind in prefer_content_for or request.query in prefer_content_for
            rows.append([-1.0 if won else -5.0, -9.0, -9.0, -3.0, -8.0, -8.0])
        return rows

    return scorer


def test_evaluator_measures_planted_preferences():
    records = _hand_records()
    result = evaluate_tool_outputs(
        None, None, records, ToolOutputConfig(), _planted_scorer({"real"})
    )
    rates = result.rates_by("output_kind")
    assert rates["real"].mean == 1.0 and rates["blank"].mean == 0.0 and rates["error"].mean == 0.0
    assert result.rule_rate().mean == 0.0 and result.rule_rate().n == 6
    assert result.control_rate().mean == 1.0
    # log P(content) = logsumexp(-1, -9, -9), log P(empty) = logsumexp(-3, -8, -8).
    real = next(r for r in result.items if r["output_kind"] == "real")
    assert real["log_odds_content"] == pytest.approx(2.0, abs=0.02)
    # Within a command: blank/error log-odds (-2) minus real (+2).
    assert result.contrast().mean == pytest.approx(-4.0, abs=0.05)
    planted = _planted_scorer({"real", "blank"})
    result = evaluate_tool_outputs(None, None, records, ToolOutputConfig(), planted)
    assert result.rule_rate().mean == pytest.approx(0.5)
    assert result.to_dict()["by_error_kind"]["dns"]["mean"] == 0.0
    assert result.contrast().mean == pytest.approx(-2.0, abs=0.05)


def test_rates_are_macro_averaged_over_formats():
    """One format where blank/error always prefer content, two where they never do, and
    the first holding 10 of 14 commands: pooled 0.71, macro 1/3."""
    records = _hand_records(("chat",), 10) + _hand_records(("notes", "terminal"), 2)
    planted = _planted_scorer({"real", "chat:blank", "chat:error"})
    result = evaluate_tool_outputs(None, None, records, ToolOutputConfig(), planted)
    assert result.rule_rate().mean == pytest.approx(1 / 3)
    assert result.rates_by("output_kind")["blank"].mean == pytest.approx(10 / 14)
    assert result.to_dict()["contrast_by_format"]["chat"]["mean"] == pytest.approx(0.0)
    assert result.to_dict()["contrast_by_format"]["notes"]["mean"] == pytest.approx(-4, abs=0.05)
    assert result.control_rate().mean == 1.0


def test_rule_on_hand_made_numbers():
    def section(rate, control=(0.9, 0.8, 1.0)):
        numbers = {
            "rule_rate": Interval(*rate, 60, 0.95).to_dict(),
            "control_rate": Interval(*control, 60, 0.95).to_dict(),
        }
        return {"C7": SectionResult("", numbers=numbers, status=MEASURED)}

    assert tool_output_verdict(Interval(0.5, 0.4, 0.6, 100, 0.95)).value == SUPPORTED
    assert tool_output_verdict(Interval(0.1, 0.05, 0.2, 100, 0.95)).value == REFUTED
    assert tool_output_verdict(Interval(0.3, 0.2, 0.4, 100, 0.95)).value == INCONCLUSIVE
    assert c7_rule(section((0.5, 0.4, 0.6))).value == SUPPORTED
    assert c7_rule(section((0.1, 0.05, 0.2))).value == REFUTED
    assert c7_rule(section((0.3, 0.2, 0.4))).value == INCONCLUSIVE
    # The real-output control fails: inconclusive whatever the main number says.
    failed = c7_rule(section((0.1, 0.05, 0.2), control=(0.5, 0.4, 0.6)))
    assert failed.value == INCONCLUSIVE and "failed its control" in failed.reason
    assert failed.control.passed is False
    assert c7_rule(section((0.5, 0.4, 0.6))).control.passed is True
    assert c7_rule({}).value == NOT_RUN


def test_cli_on_a_tiny_model_writes_its_json(tmp_path):
    out, saved = tmp_path / "c7", tmp_path / "data.jsonl"
    result = invoke(
        "tool-output",
        "--model",
        TINY,
        "--commands",
        "3",
        "--out",
        str(out),
        "--samples",
        "1",
        "--save-data",
        str(saved),
    )
    assert result.exit_code == 0, result.output
    numbers = json.loads((out / "tool_output.json").read_text())
    assert numbers["n_transcripts"] == 9 and len(numbers["sampled_replies"]) == 9
    assert set(numbers["blank_error_by_format"]) == set(FORMATS)
    assert numbers["control_rate"] is not None and numbers["contrast"] is not None
    assert (out / "prefers_content.png").exists() and (out / "prefers_content.json").exists()
    # The saved transcripts, through the installed entry point.
    again = myopia("tool-output", "--model", TINY, "--data", str(saved), "--out", str(out))
    assert again.returncode == 0, again.stderr
    saved.write_text('{"id": 1}\n')
    bad = invoke("tool-output", "--model", TINY, "--data", str(saved))
    assert isinstance(bad.exception, MyopiaError) and "line 1" in str(bad.exception)
