"""``myopia heads`` and ``myopia attribute``: which heads do what, and for which positions."""

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
def heads(
    model: ModelOption = "smollm2",
    text: TextOption = None,
    seq_len: Annotated[
        int | None,
        typer.Option(help="Tokens per text window, BOS included where the model has one."),
    ] = None,
    batch: Annotated[
        int | None, typer.Option(help="Text windows (and repeated-token sequences).")
    ] = None,
    top: Annotated[int, typer.Option(help="Heads to list per kind.", min=1)] = 5,
    out: Annotated[
        Path, typer.Option(callback=out_folder, help="Folder for heads.png and heads.json.")
    ] = Path("myopia-heads"),
    seed: PresetSeedOption = None,
) -> None:
    """Score every head as previous-token, duplicate-token and induction head (TransformerLens's
    patterns and metric) and by the repeated-random-tokens induction stripe."""
    from myopia.data.text import load_corpus
    from myopia.heads.scan import HeadScanConfig, measure
    from myopia.models.loading import load_model

    config = with_options(HeadScanConfig.full(), seq_len=seq_len, batch=batch, seed=seed)
    loaded, tokenizer = load_model(model)
    source = "default corpus (Shakespeare)" if text is None else str(text)
    report = measure(loaded, tokenizer, config, load_corpus(text), source)
    for line in report.summary_lines(top):
        out_console.print(line, highlight=False)
    print_written(report.write(out, model, top))


@app.command("previous-token-heads")
def previous_token_heads(
    model: ModelOption = "smollm2",
    text: TextOption = None,
    n: Annotated[int | None, typer.Option(help="Random tokens per copy.", min=2)] = None,
    batch: Annotated[
        int | None, typer.Option(help="Sequences of repeated random tokens.", min=2)
    ] = None,
    text_len: Annotated[
        int | None, typer.Option(help="Tokens per natural-text window.", min=3)
    ] = None,
    text_batch: Annotated[int | None, typer.Option(help="Natural-text windows.", min=1)] = None,
    top_k: Annotated[
        int | None, typer.Option(help="Previous-token heads kept, best first.", min=1)
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Least previous-token score of a kept head.")
    ] = None,
    seed: PresetSeedOption = None,
    planted: Annotated[
        bool,
        typer.Option(
            help="Also run the known-answer control: the same measurement and rule on two "
            "hand-built models, a previous-token head that feeds an induction head (must "
            "come out supported) and one that serves only its own position (must not); "
            "written to planted_control.json."
        ),
    ] = False,
    out: Annotated[
        Path, typer.Option(callback=out_folder, help="Folder for previous_token_heads.json.")
    ] = Path("myopia-previous-token-heads"),
) -> None:
    """Find the previous-token heads on repeated random tokens and compare them with
    layer-matched random head sets (C4): median future share on natural text, and the
    mean-ablation effect Δsecond − Δfirst on fresh repeated tokens, with permutation
    p-values. Defaults: the report's full budget (section C4)."""
    from myopia.data.text import load_corpus
    from myopia.experiments.c4_previous_token_heads import PLANTED_NAMES, c4_main
    from myopia.heads.previous_token_role import (
        PreviousTokenHeadsConfig,
        measure,
        planted_control,
    )
    from myopia.io import atomic_write_json
    from myopia.models.loading import load_model

    config = with_options(
        PreviousTokenHeadsConfig.full(),
        n=n,
        batch=batch,
        text_len=text_len,
        text_batch=text_batch,
        top_k=top_k,
        threshold=threshold,
        seed=seed,
    )
    loaded, tokenizer = load_model(model)
    result = measure(loaded.eval(), tokenizer, config, load_corpus(text))
    if not result.heads:
        out_console.print(f"no head has a previous-token score ≥ {config.threshold}")
    elif result.no_null:
        heads = ", ".join(f"L{h.layer}.H{h.head} ({h.score:.2f})" for h in result.heads)
        out_console.print(f"detected {heads}; not compared: {result.no_null}")
    else:
        d = result.to_dict()
        table = Table(
            "statistic",
            "detected",
            "null median",
            "null 95th pct",
            "p",
            title=f"{model}: previous-token heads against layer-matched random sets",
        )
        table.add_row(
            "heads",
            ", ".join(f"L{h.layer}.H{h.head} ({h.score:.2f})" for h in result.heads),
            "",
            "",
            "",
        )
        for key, name in (
            ("future_share", "median future share (natural text)"),
            ("ablation_effect", "ablation Δsecond − Δfirst (nats)"),
        ):
            v = d[key]
            table.add_row(
                name,
                f"{v['observed']:+.4f}",
                f"{v['null_median']:+.4f}",
                f"{v['null_q95']:+.4f}",
                f"{v['p']:.3f}",
            )
        out_console.print(table)
    written = result.write(out, model)
    if planted:
        known = {kind: r.to_dict() for kind, r in planted_control(config).items()}
        for kind, numbers in known.items():
            out_console.print(f"planted head that {PLANTED_NAMES[kind]}: {c4_main(numbers).value}")
        written.append(atomic_write_json(out / "planted_control.json", known))
    print_written(written)


@app.command()
def attribute(
    model: ModelOption = "smollm2",
    text: TextOption = None,
    seq_len: Annotated[int | None, typer.Option(help="Tokens per text window.", min=2)] = None,
    n_sequences: Annotated[
        int | None, typer.Option(help="Text windows (eval split).", min=1)
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            help="first-order (all components at all positions from one ordinary and one "
            "myopic backward pass) or ablation (exact: one forward pass per component and "
            "position; restrict it with --component / --position). Default first-order."
        ),
    ] = None,
    ablation: Annotated[
        str | None,
        typer.Option(help="What replaces an output: mean (over the batch, the default) or zero."),
    ] = None,
    component: Annotated[
        list[str] | None,
        typer.Option(help="Only these components, e.g. L3.H5 or L3.MLP; repeatable."),
    ] = None,
    position: Annotated[
        list[int] | None, typer.Option(help="Only these positions (0-based); repeatable.")
    ] = None,
    top: Annotated[int, typer.Option(help="Components to list, by future share.", min=1)] = 10,
    out: Annotated[
        Path,
        typer.Option(
            callback=out_folder, help="Folder for the heatmap, the position plot and their JSON."
        ),
    ] = Path("myopia-attribution"),
    seed: PresetSeedOption = None,
    progress: ProgressOption = True,
) -> None:
    """Split every head's and MLP's effect at every position into the loss there (current)
    and at later positions (future)."""
    import torch

    from myopia.attribution.run import AttributionConfig, measure
    from myopia.data.text import load_corpus
    from myopia.models.loading import check_seq_len, load_model

    config = with_options(
        AttributionConfig.full(),
        seq_len=seq_len,
        n_sequences=n_sequences,
        method=None if method is None else method.replace("-", "_"),  # spelled first-order
        ablation=ablation,
        components=None if component is None else tuple(component),
        positions=None if position is None else tuple(position),
        seed=seed,
    )
    config.check()
    torch.manual_seed(config.seed)  # a fresh model's weights
    loaded, tokenizer = load_model(model)
    check_seq_len(loaded, config.seq_len)
    run = measure(loaded, tokenizer, config, load_corpus(text), show_progress=progress)
    shares = run.attribution.future_share()
    ranked = sorted(
        ((name, share) for name, share in shares.items() if share == share),
        key=lambda item: -item[1],
    )
    table = Table("component", "future share", title=f"{model}: highest future shares")
    for name, share in ranked[:top]:
        table.add_row(name, f"{share:.3f}")
    out_console.print(table)
    print_written(run.write(out, model))
