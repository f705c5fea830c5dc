"""``myopia detect-copy``, ``tool-output`` and ``off-context``: C6–C8 on any model and data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from myopia.cli.app import ModelOption, SeedOption, TextOption, app, out_console

FaithDataOption = Annotated[
    Path | None,
    typer.Option(
        "--data", help="Your JSONL file of records (one per line); default: a generated set."
    ),
]
FaithSamplesOption = Annotated[
    int,
    typer.Option(
        help="Sampled continuations per prompt, labelled by rules (descriptive); 0 skips them."
    ),
]
FaithSaveOption = Annotated[
    Path | None,
    typer.Option("--save-data", help="Also write the records used to this JSONL file."),
]


@app.command("detect-copy")
def detect_copy(
    model: ModelOption = "smollm2",
    data: Annotated[
        Path | None,
        typer.Option(
            help="A JSONL file of quote requests (fields id, context_id, context, request, "
            "target, present, optional source); default: make them from --text."
        ),
    ] = None,
    text: TextOption = None,
    n_contexts: Annotated[
        int, typer.Option(help="Passages to make requests from (4 requests each).", min=1)
    ] = 40,
    seed: SeedOption = 0,
    out: Annotated[
        Path, typer.Option(help="Folder for copy_detection.json and the plots with their JSON.")
    ] = Path("myopia-copy"),
    max_new_tokens: Annotated[
        int, typer.Option(help="Longest quote the model may write, in tokens.", min=1)
    ] = 24,
    save_data: Annotated[
        Path | None, typer.Option(help="Also write the quote requests used to this JSONL file.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars on stderr.")] = True,
) -> None:
    """Ask for quotes that are and are not in a passage, label them by exact match, and
    score a lookback-ratio detector of copied vs hallucinated quotes on held-out passages."""
    from myopia.faithfulness.copy_detection import run_detect_copy

    result, files = run_detect_copy(
        model,
        data=data,
        text=text,
        n_contexts=n_contexts,
        seed=seed,
        out=out,
        max_new_tokens=max_new_tokens,
        save_data=save_data,
        show_progress=progress,
    )
    counts = result.label_counts()["exact"]
    table = Table("measure", "held-out AUROC (95% CI)", title=f"{model}: copy vs hallucination")
    for kind, row in counts.items():
        described = ", ".join(f"{n} {label}" for label, n in sorted(row.items()))
        table.add_row(f"quotes, {kind} word", described)
    if result.exact is None:
        table.add_row("detectors", f"not scored: {result.reasons.get('exact')}")
    else:
        for label, interval in (
            ("lookback-ratio detector", result.exact.lookback),
            ("best single feature", result.exact.baseline),
            ("detector − baseline", result.exact.difference),
            ("residual-stream probe", result.exact.residual),
            ("shuffled labels", result.exact.shuffled),
        ):
            if interval is not None:
                table.add_row(label, interval.text("+.3f" if "−" in label else ".3f"))
    out_console.print(table)
    out_console.print(f"written: {', '.join(str(f) for f in files)}")


@app.command("tool-output")
def tool_output(
    model: ModelOption = "smollm2",
    data: FaithDataOption = None,
    n: Annotated[
        int, typer.Option(help="Generated transcripts (four per command: real, blank, 2 errors).")
    ] = 120,
    seed: SeedOption = 0,
    out: Annotated[
        Path, typer.Option(help="Folder for tool_output.json and prefers_content.png (+ .json).")
    ] = Path("myopia-tool-output"),
    samples: FaithSamplesOption = 0,
    save_data: FaithSaveOption = None,
) -> None:
    """Score whether the model describes a page when a fetch printed nothing or an error (C7)."""
    from myopia.faithfulness.tool_output import run_tool_output

    result, files = run_tool_output(model, data, n, seed, out, samples, save_data)
    table = Table("outputs", "transcripts", "share preferring 'describes content'", title=model)
    for kind, interval in result.rates_by("output_kind").items():
        table.add_row(kind, str(interval.n), interval.text(".2f"))
    rule = result.rule_rate()
    if rule is not None:
        table.add_row("blank + error", str(rule.n), rule.text(".2f"))
    out_console.print(table)
    out_console.print(f"written: {', '.join(str(f) for f in files)}")


@app.command("off-context")
def off_context(
    model: ModelOption = "smollm2",
    data: FaithDataOption = None,
    n: Annotated[
        int, typer.Option(help="Generated questions (five per article: 1 control, 4 off-topic).")
    ] = 100,
    seed: SeedOption = 0,
    out: Annotated[
        Path,
        typer.Option(help="Folder for off_context.json and answer_rate_by_framing.png (+ .json)."),
    ] = Path("myopia-off-context"),
    samples: FaithSamplesOption = 0,
    save_data: FaithSaveOption = None,
) -> None:
    """Score whether the model answers what the given article does not say, per framing (C8)."""
    from myopia.faithfulness.off_context import run_off_context

    result, files = run_off_context(model, data, n, seed, out, samples, save_data)
    table = Table("framing", "off-topic answered (all)", "control answered", title=f"{model} (C8)")
    for framing, entry in result.table().items():
        cells = [entry["off_topic_all"], entry["control_all"]]
        texts = [f"{c['mean']:.2f} [{c['low']:.2f}, {c['high']:.2f}]" if c else "-" for c in cells]
        best = " (best)" if framing == result.best_framing else ""
        table.add_row(framing + best, *texts)
    out_console.print(table)
    diff = result.difference()
    if diff is not None:
        out_console.print(f"plain − {result.best_framing} (verdict half): {diff.text('+.2f')}")
    out_console.print(f"written: {', '.join(str(f) for f in files)}")
