"""``myopia heads`` and ``myopia attribute``: which heads do what, and for which positions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from myopia.cli.app import ModelOption, SeedOption, TextOption, app, out_console


@app.command()
def heads(
    model: ModelOption = "smollm2",
    text: TextOption = None,
    seq_len: Annotated[
        int, typer.Option(help="Tokens per text window, BOS included where the model has one.")
    ] = 128,
    batch: Annotated[int, typer.Option(help="Text windows (and repeated-token sequences).")] = 8,
    top: Annotated[int, typer.Option(help="Heads to list per kind.", min=1)] = 5,
    out: Annotated[Path, typer.Option(help="Folder for heads.png and heads.json.")] = Path(
        "myopia-heads"
    ),
    seed: SeedOption = 0,
) -> None:
    """Score every head as previous-token, duplicate-token and induction head (TransformerLens's
    patterns and metric) and by the repeated-random-tokens induction stripe."""
    from myopia.heads.command import run_heads

    report = run_heads(model, text, seq_len, batch, out, seed, top)
    for line in report.summary_lines(top):
        out_console.print(line, highlight=False)
    out_console.print(f"written: {', '.join(str(f) for f in report.files)}")


@app.command()
def attribute(
    model: ModelOption = "smollm2",
    text: TextOption = None,
    seq_len: Annotated[int, typer.Option(help="Tokens per text window.", min=2)] = 128,
    n_sequences: Annotated[int, typer.Option(help="Text windows (eval split).", min=1)] = 4,
    method: Annotated[
        str,
        typer.Option(
            help="first-order (all components at all positions from one ordinary and one "
            "myopic backward pass) or ablation (exact: one forward pass per component and "
            "position; restrict it with --component / --position)."
        ),
    ] = "first-order",
    ablation: Annotated[
        str, typer.Option(help="What replaces an output: mean (over the batch) or zero.")
    ] = "mean",
    component: Annotated[
        list[str] | None,
        typer.Option(help="Only these components, e.g. L3.H5 or L3.MLP; repeatable."),
    ] = None,
    position: Annotated[
        list[int] | None, typer.Option(help="Only these positions (0-based); repeatable.")
    ] = None,
    top: Annotated[int, typer.Option(help="Components to list, by future share.", min=1)] = 10,
    out: Annotated[
        Path, typer.Option(help="Folder for the heatmap, the position plot and their JSON.")
    ] = Path("myopia-attribution"),
    seed: SeedOption = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
) -> None:
    """Split every head's and MLP's effect at every position into the loss there (current)
    and at later positions (future)."""
    from myopia.attribution.run import attribute_text

    result = attribute_text(
        model,
        text,
        seq_len,
        n_sequences,
        method,
        ablation,
        out,
        seed,
        component,
        position,
        progress,
    )
    shares = result["attribution"].future_share()
    ranked = sorted(
        ((name, share) for name, share in shares.items() if share == share),
        key=lambda item: -item[1],
    )
    table = Table("component", "future share", title=f"{model}: highest future shares")
    for name, share in ranked[:top]:
        table.add_row(name, f"{share:.3f}")
    out_console.print(table)
    out_console.print(f"written: {', '.join(str(p) for p in result['files'].values())}")
