"""``myopia detect-copy``, ``tool-output`` and ``off-context``: C6–C8 on any model and data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from myopia.cli.app import (
    ModelOption,
    PresetSeedOption,
    ProgressOption,
    TextOption,
    WorkersOption,
    app,
    in_file,
    out_console,
    out_file,
    out_folder,
    print_written,
)
from myopia.errors import MyopiaError
from myopia.protocol import with_options

FaithDataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        callback=in_file,
        help="Your JSONL file of records (one per line); default: a generated set.",
    ),
]
FaithSamplesOption = Annotated[
    int | None,
    typer.Option(
        help="Sampled continuations per prompt, labelled by rules (descriptive); 0 skips them."
    ),
]
FaithSampleLimitOption = Annotated[
    int | None, typer.Option(help="Sample only for the first this many prompts.", min=0)
]
FaithSaveOption = Annotated[
    Path | None,
    typer.Option(
        "--save-data", callback=out_file, help="Also write the records used to this JSONL file."
    ),
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
        int | None,
        typer.Option(help="Passages of the text's eval split to make requests from.", min=1),
    ] = None,
    seed: PresetSeedOption = None,
    out: Annotated[
        Path,
        typer.Option(
            callback=out_folder,
            help="Folder for copy_detection.json and the plots with their JSON.",
        ),
    ] = Path("myopia-copy"),
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Longest quote the model may write, in tokens.", min=1)
    ] = None,
    save_data: Annotated[
        Path | None,
        typer.Option(
            callback=out_file, help="Also write the quote requests used to this JSONL file."
        ),
    ] = None,
    progress: ProgressOption = True,
    workers: WorkersOption = None,
) -> None:
    """Ask for quotes that are and are not in a passage, label them by exact match, and
    score a lookback-ratio detector of copied vs hallucinated quotes on held-out passages.
    Defaults: the report's full budget (section C6)."""
    from myopia.data.text import load_corpus
    from myopia.faithfulness.copy_detection import CopyDetectionConfig, make_requests, measure
    from myopia.faithfulness.quote_data import QuoteRequest
    from myopia.jobs import default_workers
    from myopia.models.loading import load_model

    if data is not None and text is not None:
        raise MyopiaError("give either --data (your requests) or --text (text to make them from)")
    config = with_options(
        CopyDetectionConfig.full(), n_contexts=n_contexts, max_new_tokens=max_new_tokens, seed=seed
    )
    requests, saved = records(
        data, QuoteRequest, lambda: make_requests(config, load_corpus(text)), save_data
    )
    loaded, tokenizer = load_model(model)
    result = measure(
        loaded,
        tokenizer,
        config,
        requests=requests,
        show_progress=progress,
        workers=workers or default_workers(),
    )
    counts = result.label_counts()["exact"]
    table = Table("measure", "held-out AUROC (95% CI)", title=f"{model}: copy vs hallucination")
    for kind, row in counts.items():
        described = ", ".join(f"{n} {label}" for label, n in sorted(row.items()))
        table.add_row(f"quotes, {kind} word", described)
    if result.dropped.get("n"):
        table.add_row("left out", result.dropped["reason"])
    if result.exact is None:
        table.add_row("detectors", f"not scored: {result.reasons.get('exact')}")
    else:
        for label, interval in (
            ("lookback-ratio detector", result.exact.lookback),
            ("best single feature", result.exact.baseline),
            ("detector − best single feature", result.exact.difference),
            ("output only (length, log-prob, entropy)", result.exact.output_only),
            ("detector − output only", result.exact.difference_output),
            ("residual-stream probe", result.exact.residual),
            ("shuffled labels (control: should contain 0.5)", result.exact.shuffled),
            *(
                (f"detector, {kind}-word requests", value)
                for kind, value in result.exact.by_type.items()
            ),
        ):
            if interval is not None:
                table.add_row(label, interval.text("+.3f" if "−" in label else ".3f"))
    out_console.print(table)
    print_written(saved + result.write(out, model))


def records(data: Path | None, record_type, make, save_data: Path | None) -> tuple[list, list]:
    """The user's records from ``data`` (JSONL, checked line by line), or ``make()``; and
    the file they were also written to (``save_data``), if any."""
    from myopia.faithfulness.records import read_records, write_records

    chosen = read_records(data, record_type) if data is not None else make()
    return chosen, [write_records(save_data, chosen)] if save_data is not None else []


@app.command("tool-output")
def tool_output(
    model: ModelOption = "smollm2",
    data: FaithDataOption = None,
    commands: Annotated[
        int | None,
        typer.Option(
            help="Generated commands, dealt to the 3 formats in turn; each is shown with a "
            "real, a blank and an error output.",
            min=3,
        ),
    ] = None,
    seed: PresetSeedOption = None,
    out: Annotated[
        Path,
        typer.Option(
            callback=out_folder,
            help="Folder for tool_output.json and prefers_content.png (+ .json).",
        ),
    ] = Path("myopia-tool-output"),
    samples: FaithSamplesOption = None,
    sample_limit: FaithSampleLimitOption = None,
    save_data: FaithSaveOption = None,
    progress: ProgressOption = True,
) -> None:
    """Score whether the model describes a page when a fetch printed nothing or an error
    (C7): rates macro-averaged over transcript formats, the real-output control and the
    within-command contrast. Defaults: the report's full budget (section C7)."""
    from myopia.faithfulness.tool_output import ToolOutputConfig, make_transcripts, measure
    from myopia.faithfulness.tool_output_data import ToolTranscript
    from myopia.models.loading import load_model

    config = with_options(
        ToolOutputConfig.full(),
        commands=commands,
        samples=samples,
        sample_limit=sample_limit,
        seed=seed,
    )
    config.check()
    transcripts, saved = records(data, ToolTranscript, lambda: make_transcripts(config), save_data)
    loaded, tokenizer = load_model(model)
    result = measure(loaded, tokenizer, config, transcripts, show_progress=progress)
    table = Table("outputs", "commands", "share preferring 'describes content'", title=model)
    for name, interval in result.rates_by("format", ("real",)).items():
        table.add_row(f"{name}: real", str(interval.n), interval.text(".2f"))
    for name, interval in result.rates_by("format", ("blank", "error")).items():
        table.add_row(f"{name}: blank + error", str(interval.n), interval.text(".2f"))
    for label, interval in (
        ("real, macro over formats (control: >= 0.70)", result.control_rate()),
        ("blank + error, macro over formats (the rule)", result.rule_rate()),
        ("contrast: log-odds blank/error − real", result.contrast()),
    ):
        if interval is not None:
            table.add_row(label, str(interval.n), interval.text("+.2f" if "−" in label else ".2f"))
    out_console.print(table)
    print_written(saved + result.write(out, model))


@app.command("off-context")
def off_context(
    model: ModelOption = "smollm2",
    data: FaithDataOption = None,
    n: Annotated[
        int | None,
        typer.Option(help="Generated questions (five per article: 1 control, 4 off-topic)."),
    ] = None,
    seed: PresetSeedOption = None,
    out: Annotated[
        Path,
        typer.Option(
            callback=out_folder,
            help="Folder for off_context.json and answer_rate_by_framing.png (+ .json).",
        ),
    ] = Path("myopia-off-context"),
    samples: FaithSamplesOption = None,
    sample_limit: FaithSampleLimitOption = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Tokens per sampled answer.", min=1)
    ] = None,
    save_data: FaithSaveOption = None,
    progress: ProgressOption = True,
) -> None:
    """Score whether the model answers what the given article does not say, per framing
    (C8). Defaults: the report's full budget (section C8)."""
    from myopia.faithfulness.article_data import ArticleQuestion
    from myopia.faithfulness.off_context import OffContextConfig, make_questions, measure
    from myopia.models.loading import load_model

    config = with_options(
        OffContextConfig.full(),
        records=n,
        samples=samples,
        sample_limit=sample_limit,
        max_new_tokens=max_new_tokens,
        seed=seed,
    )
    config.check()
    questions, saved = records(data, ArticleQuestion, lambda: make_questions(config), save_data)
    loaded, tokenizer = load_model(model)
    result = measure(loaded, tokenizer, config, questions, show_progress=progress)
    table = Table(
        "framing",
        "off-topic answered (verdict half)",
        "control answered (verdict half)",
        "selectivity (verdict half)",
        title=f"{model} (C8)",
    )
    for framing, entry in result.table().items():
        cells = [entry["off_topic_verdict"], entry["control_verdict"], entry["selectivity_verdict"]]
        texts = [f"{c['mean']:.2f} [{c['low']:.2f}, {c['high']:.2f}]" if c else "-" for c in cells]
        chosen = " (chosen on the selection half)" if framing == result.best_framing else ""
        table.add_row(framing + chosen, *texts)
    out_console.print(table)
    for label, value in (
        (f"selectivity gain, {result.best_framing} − plain", result.selectivity_gain()),
        (f"control drop, plain − {result.best_framing}", result.control_drop()),
    ):
        if value is not None:
            out_console.print(f"{label} (verdict half): {value.text('+.2f')}")
    print_written(saved + result.write(out, model))
