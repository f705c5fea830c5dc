"""``myopia drift``: C9's self-generation drift on any model and text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from myopia.cli.app import ModelOption, SeedOption, TextOption, app, out_console


@app.command()
def drift(
    model: ModelOption = "smollm2",
    text: TextOption = None,
    n_prompts: Annotated[
        int, typer.Option(help="Prompts from the text's eval split, each continued twice.", min=4)
    ] = 128,
    prompt_len: Annotated[int, typer.Option(help="Prompt length in tokens.", min=1)] = 32,
    continuation_len: Annotated[
        int, typer.Option(help="Tokens of natural and of self-generated continuation.", min=1)
    ] = 64,
    lengths: Annotated[
        list[int] | None,
        typer.Option(
            "--length",
            help="Generated-token counts at which the probe is scored (repeatable; default "
            "1, 2, 4, ... up to the continuation length).",
        ),
    ] = None,
    seed: SeedOption = 0,
    out: Annotated[
        Path, typer.Option(help="Folder for drift.json and the plots with their JSON.")
    ] = Path("myopia-drift"),
    progress: Annotated[bool, typer.Option(help="Show progress bars on stderr.")] = True,
) -> None:
    """Sample the model's own continuations of natural prompts and measure how far they
    drift: NLL by position, and a probe telling them from natural text by length."""
    from myopia.drift import DriftConfig
    from myopia.drift.command import run_drift

    if lengths is None:
        lengths = [2**i for i in range(continuation_len.bit_length()) if 2**i <= continuation_len]
        if lengths[-1] != continuation_len:
            lengths.append(continuation_len)
    config = DriftConfig(
        prompt_len=prompt_len,
        continuation_len=continuation_len,
        n_prompts=n_prompts,
        lengths=tuple(sorted(set(lengths))),
        seed=seed,
    )
    result, files = run_drift(model, config, out, text=text, show_progress=progress)
    table = Table("generated tokens", "probe layer", "held-out accuracy (95% CI)", title=model)
    for k in config.lengths:
        table.add_row(str(k), str(result.layer[k]), result.accuracy[k].text(".3f"))
    out_console.print(table)
    out_console.print(f"rise from the shortest to the longest: {result.rise.text('+.3f')}")
    out_console.print(f"written: {', '.join(str(f) for f in files)}")
