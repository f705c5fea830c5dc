"""``myopia train`` and ``myopia gap``: training with the ordinary or a myopic gradient."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from myopia.cli.app import ModelOption, SeedOption, TextOption, app, out_console
from myopia.errors import MyopiaError

PrecachingOptions = {
    "p": "Pre-caching task: probability that a target is the sum over earlier inputs.",
    "lags": "Pre-caching task: earlier inputs summed (0: the no-future control).",
    "frequency": "Pre-caching task: f in sin(f·x); the published task uses 10.",
}


TASKS = ("text", "precaching", "choice", "effort")
_TASK_PANEL = "Synthetic tasks (--task precaching / effort)"
_TASK_DEFAULT = "default: the task's own"


@app.command()
def train(
    task: Annotated[
        str,
        typer.Option(
            help="text: next-token training on natural text (--model, --text). "
            "precaching: the synthetic pre-caching task of C1(a) (continuous inputs, Huber "
            "loss). choice: the P0/P1 task of C2 (gradient normal, kv or on-policy). "
            "effort: C3's effort-allocation task (a hard current target and a later one "
            "that needs pre-computation; --d-model sets the capacity)."
        ),
    ] = "text",
    model: ModelOption = "fresh-llama",
    text: TextOption = None,
    gradient: Annotated[
        str,
        typer.Option(
            help="Gradient: normal; kv or residual (the exact myopic gradient); bigram "
            "(the transformer-bigram model, text only); on-policy (choice only: the model "
            "samples its own choice, REINFORCE with a leave-one-out baseline)."
        ),
    ] = "normal",
    steps: Annotated[
        int | None, typer.Option(help=f"Optimizer steps ({_TASK_DEFAULT}; text: 200).", min=1)
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help=f"Sequences per step ({_TASK_DEFAULT}; text: 8).", min=1)
    ] = None,
    seq_len: Annotated[
        int | None,
        typer.Option(help=f"Positions per sequence ({_TASK_DEFAULT}; text: 128).", min=2),
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help=f"Peak learning rate, AdamW ({_TASK_DEFAULT}).")
    ] = None,
    warmup_steps: Annotated[
        int | None, typer.Option(help=f"Linear warm-up steps ({_TASK_DEFAULT}).", min=0)
    ] = None,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (text).")] = 0.01,
    schedule: Annotated[
        str, typer.Option(help="After warm-up (text): cosine (to 10% of lr) or constant.")
    ] = "cosine",
    eval_every: Annotated[int, typer.Option(help="Steps between evaluations.", min=1)] = 50,
    eval_batches: Annotated[
        int, typer.Option(help="Batches of held-out data per evaluation.", min=1)
    ] = 4,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.", min=1)] = 50,
    out: Annotated[
        Path, typer.Option(help="Folder for checkpoint.pt, log.json and the plot.")
    ] = Path("myopia-train"),
    seed: SeedOption = 0,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out from its checkpoint.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    p: Annotated[
        float, typer.Option(help=PrecachingOptions["p"], rich_help_panel=_TASK_PANEL)
    ] = 1.0,
    lags: Annotated[
        int, typer.Option(help=PrecachingOptions["lags"], min=0, rich_help_panel=_TASK_PANEL)
    ] = 5,
    frequency: Annotated[
        float, typer.Option(help=PrecachingOptions["frequency"], rich_help_panel=_TASK_PANEL)
    ] = 3.0,
    d_model: Annotated[
        int | None,
        typer.Option(
            help="Model width of the precaching (default 128) and effort (default 6) tasks.",
            min=1,
            rich_help_panel=_TASK_PANEL,
        ),
    ] = None,
) -> None:
    """Train a model with the ordinary or a myopic gradient; checkpoints resume exactly."""
    if task not in TASKS:
        raise MyopiaError(f"unknown --task {task!r}: choose one of {', '.join(TASKS)}")
    given = {
        "steps": steps,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "lr": lr,
        "warmup_steps": warmup_steps,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if task == "precaching":
        from myopia.training.continuous import ContinuousFit
        from myopia.training.precaching import PrecachingTask, train_precaching_into

        length = {"seq_len": given.pop("seq_len")} if "seq_len" in given else {}
        run = train_precaching_into(
            PrecachingTask(p=p, lags=lags, frequency=frequency, d_model=d_model or 128, **length),
            ContinuousFit(gradient=gradient, seed=seed, **given),
            out,
            resume,
            progress,
        )
        out_console.print(
            f"held-out Huber loss {run.eval_loss:.4f} (trivial {run.trivial_loss:.4f}) "
            f"({gradient}); log: {out / 'log.json'}, curve: {out / 'loss_curve.png'}"
        )
        return
    if task == "effort":
        from myopia.experiments.c3_effort_allocation import FIT
        from myopia.training.continuous import ContinuousFit
        from myopia.training.effort_task import EffortTask, train_effort_into

        length = {"seq_len": given.pop("seq_len")} if "seq_len" in given else {}
        width = {"d_model": d_model} if d_model else {}
        run = train_effort_into(
            EffortTask(**length, **width),
            ContinuousFit(**{**FIT, "gradient": gradient, "seed": seed, **given}),
            out,
            resume,
            progress,
        )
        out_console.print(
            f"held-out Huber loss: current part {run.current_loss:.4f} (predicting 0: "
            f"{run.zero_current_loss:.4f}), later part {run.later_loss:.4f} (predicting 0: "
            f"{run.zero_later_loss:.4f}) ({gradient}); log: {out / 'log.json'}"
        )
        return
    if task == "choice":
        from myopia.training.choice_task import train_choice_into

        if resume:
            raise MyopiaError(
                "--task choice runs take seconds and do not checkpoint: drop --resume"
            )
        run = train_choice_into(gradient, seed, given, out, progress)
        out_console.print(
            f"P(P1) at the choice: {run.p_easy[0]:.3f} before, {run.final_p_easy:.3f} after "
            f"training ({gradient}); log: {out / 'log.json'}, plot: {out / 'p_easy.png'}"
        )
        return

    from myopia.training import TrainConfig
    from myopia.training import train as run_training

    config = TrainConfig(
        model=model,
        text=text,
        gradient=gradient,
        weight_decay=weight_decay,
        schedule=schedule,
        seed=seed,
        eval_every=eval_every,
        eval_batches=eval_batches,
        checkpoint_every=checkpoint_every,
        out=out,
        **given,
    )
    result = run_training(config, resume=resume, show_progress=progress)
    if result.rank == 0:
        out_console.print(
            f"final eval loss {result.final_eval_loss:.4f} after {config.steps} steps "
            f"({gradient}); log: {out / 'log.json'}, curve: {out / 'loss_curve.png'}"
        )


@app.command()
def gap(
    task: Annotated[
        str,
        typer.Option(
            help="precaching (the synthetic task of Wu, Morris and Levine) or text "
            "(a fresh model on natural text, with loss by position)."
        ),
    ] = "precaching",
    gradient: Annotated[
        list[str] | None,
        typer.Option(
            help="Myopic mode(s) compared with normal training: kv, residual, or bigram "
            "(text only); repeatable. Default: kv."
        ),
    ] = None,
    seeds: Annotated[int, typer.Option(help="Seeds (one model per seed and mode).", min=1)] = 3,
    seed: SeedOption = 0,
    steps: Annotated[int, typer.Option(help="Optimizer steps per model.", min=1)] = 400,
    batch_size: Annotated[int, typer.Option(help="Sequences per step.", min=1)] = 32,
    seq_len: Annotated[int, typer.Option(help="Positions per sequence.", min=2)] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 2e-3,
    p: Annotated[float, typer.Option(help=PrecachingOptions["p"])] = 1.0,
    lags: Annotated[int, typer.Option(help=PrecachingOptions["lags"], min=0)] = 5,
    frequency: Annotated[float, typer.Option(help=PrecachingOptions["frequency"])] = 3.0,
    d_model: Annotated[int, typer.Option(help="Pre-caching task: model width.", min=1)] = 128,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Text task: model spec, fresh-llama[:k=v,...].")
    ] = "fresh-llama",
    text: TextOption = None,
    out: Annotated[
        Path, typer.Option(help="Folder for gap.json, its plot and the runs (which resume).")
    ] = Path("myopia-gap"),
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
) -> None:
    """Measure the myopia gap: loss(myopic training) − loss(normal training), per seed."""
    from myopia.training.gap import run_gap_command

    result = run_gap_command(
        task=task,
        modes=tuple(gradient or ("kv",)),
        seeds=[seed + k for k in range(seeds)],
        steps=steps,
        batch_size=batch_size,
        seq_len=seq_len,
        lr=lr,
        precaching={"p": p, "lags": lags, "frequency": frequency, "d_model": d_model},
        model=model,
        text=text,
        out=out,
        show_progress=progress,
    )
    table = Table(
        "gradient", "held-out loss", "gap vs normal (95% CI)", title=f"myopia gap: {task}"
    )
    for mode in result.losses:
        gap_text = ""
        if mode != "normal" and len(result.seeds) > 1:
            g = result.gap(mode)
            gap_text = f"{g.mean:+.4f} [{g.low:+.4f}, {g.high:+.4f}]"
        table.add_row(mode, f"{result.loss(mode).mean:.4f}", gap_text)
    out_console.print(table)
    out_console.print(f"results: {out / 'gap.json'}")
