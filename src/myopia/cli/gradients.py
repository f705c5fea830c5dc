"""``myopia gradient-split``: current and future parts of the gradient."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from myopia.cli.app import ModelOption, SeedOption, TextOption, app, out_console
from myopia.errors import MyopiaError


@app.command("gradient-split")
def gradient_split(
    model: ModelOption = "smollm2",
    text: TextOption = None,
    seq_len: Annotated[int, typer.Option(help="Tokens per sequence.", min=2)] = 128,
    n_sequences: Annotated[
        int,
        typer.Option(help="Sequences (each one gradient split; CIs are over sequences).", min=1),
    ] = 4,
    mode: Annotated[str, typer.Option(help="Myopic gradient definition: kv or residual.")] = "kv",
    backend: Annotated[str, typer.Option(help="Myopic attention path: fast or eager.")] = "fast",
    out: Annotated[Path, typer.Option(help="Folder for the plot and its JSON.")] = Path(
        "myopia-gradient-split"
    ),
    seed: SeedOption = 0,
) -> None:
    """Split the gradient into current- and future-token parts; print the future share per layer."""
    import torch

    from myopia.data.text import load_corpus, token_chunks
    from myopia.gradients.future_share import measure_future_share
    from myopia.gradients.plots import plot_future_share
    from myopia.models.loading import load_model

    if mode not in ("kv", "residual"):
        raise MyopiaError(f"--mode must be kv or residual, not {mode!r}")
    torch.manual_seed(seed)
    loaded, tokenizer = load_model(model)
    sequences = token_chunks(
        load_corpus(text), tokenizer, seq_len, n_sequences, seed=seed, split="eval"
    )
    result = measure_future_share(loaded, sequences, mode=mode, backend=backend)
    table = Table(
        "group",
        "future share",
        "95% CI",
        "|current|",
        "|future|",
        title=f"future share of the gradient norm ({mode}, {n_sequences} × {seq_len})",
    )
    for group, ci in [
        ("whole model", result.overall_interval()),
        *result.group_intervals().items(),
    ]:
        norms = result.norms.get(group)
        mean = (lambda xs: f"{sum(xs) / len(xs):.3g}") if norms else (lambda xs: "")
        table.add_row(
            group,
            f"{ci.mean:.3f}",
            f"[{ci.low:.3f}, {ci.high:.3f}]",
            mean(norms["current"]) if norms else "",
            mean(norms["future"]) if norms else "",
        )
    out_console.print(table)
    path = plot_future_share(
        result, out / "future_share_by_layer.png", f"{model}: future share per layer ({mode})"
    )
    out_console.print(f"plot: {path}\ndata: {path.with_suffix('.json')}")
