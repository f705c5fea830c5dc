"""``myopia lookahead``: C5's future-token probes on any model and text."""

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
from myopia.protocol import with_options


@app.command()
def lookahead(
    model: ModelOption = "smollm2",
    text: TextOption = None,
    seq_len: Annotated[int | None, typer.Option(help="Tokens per window.", min=4)] = None,
    n_fit: Annotated[
        int | None, typer.Option(help="Train windows that fit the probes.", min=1)
    ] = None,
    n_val: Annotated[
        int | None, typer.Option(help="Train windows that choose the probe per k.", min=1)
    ] = None,
    n_eval: Annotated[
        int | None, typer.Option(help="Held-out windows (eval split) that score.", min=1)
    ] = None,
    n_classes: Annotated[
        int | None, typer.Option(help="Probe classes: the most frequent tokens.", min=2)
    ] = None,
    layer_stride: Annotated[
        int | None,
        typer.Option(help="Probe every this many hidden states (and the last).", min=1),
    ] = None,
    seed: PresetSeedOption = None,
    out: Annotated[
        Path,
        typer.Option(
            callback=out_folder, help="Folder for lookahead.json and the plot with its JSON."
        ),
    ] = Path("myopia-lookahead"),
    progress: ProgressOption = True,
) -> None:
    """Fit linear probes from the hidden state at t to the token at t + k and score them
    on held-out text against the strongest token-only baseline (unigram, bigram, trigram,
    4-gram, one-hot of the last 3 tokens), with the random-token control (C5). Defaults:
    the report's full budget (section C5)."""
    from myopia.data.text import load_corpus
    from myopia.lookahead.measure import FutureProbeConfig, measure
    from myopia.models.loading import load_model

    config = with_options(
        FutureProbeConfig.full(),
        seq_len=seq_len,
        n_fit=n_fit,
        n_val=n_val,
        n_eval=n_eval,
        n_classes=n_classes,
        layer_stride=layer_stride,
        seed=seed,
    )
    loaded, tokenizer = load_model(model)
    result = measure(loaded.eval(), tokenizer, config, load_corpus(text), show_progress=progress)
    probes = result.probes
    table = Table(
        "k", "probe (chosen on validation)", "held-out accuracy", "− best baseline", title=model
    )
    for k in probes.offsets:
        chosen = probes.selected[k]
        table.add_row(
            str(k),
            f"{chosen['family']}, layer {chosen['layer']}",
            probes.selected_accuracy(k).text(".3f"),
            f"{probes.selected_difference(k).text('+.3f')} vs {chosen['baseline']}",
        )
    out_console.print(table)
    print_written(result.write(out, model))
