"""``myopia train <task>`` (one subcommand per task, each with its own options) and
``myopia gap precaching|text`` (C1(a)'s measurements)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from myopia.cli.app import (
    SEED_RANGE,
    ModelOption,
    ProgressOption,
    SeedOption,
    TextOption,
    WorkersOption,
    app,
    out_console,
    out_folder,
)

train_app = typer.Typer(
    help="Train a model with the ordinary or a myopic gradient, on one task; checkpoints "
    "resume exactly.\n\n"
    "Several GPUs: 'train text' runs under torchrun, with DDP or sharded with FSDP2 "
    "(--parallel; the recipe is in 'myopia train text --help'). The other tasks train "
    "small models, one per GPU: the recipe for the published pre-caching runs is in "
    "'myopia gap precaching --help'.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")
gap_app = typer.Typer(
    help="Measure the myopia gap, loss(myopic training) − loss(normal training), paired by "
    "seed (C1a).",
    no_args_is_help=True,
)
app.add_typer(gap_app, name="gap")

# Options several subcommands share. Numeric ones default to None: unset, the task's or
# the measurement's own value (its full preset) is kept.
Steps = Annotated[int | None, typer.Option(help="Optimizer steps per model.", min=1)]
# Past 2**20 a batch or a sequence cannot be allocated on any machine this runs on; the
# bound refuses such a number at parse time instead of as an overflow inside torch.
LARGEST_SIZE = 2**20
BatchSize = Annotated[int | None, typer.Option(help="Sequences per step.", min=1, max=LARGEST_SIZE)]
SeqLen = Annotated[
    int | None, typer.Option(help="Positions per sequence.", min=2, max=LARGEST_SIZE)
]
DModel = Annotated[int | None, typer.Option(help="Model width.", min=1, max=LARGEST_SIZE)]
Lr = Annotated[float | None, typer.Option(help="Peak learning rate (AdamW).")]
WarmupSteps = Annotated[int | None, typer.Option(help="Linear warm-up steps.", min=0)]
# Each seed trains its own models: 10,000 is already weeks of CPU, and a huge count must be
# refused before the list of seeds is built (2**31 of them filled 20 GB and was killed).
MAX_SEEDS = 10_000
Seeds = Annotated[
    int | None,
    typer.Option("--seeds", help="Seeds: --seed, --seed + 1, ...", min=1, max=MAX_SEEDS),
]
RunSeed = Annotated[
    int | None, typer.Option(help="Random seed (the first of --seeds).", **SEED_RANGE)
]
Resume = Annotated[bool, typer.Option(help="Continue the run in --out from its checkpoint.")]
RunOut = Annotated[
    Path,
    typer.Option(
        callback=out_folder, help="Folder for checkpoint.pt, log.json and the loss curve."
    ),
]
CheckpointEvery = Annotated[int, typer.Option(help="Steps between checkpoints.", min=1)]
P = Annotated[
    float | None,
    typer.Option("--p", help="Probability that a target is the sum over earlier inputs."),
]
Lags = Annotated[
    int | None, typer.Option(help="Earlier inputs summed (0: the no-future control).", min=0)
]
Frequency = Annotated[float | None, typer.Option(help="f in sin(f·x); the published task: 10.")]
ContinuousGradient = Annotated[
    str, typer.Option(help="normal, or the exact myopic gradient: kv or residual.")
]


# --- myopia train ------------------------------------------------------------------------


# Paragraphs on one line each: Typer keeps single line breaks of a command's help.
TRAIN_TEXT_HELP = (
    "Next-token training on natural text, with the ordinary or a myopic gradient.\n\n"
    "Several GPUs: launch the same command with torchrun. --batch-size is the global "
    "batch, split over the processes, and the weights reached are those of one process "
    "(up to the order of float sums). --parallel ddp keeps a whole model on each GPU; "
    "--parallel fsdp shards it (FSDP2) for a model that does not fit one GPU. Every "
    "--gradient works under both.\n\n"
    "A myopic vs normal pair of Pythia-160M-shaped models on 8 GPUs (same --seed, so "
    "the same initial weights and batches):\n\n"
    "torchrun --nproc_per_node 8 -m myopia.cli train text --text corpus/ "
    "--model fresh-llama:d_model=768,n_layers=12,n_heads=12,n_kv_heads=12,d_mlp=3072,"
    "max_positions=2048 --seq-len 2048 --batch-size 64 --steps 20000 --lr 6e-4 "
    "--warmup-steps 200 --eval-every 1000 --checkpoint-every 1000 --gradient normal "
    "--out runs/normal\n\n"
    "then the same with --gradient kv --out runs/kv. A model too large for one GPU (e.g. "
    "d_model=2048,n_layers=24,n_heads=16,n_kv_heads=16,d_mlp=8192): add --parallel fsdp. "
    "--resume continues a run under either --parallel, or on one process."
)


@train_app.command("text", help=TRAIN_TEXT_HELP)
def train_text(
    model: ModelOption = "fresh-llama",
    text: TextOption = None,
    gradient: Annotated[
        str,
        typer.Option(
            help="normal; kv or residual (the exact myopic gradient); bigram (the "
            "transformer-bigram model: each position attends to itself)."
        ),
    ] = "normal",
    steps: Annotated[int, typer.Option(help="Optimizer steps.", min=1)] = 200,
    batch_size: Annotated[int, typer.Option(help="Sequences per step.", min=1)] = 8,
    seq_len: Annotated[int, typer.Option(help="Tokens per sequence.", min=2)] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 1e-3,
    warmup_steps: Annotated[int, typer.Option(help="Linear warm-up steps.", min=0)] = 20,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.01,
    schedule: Annotated[
        str, typer.Option(help="After warm-up: cosine (to 10% of lr) or constant.")
    ] = "cosine",
    eval_every: Annotated[int, typer.Option(help="Steps between evaluations.", min=1)] = 50,
    eval_batches: Annotated[
        int, typer.Option(help="Batches of held-out text per evaluation.", min=1)
    ] = 4,
    checkpoint_every: CheckpointEvery = 50,
    out: RunOut = Path("myopia-train"),
    seed: SeedOption = 0,
    resume: Resume = False,
    parallel: Annotated[
        str,
        typer.Option(
            help="Under torchrun: ddp (a whole model per GPU, gradients averaged) or fsdp "
            "(parameters, gradients and optimizer state sharded over the GPUs with FSDP2, "
            "for a model that does not fit one). Ignored on one process."
        ),
    ] = "ddp",
    progress: ProgressOption = True,
) -> None:
    """Next-token training on natural text (help: TRAIN_TEXT_HELP)."""
    from myopia.training import TrainConfig, train

    config = TrainConfig(
        model=model,
        text=text,
        gradient=gradient,
        steps=steps,
        batch_size=batch_size,
        seq_len=seq_len,
        lr=lr,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        schedule=schedule,
        seed=seed,
        eval_every=eval_every,
        eval_batches=eval_batches,
        checkpoint_every=checkpoint_every,
        out=out,
        parallel=parallel,
    )
    result = train(config, resume=resume, show_progress=progress)
    if result.rank == 0:
        out_console.print(
            f"final eval loss {result.final_eval_loss:.4f} after {config.steps} steps "
            f"({gradient}, {result.device}); log: {out / 'log.json'}, "
            f"curve: {out / 'loss_curve.png'}"
        )


def _given(**options) -> dict:
    return {k: v for k, v in options.items() if v is not None}


@train_app.command("precaching")
def train_precaching(
    gradient: ContinuousGradient = "normal",
    p: P = None,
    lags: Lags = None,
    frequency: Frequency = None,
    seq_len: SeqLen = None,
    d_model: DModel = None,
    steps: Steps = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    warmup_steps: WarmupSteps = None,
    seed: SeedOption = 0,
    out: RunOut = Path("myopia-train"),
    checkpoint_every: CheckpointEvery = 200,
    resume: Resume = False,
    progress: ProgressOption = True,
) -> None:
    """One run of C1a's synthetic pre-caching task (continuous inputs, Huber loss); the
    defaults are one run of the report's full budget at p = 1."""
    from dataclasses import replace

    from myopia.protocol import with_options
    from myopia.training.precaching import train_precaching_into
    from myopia.training.precaching_gap import PrecachingGapConfig

    config = with_options(
        PrecachingGapConfig.full(),
        lags=lags,
        frequency=frequency,
        seq_len=seq_len,
        d_model=d_model,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
    )
    task = config.task(config.primary_p if p is None else p)
    fit = replace(config.fit(), gradient=gradient, seed=seed)
    run = train_precaching_into(task, fit, out, resume, progress, checkpoint_every)
    out_console.print(
        f"held-out Huber loss {run.eval_loss:.4f} (trivial {run.trivial_loss:.4f}) "
        f"({gradient}, {run.device}); log: {out / 'log.json'}, curve: {out / 'loss_curve.png'}"
    )


@train_app.command("effort")
def train_effort(
    gradient: ContinuousGradient = "normal",
    d_model: Annotated[
        int | None,
        typer.Option(
            help="Model width (the MLP is 4 × wider); default: C3's smallest.",
            min=1,
            max=LARGEST_SIZE,
        ),
    ] = None,
    control: Annotated[
        bool,
        typer.Option(
            help="C3's control task: each sequence's later target is another sequence's "
            "(nothing to pre-compute)."
        ),
    ] = False,
    seq_len: SeqLen = None,
    steps: Steps = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    warmup_steps: WarmupSteps = None,
    seed: SeedOption = 0,
    out: RunOut = Path("myopia-train"),
    checkpoint_every: CheckpointEvery = 200,
    resume: Resume = False,
    progress: ProgressOption = True,
) -> None:
    """One run of C3's effort-allocation task (a hard current target and a later one that
    needs pre-computation); the defaults are one run of the report's full budget."""
    from dataclasses import replace

    from myopia.protocol import with_options
    from myopia.training.effort_allocation import EffortAllocationConfig
    from myopia.training.effort_task import EffortTask, train_effort_into

    config = with_options(
        EffortAllocationConfig.full(),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
    )
    task = with_options(
        EffortTask(d_model=min(config.widths), shuffled_later=control),
        d_model=d_model,
        seq_len=seq_len,
    )
    fit = replace(config.fit(), gradient=gradient, seed=seed)
    run = train_effort_into(task, fit, out, resume, progress, checkpoint_every)
    out_console.print(
        f"held-out Huber loss: current part {run.current_loss:.4f} (predicting 0: "
        f"{run.zero_current_loss:.4f}), later part {run.later_loss:.4f} (predicting 0: "
        f"{run.zero_later_loss:.4f}) ({gradient}, {run.device}); log: {out / 'log.json'}"
    )


@train_app.command("choice")
def train_choice(
    gradient: Annotated[
        str,
        typer.Option(
            help="normal or kv (teacher-forced), or on-policy (the model samples its own "
            "choice; REINFORCE with a leave-one-out baseline)."
        ),
    ] = "normal",
    steps: Steps = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    warmup_steps: WarmupSteps = None,
    seed: SeedOption = 0,
    out: Annotated[
        Path,
        typer.Option(
            callback=out_folder,
            help="Folder for myopic_action.json and the P(P1) plot (both arms).",
        ),
    ] = Path("myopia-train"),
    progress: ProgressOption = True,
    workers: WorkersOption = None,
) -> None:
    """One seed of C2's P0/P1 choice task in both arms (P1-easy, P0-easy; seconds, no
    checkpoint); the defaults are one seed of the report's full budget."""
    from myopia.jobs import default_workers
    from myopia.protocol import with_options
    from myopia.training.myopic_action import MyopicActionConfig, measure_myopic_action

    config = with_options(
        MyopicActionConfig.full(),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
        n_seeds=1,
        seed=seed,
        regimes=(gradient,),
    )
    result = measure_myopic_action(config, progress, workers or default_workers())
    files = result.write(out, f"choice task, {gradient}, seed {seed}")
    easy1, easy0 = (result.runs[gradient][arm][0] for arm in ("P1-easy", "P0-easy"))
    out_console.print(
        f"P(P1) at the choice: {easy1.p1[0]:.3f} before, {easy1.final_p1:.3f} after training "
        f"in arm P1-easy and {easy0.final_p1:.3f} in arm P0-easy ({gradient}, {easy1.device}); "
        f"written: {', '.join(str(f) for f in files)}"
    )


@train_app.command("induction")
def train_induction(
    n_tokens: Annotated[
        int | None,
        typer.Option(help="Distinct tokens of the random segments.", min=2, max=LARGEST_SIZE),
    ] = None,
    half_len: Annotated[
        int | None, typer.Option(help="Sequences are 2 × this long.", min=2)
    ] = None,
    d_model: DModel = None,
    steps: Steps = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    warmup_steps: WarmupSteps = None,
    seed: SeedOption = 0,
    out: Annotated[
        Path, typer.Option(callback=out_folder, help="Folder for log.json and the loss curve.")
    ] = Path("myopia-train"),
    progress: ProgressOption = True,
) -> None:
    """A 2-layer attention-only model on repeated random segments, where induction heads
    form (C4's small model)."""
    from myopia.protocol import with_options
    from myopia.training.induction_task import InductionTask, train_induction_into

    task = with_options(
        InductionTask(),
        n_tokens=n_tokens,
        half_len=half_len,
        d_model=d_model,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
    )
    run = train_induction_into(task, seed, out, progress)
    out_console.print(
        f"held-out loss: first copy {run.first_copy_loss:.4f}, second copy "
        f"{run.second_copy_loss:.4f} ({run.device}); log: {out / 'log.json'}"
    )


# --- myopia gap ----------------------------------------------------------------------------


def _gap_table(title: str, gap) -> Table:
    table = Table("gradient", "held-out loss", "gap vs normal (95% CI)", title=title)
    for mode in gap.losses:
        gap_text = ""
        if mode != "normal" and len(gap.seeds) > 1:
            gap_text = gap.gap(mode).text("+.4f")
        table.add_row(mode, f"{gap.loss(mode).mean:.4f}", gap_text)
    return table


# Paragraphs on one line each: Typer keeps single line breaks of a command's help.
GAP_PRECACHING_HELP = (
    "C1a on the synthetic pre-caching task of Wu, Morris and Levine, with its lags = 0 null "
    "(--no-null skips it); the defaults are the report's full budget.\n\n"
    "Several GPUs (the published settings): each model is small, so each GPU trains its "
    "own seed into its own folder; the runs are then copied into one --out/runs, where a "
    "last call with every seed finds them finished, reuses them and writes the gap with "
    "its CI:\n\n"
    "for k in 0 1 2 3 4 5 6 7; do CUDA_VISIBLE_DEVICES=$k myopia gap precaching "
    "--frequency 10 --lags 10 --seq-len 64 --steps 20000 --seed $k --seeds 1 "
    "--out gap/gpu$k --no-progress & done; wait\n\n"
    "mkdir -p gap/all/runs && cp -r gap/gpu*/runs/* gap/all/runs/\n\n"
    "myopia gap precaching --frequency 10 --lags 10 --seq-len 64 --steps 20000 --seed 0 "
    "--seeds 8 --out gap/all"
)


@gap_app.command("precaching", help=GAP_PRECACHING_HELP)
def gap_precaching(
    p: Annotated[
        list[float] | None,
        typer.Option(
            "--p",
            help="Probability that a target is the sum over earlier inputs; repeatable, the "
            "first is the primary setting (probed). Default: 1 and 0.5.",
        ),
    ] = None,
    gradient: Annotated[
        list[str] | None,
        typer.Option(
            help="Myopic mode(s) compared with normal training: kv, residual; repeatable. "
            "Default: kv and residual at the primary p, kv at the others."
        ),
    ] = None,
    lags: Lags = None,
    frequency: Frequency = None,
    seq_len: SeqLen = None,
    d_model: DModel = None,
    steps: Steps = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    warmup_steps: WarmupSteps = None,
    max_lag: Annotated[int | None, typer.Option(help="The probe's largest lag.", min=0)] = None,
    null: Annotated[
        bool | None,
        typer.Option(
            help="Also train the null, the same task with lags = 0 at the primary p (C1's "
            "control: its gap must be ~0). Default: on. `--lags 0` instead runs the null "
            "as the main task."
        ),
    ] = None,
    eval_every: Annotated[
        int | None,
        typer.Option(
            help="Held-out loss every this many steps, for the gap against training steps "
            "(gap_by_step.png).",
            min=1,
        ),
    ] = None,
    seeds: Seeds = None,
    seed: RunSeed = None,
    out: Annotated[
        Path,
        typer.Option(
            callback=out_folder, help="Folder for the JSON, the plots and the runs (which resume)."
        ),
    ] = Path("myopia-gap"),
    progress: ProgressOption = True,
    workers: WorkersOption = None,
) -> None:
    """C1a on the synthetic pre-caching task (help: GAP_PRECACHING_HELP)."""
    from myopia.jobs import default_workers
    from myopia.protocol import with_options
    from myopia.training.precaching_gap import PrecachingGapConfig, measure_precaching_gap

    modes = None if gradient is None else ("normal", *gradient)
    config = with_options(
        PrecachingGapConfig.full(),
        ps=None if p is None else tuple(p),
        modes_at_primary=modes,
        modes=modes,
        lags=lags,
        frequency=frequency,
        seq_len=seq_len,
        d_model=d_model,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
        max_lag=max_lag,
        null=null,
        eval_every=eval_every,
        n_seeds=seeds,
        seed=seed,
    )
    result = measure_precaching_gap(
        config, progress, runs_dir=Path(out) / "runs", workers=workers or default_workers()
    )
    files = result.write(out)
    for setting, gap in result.gaps.items():
        out_console.print(_gap_table(f"myopia gap, pre-caching, {result.label(setting)}", gap))
    if result.null is not None:
        out_console.print(_gap_table(f"myopia gap, {result.NULL_LABEL}", result.null))
    out_console.print(f"written: {', '.join(str(f) for f in files)}")


@gap_app.command("text")
def gap_text(
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Model spec trained from scratch: fresh-llama[:k=v,...]."
        ),
    ] = None,
    text: TextOption = None,
    gradient: Annotated[
        list[str] | None,
        typer.Option(
            help="Modes compared with normal training: kv, residual, bigram (the "
            "transformer-bigram baseline); repeatable. Default: kv and bigram."
        ),
    ] = None,
    seq_len: SeqLen = None,
    steps: Steps = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    eval_windows: Annotated[
        int | None, typer.Option(help="Held-out windows every model is scored on.", min=1)
    ] = None,
    early_positions: Annotated[
        int | None, typer.Option(help="Positions the 'first positions' gap covers.", min=1)
    ] = None,
    seeds: Seeds = None,
    seed: RunSeed = None,
    out: Annotated[
        Path,
        typer.Option(
            callback=out_folder, help="Folder for the JSON, the plot and the runs (which resume)."
        ),
    ] = Path("myopia-gap"),
    progress: ProgressOption = True,
    workers: WorkersOption = None,
) -> None:
    """C1a on natural text: a fresh model's myopia gap, with loss by position; the defaults
    are the report's full budget."""
    from myopia.jobs import default_workers
    from myopia.protocol import with_options
    from myopia.training.text_gap import TextGapConfig, measure_text_gap

    config = with_options(
        TextGapConfig.full(),
        model=model,
        modes=None if gradient is None else ("normal", *gradient),
        seq_len=seq_len,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        eval_windows=eval_windows,
        early_positions=early_positions,
        n_seeds=seeds,
        seed=seed,
    )
    result = measure_text_gap(
        config, text, Path(out) / "runs", progress, workers or default_workers()
    )
    files = result.write(out)
    out_console.print(_gap_table(f"myopia gap, {config.model} on text", result.gap))
    out_console.print(f"written: {', '.join(str(f) for f in files)}")
