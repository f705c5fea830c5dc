"""``myopia drift``: C9's self-generation drift on any model and text."""

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
    app,
    out_console,
    out_folder,
    print_written,
)


@app.command()
def drift(
    model: ModelOption = "smollm2",
    text: TextOption = None,
    n_prompts: Annotated[
        int | None,
        typer.Option(help="Prompts from the text's eval split, each continued twice.", min=4),
    ] = None,
    prompt_len: Annotated[int | None, typer.Option(help="Prompt length in tokens.", min=1)] = None,
    continuation_len: Annotated[
        int | None,
        typer.Option(help="Tokens of natural and of self-generated continuation.", min=1),
    ] = None,
    lengths: Annotated[
        list[int] | None,
        typer.Option(
            "--length",
            help="Tokens k at which the probe is scored, on the 8-token window ending at "
            "token k (repeatable, each at least 8; default 8, 16, 32, ... up to the "
            "continuation length).",
        ),
    ] = None,
    seed: PresetSeedOption = None,
    out: Annotated[
        Path,
        typer.Option(
            callback=out_folder, help="Folder for drift.json and the plots with their JSON."
        ),
    ] = Path("myopia-drift"),
    progress: ProgressOption = True,
) -> None:
    """Sample the model's own continuations of natural prompts and measure how far they
    drift: NLL by position, and a probe telling them from natural text by length.
    Defaults: the report's full budget (section C9)."""
    from myopia.data.text import load_corpus
    from myopia.drift.measure import DriftConfig, measure
    from myopia.models.loading import check_seq_len, load_model
    from myopia.protocol import with_options

    if lengths is None and continuation_len is not None:
        # The default lengths follow a continuation length the user chose.
        lengths = [2**i for i in range(3, continuation_len.bit_length())] + [continuation_len]
    config = with_options(
        DriftConfig.full(),
        n_prompts=n_prompts,
        prompt_len=prompt_len,
        continuation_len=continuation_len,
        lengths=None if lengths is None else tuple(sorted(set(lengths))),
        seed=seed,
    )
    config.check()
    loaded, tokenizer = load_model(model)
    check_seq_len(
        loaded, config.prompt_len + config.continuation_len, "--prompt-len + --continuation-len"
    )
    result = measure(loaded.eval(), tokenizer, config, load_corpus(text), show_progress=progress)
    table = Table("window ends at token", "probe layer", "held-out accuracy (95% CI)", title=model)
    for k in config.lengths:
        table.add_row(str(k), str(result.layer[k]), result.accuracy[k].text(".3f"))
    out_console.print(table)
    out_console.print(f"rise from the shortest to the longest: {result.rise.text('+.3f')}")
    if result.control is not None:
        out_console.print(f"control, natural vs natural (chance 0.5): {result.control.text('.3f')}")
    out_console.print(f"NLL gap slope per token: {result.gap_slope().text('+.4f')}")
    print_written(result.write(out, model))
