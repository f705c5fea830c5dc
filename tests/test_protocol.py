"""For every claim C1b, C4–C9: the CLI command run with its defaults measures the report's
full configuration (the report's verdict reads what a user's command measures)."""

import importlib

import pytest

from protocol_helpers import TINY, cli_config, record_measure, section_config

TEXT = "{text}"
CLAIMS = {
    "C1b": (
        [
            "myopia.gradients.future_share.measure",
            "myopia.experiments.c1b_future_gradient.measure",
        ],
        "myopia.experiments.c1b_future_gradient:future_gradient_share",
        ["gradient-split", "--text", TEXT],
    ),
    # claim: (measure where the CLI and the section look it up, the section, the command
    # with no option that the config holds; TEXT: a small text file)
    "C4": (
        [
            "myopia.heads.previous_token_role.measure",
            "myopia.experiments.c4_previous_token_heads.measure",
        ],
        "myopia.experiments.c4_previous_token_heads:previous_token_heads",
        ["previous-token-heads", "--text", TEXT],
    ),
    "C5": (
        ["myopia.lookahead.measure.measure", "myopia.experiments.c5_future_probes.measure"],
        "myopia.experiments.c5_future_probes:future_token_probes",
        ["lookahead", "--text", TEXT],
    ),
    "C6": (
        [
            "myopia.faithfulness.copy_detection.measure",
            "myopia.experiments.c6_copy_detection.measure",
        ],
        "myopia.experiments.c6_copy_detection:copy_detection",
        ["detect-copy", "--text", TEXT],
    ),
    "C7": (
        [
            "myopia.faithfulness.tool_output.measure",
            "myopia.experiments.c7_blank_tool_output.measure",
        ],
        "myopia.experiments.c7_blank_tool_output:blank_tool_output",
        ["tool-output"],
    ),
    "C8": (
        [
            "myopia.faithfulness.off_context.measure",
            "myopia.experiments.c8_off_context.measure",
        ],
        "myopia.experiments.c8_off_context:off_context_questions",
        ["off-context"],
    ),
    "C9": (
        ["myopia.drift.measure.measure", "myopia.experiments.c9_drift.measure"],
        "myopia.experiments.c9_drift:self_generation_drift",
        ["drift", "--text", TEXT],
    ),
}


@pytest.mark.parametrize("claim", sorted(CLAIMS))
def test_the_cli_defaults_are_the_reports_full_configuration(claim, monkeypatch, tmp_path):
    targets, section, command = CLAIMS[claim]
    record_measure(monkeypatch, *targets)
    module, name = section.split(":")
    run = getattr(importlib.import_module(module), name)
    text = tmp_path / "text.txt"
    words = "cat dog mat log sun rain hill sea ship road king bell".split()
    rows = (" ".join(words[(i * k) % 12] for k in (1, 3, 5, 7, 11)) for i in range(8000))
    text.write_text("\n".join(f"{i} {row}." for i, row in enumerate(rows)))
    command = [str(text) if arg == TEXT else arg for arg in command]
    from_cli = cli_config(*command, "--model", TINY, "--out", str(tmp_path / "cli"))
    # The report runs at the preset's own seed here, so that the configs can be equal.
    from_report = section_config(run, tmp_path, seed=from_cli.seed)
    assert from_cli == from_report
