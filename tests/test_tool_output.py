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
    records = generate_tool_transcripts(120, seed=3)
    assert records == generate_tool_transcripts(120, seed=3)
    assert records != generate_tool_transcripts(120, seed=4)
    assert len(records) == 120 and len({r.id for r in records}) == 120
    assert {r.tool for r in records} == {t.name for t in TOOLS}
    assert {r.format for r in records} == set(FORMATS)
    assert len({r.error_kind for r in records if r.error_kind}) >= 8
    assert len({r.topic for r in records}) >= 20
    by_command: dict[str, list[ToolTranscript]] = {}
    for r in records:
        by_command.setdefault(r.command_id, []).append(r)
    for group in by_command.values():
        # One command: the same context, four different outputs (real, blank, two errors).
        assert len({r.context for r in group}) == 1
        assert [r.output_kind for r in group] == ["real", "blank", "error", "error"]
        assert len({r.query for r in group}) == 4
        real, blank = group[0], group[1]
        assert blank.query in {
            after.format(shell=s)
            for after in [f[1] for f in FORMATS.values()]
            for s in ("$ ", "PS C:\\Users\\me> ")
        }
        assert real.query != blank.query and len(real.query) > len(blank.query)


def test_records_round_trip_and_bad_lines_are_named(tmp_path):
    records = generate_tool_transcripts(8, seed=0)
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


def _hand_records():
    def make(command, kind, error=""):
        return ToolTranscript(
            f"{command}-{kind}-{error}",
            command,
            "curl",
            "chat",
            "lemon cakes",
            kind,
            error,
            f"ctx {command}",
            kind,
            [" a", " b", " c"],
            [" d", " e", " f"],
        )

    records = []
    for c in range(6):
        records += [make(f"c{c}", "real"), make(f"c{c}", "blank"), make(f"c{c}", "error", "dns")]
    return records


def test_evaluator_measures_planted_preferences():
    records = _hand_records()
    result = evaluate_tool_outputs(
        None, None, records, ToolOutputConfig(), _planted_scorer({"real"})
    )
    rates = result.rates_by("output_kind")
    assert rates["real"].mean == 1.0 and rates["blank"].mean == 0.0 and rates["error"].mean == 0.0
    assert result.rule_rate().mean == 0.0 and result.rule_rate().n == 12
    # log P(content) = logsumexp(-1, -9, -9), log P(empty) = logsumexp(-3, -8, -8).
    real = next(r for r in result.items if r["output_kind"] == "real")
    assert real["log_odds_content"] == pytest.approx(2.0, abs=0.02)
    planted = _planted_scorer({"real", "blank"})
    result = evaluate_tool_outputs(None, None, records, ToolOutputConfig(), planted)
    assert result.rule_rate().mean == pytest.approx(0.5)
    assert result.to_dict()["by_error_kind"]["dns"]["mean"] == 0.0


def test_rule_on_hand_made_numbers():
    def section(rate):
        return {"C7": SectionResult("", numbers={"rule_rate": rate.__dict__}, status=MEASURED)}

    assert tool_output_verdict(Interval(0.5, 0.4, 0.6, 100, 0.95)).value == SUPPORTED
    assert tool_output_verdict(Interval(0.1, 0.05, 0.2, 100, 0.95)).value == REFUTED
    assert tool_output_verdict(Interval(0.3, 0.2, 0.4, 100, 0.95)).value == INCONCLUSIVE
    assert c7_rule(section(Interval(0.5, 0.4, 0.6, 100, 0.95))).value == SUPPORTED
    assert c7_rule({}).value == NOT_RUN


def test_cli_on_a_tiny_model_writes_its_json(tmp_path):
    out, saved = tmp_path / "c7", tmp_path / "data.jsonl"
    result = invoke(
        "tool-output",
        "--model",
        TINY,
        "--n",
        "8",
        "--out",
        str(out),
        "--samples",
        "1",
        "--save-data",
        str(saved),
    )
    assert result.exit_code == 0, result.output
    numbers = json.loads((out / "tool_output.json").read_text())
    assert numbers["n_transcripts"] == 8 and len(numbers["sampled_replies"]) == 8
    assert (out / "prefers_content.png").exists() and (out / "prefers_content.json").exists()
    # The saved transcripts, through the installed entry point.
    again = myopia("tool-output", "--model", TINY, "--data", str(saved), "--out", str(out))
    assert again.returncode == 0, again.stderr
    saved.write_text('{"id": 1}\n')
    bad = invoke("tool-output", "--model", TINY, "--data", str(saved))
    assert isinstance(bad.exception, MyopiaError) and "line 1" in str(bad.exception)
