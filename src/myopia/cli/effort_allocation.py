"""``myopia effort-allocation``: C3's measurement, current vs later loss, task vs control."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from myopia.cli.app import ProgressOption, WorkersOption, app, out_console, out_folder
from myopia.cli.training import MAX_SEEDS, BatchSize, Lr, RunSeed, Steps, WarmupSteps


@app.command("effort-allocation")
def effort_allocation(
    width: Annotated[
        list[int] | None,
        typer.Option(
            help="Model width d_model (MLP 4 × d); repeatable. Default: 8 (the verdict's)."
        ),
    ] = None,
    gradient: Annotated[
        str | None, typer.Option(help="The myopic gradient compared: kv or residual.")
    ] = None,
    steps: Steps = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    warmup_steps: WarmupSteps = None,
    eval_batches: Annotated[
        int | None, typer.Option(help="Held-out batches per run.", min=1)
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option("--seeds", help="Seeds: --seed, --seed + 1, ...", min=2, max=MAX_SEEDS),
    ] = None,
    seed: RunSeed = None,
    out: Annotated[
        Path,
        typer.Option(callback=out_folder, help="Folder for effort_allocation.png and its JSON."),
    ] = Path("myopia-effort-allocation"),
    progress: ProgressOption = True,
    workers: WorkersOption = None,
) -> None:
    """C3: held-out loss of the current and the later part, normal vs myopic training paired
    by seed, on the task and on its control (the later target shuffled across sequences:
    nothing to pre-compute), and the difference in differences of the current loss; the
    defaults are the report's full budget (seed 20261201)."""
    from myopia.jobs import default_workers
    from myopia.protocol import with_options
    from myopia.training.effort_allocation import EffortAllocationConfig, measure_effort_allocation

    config = with_options(
        EffortAllocationConfig.full(),
        widths=None if width is None else tuple(width),
        myopic_gradient=gradient,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
        eval_batches=eval_batches,
        n_seeds=seeds,
        seed=seed,
    )
    result = measure_effort_allocation(config, progress, workers=workers or default_workers())
    files = result.write(out)
    table = Table(
        "d_model", "task", "current: normal − myopic", "total: normal − myopic", title="C3"
    )
    for w in result.widths:
        for kind in ("task", "control"):
            summary = result.width_summary(w, kind)
            table.add_row(
                str(w),
                kind,
                summary["current_difference"].text("+.4f"),
                summary["total_difference"].text("+.4f"),
            )
        table.add_row(str(w), "DiD", result.difference_in_differences(w).text("+.4f"), "")
    out_console.print(table)
    out_console.print(f"written: {', '.join(str(f) for f in files)}")
