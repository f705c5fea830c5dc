"""``myopia report``: every claim on one model, one HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from myopia.cli.app import (
    SEED_RANGE,
    ModelOption,
    TextOption,
    WorkersOption,
    app,
    out_console,
    out_folder,
)
from myopia.errors import MyopiaError
from myopia.protocol import VERDICT_SEED


@app.command()
def report(
    model: ModelOption = "smollm2",
    out: Annotated[
        Path,
        typer.Option(help="Folder for index.html, results.json and plots.", callback=out_folder),
    ] = Path("myopia-report"),
    quick: Annotated[
        bool, typer.Option(help="Smallest honest budget per section (smoke runs, under 4 minutes).")
    ] = False,
    seed: Annotated[
        int,
        typer.Option(
            help="Random seed of every draw. The default, 20261201, is CLAIMS.md's verdict "
            "seed; another seed reruns the same design on fresh draws.",
            **SEED_RANGE,
        ),
    ] = VERDICT_SEED,
    text: TextOption = None,
    only: Annotated[
        list[str] | None,
        typer.Option(help="Run only these sections or claims (e.g. --only C1b); repeatable."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars on stderr.")] = True,
    fresh: Annotated[
        bool,
        typer.Option(
            help="Recompute every section. Without it, sections that an earlier run into the "
            "same --out finished with the same seed, budget, model, text and code are reused "
            "(a killed report resumes where it stopped)."
        ),
    ] = False,
    workers: WorkersOption = None,
) -> None:
    """Run every claim of CLAIMS.md on a model and write one HTML report."""
    from myopia.report.context import ReportConfig
    from myopia.report.run import run_report

    config = ReportConfig(
        model=model,
        out=out,
        quick=quick,
        seed=seed,
        text=text,
        only=tuple(only or ()),
        show_progress=progress,
        fresh=fresh,
        workers=workers,
    )
    results = run_report(config)
    table = Table(
        "claim", "verdict", "control", "why", title=f"myopia report ({results['duration_s']} s)"
    )
    for claim in results["claims"]:
        control = claim["control"]
        passed = "—" if control is None else ("passed" if control["passed"] else "failed")
        table.add_row(claim["id"], claim["verdict"], passed, claim["reason"])
    out_console.print(table)
    if results["reused_sections"]:
        out_console.print(
            f"reused from an earlier run: {', '.join(results['reused_sections'])} "
            "(--fresh recomputes them)"
        )
    out_console.print(f"report: {out / 'index.html'}")
    failed = [s["key"] for c in results["claims"] for s in c["sections"] if s["status"] == "failed"]
    if failed:
        raise MyopiaError(f"sections failed: {', '.join(failed)} (details in {out / 'index.html'})")
