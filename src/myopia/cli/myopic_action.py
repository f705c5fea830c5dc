"""``myopia myopic-action``: C2's measurement, P(P1) at the choice over training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from myopia.cli.app import ProgressOption, WorkersOption, app, out_console, out_folder
from myopia.cli.training import Lr, RunSeed, Seeds, Steps, WarmupSteps


@app.command("myopic-action")
def myopic_action(
    regime: Annotated[
        list[str] | None,
        typer.Option(
            help="normal or kv (teacher-forced), on-policy (REINFORCE credit for the model's "
            "own choice); repeatable. Default: all three."
        ),
    ] = None,
    steps: Steps = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per step.", min=2)] = None,
    lr: Lr = None,
    warmup_steps: WarmupSteps = None,
    eval_every: Annotated[
        int | None, typer.Option(help="Steps between P(P1) measurements.", min=1)
    ] = None,
    seeds: Seeds = None,
    seed: RunSeed = None,
    out: Annotated[
        Path,
        typer.Option(callback=out_folder, help="Folder for myopic_action.json and the P(P1) plot."),
    ] = Path("myopia-myopic-action"),
    progress: ProgressOption = True,
    workers: WorkersOption = None,
) -> None:
    """C2: train the choice task teacher-forced (normal, myopic) and on-policy, each in the
    arms P1-easy and P0-easy, follow P(P1) at the choice and report
    Δ = P(P1 | P1-easy) − P(P1 | P0-easy) paired by seed; the defaults are the report's full
    budget (seed 20261201)."""
    from myopia.jobs import default_workers
    from myopia.protocol import with_options
    from myopia.training.myopic_action import MyopicActionConfig, measure_myopic_action

    config = with_options(
        MyopicActionConfig.full(),
        regimes=None if regime is None else tuple(regime),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
        eval_every=eval_every,
        n_seeds=seeds,
        seed=seed,
    )
    result = measure_myopic_action(config, progress, workers or default_workers())
    files = result.write(out)
    table = Table(
        "regime", "P(P1), P1-easy", "P(P1), P0-easy", "Δ (95% CI over seeds)",
        title="myopic action (C2)",
    )  # fmt: skip
    for name in result.regimes:
        table.add_row(
            name,
            f"{result.final_interval(name, 'P1-easy').mean:.4f}",
            f"{result.final_interval(name, 'P0-easy').mean:.4f}",
            result.delta(name).text("+.4f"),
        )
    out_console.print(table)
    out_console.print(f"written: {', '.join(str(f) for f in files)}")
