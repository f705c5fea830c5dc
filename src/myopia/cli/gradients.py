"""``myopia gradient-split``: current and future parts of the gradient (C1b)."""

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


@app.command("gradient-split")
def gradient_split(
    model: ModelOption = "smollm2",
    text: TextOption = None,
    seq_len: Annotated[int | None, typer.Option(help="Tokens per sequence.", min=2)] = None,
    n_sequences: Annotated[
        int | None,
        typer.Option(help="Sequences (each one gradient split; CIs are over sequences).", min=1),
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="Myopic gradient definition: kv or residual.")
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="Myopic attention path: fast or eager.")
    ] = None,
    reference: Annotated[
        bool | None,
        typer.Option(
            help="Also split the gradient of the same architecture at random initialisation "
            "(the reference the trained share is read against). Default: on."
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option(callback=out_folder, help="Folder for the plot and its JSON.")
    ] = Path("myopia-gradient-split"),
    seed: PresetSeedOption = None,
    progress: ProgressOption = True,
) -> None:
    """Split the gradient into current- and future-token parts; print the future share per
    layer. Defaults: the report's full budget (section C1b)."""
    import torch

    from myopia.data.text import load_corpus
    from myopia.gradients.future_share import FutureShareConfig, measure
    from myopia.models.loading import check_seq_len, load_model
    from myopia.protocol import with_options

    config = with_options(
        FutureShareConfig.full(),
        seq_len=seq_len,
        n_sequences=n_sequences,
        mode=mode,
        backend=backend,
        reference=reference,
        seed=seed,
    )
    config.check()
    torch.manual_seed(config.seed)  # a fresh model's weights
    loaded, tokenizer = load_model(model)
    check_seq_len(loaded, config.seq_len)
    result = measure(loaded, tokenizer, config, load_corpus(text), show_progress=progress)
    table = Table(
        "group",
        "future share",
        "95% CI",
        "|current|",
        "|future|",
        title=f"future share of the gradient norm ({config.mode}, "
        f"{config.n_sequences} × {config.seq_len})",
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
    if result.reference is not None:
        init = result.reference.overall_interval()
        out_console.print(
            f"at random initialisation (same sequences): whole model {init.mean:.3f} "
            f"[{init.low:.3f}, {init.high:.3f}]"
        )
    print_written(result.write(out, model))
