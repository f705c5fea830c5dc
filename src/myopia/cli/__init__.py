"""The ``myopia`` command line. Each command is a thin wrapper over an importable function;
each module of this package holds one command or a few related ones."""

from __future__ import annotations

import importlib
import sys

import typer

from myopia.cli.app import app, err_console
from myopia.errors import MyopiaError
from myopia.loom.cli import loom_command  # no torch, no web server: --help stays fast

# Each module registers its commands on ``app`` when imported; `--help` lists them in
# this order.
COMMAND_MODULES = (
    "report",
    "gradients",
    "training",
    "myopic_action",
    "effort_allocation",
    "heads",
    "lookahead",
    "faithfulness",
    "drift",
)
for _name in COMMAND_MODULES:
    importlib.import_module(f"myopia.cli.{_name}")

# `myopia loom` is written in myopia.loom.cli, beside the app it serves.
app.command("loom")(loom_command)
importlib.import_module("myopia.cli.models")


# The exit status of a run stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


def main(args: list[str] | None = None) -> None:
    """Entry point: user mistakes become one line on stderr and exit status 2.

    Typer runs without its standalone mode so that a bad option value (click's usage
    errors) prints as one ``error:`` line like every other user mistake, instead of a
    boxed panel, and Ctrl-C says that it interrupted instead of printing a blank line.
    """
    try:
        code = app(args=args, standalone_mode=False)
    except MyopiaError as error:
        _fail(str(error), 2)
    except typer.Abort:  # end of input at a prompt
        code = INTERRUPTED
    except (MemoryError, RuntimeError) as error:
        if not _out_of_memory(error):
            raise
        _fail(
            "out of memory: the sizes asked for (batch, sequence length, model, number of "
            "samples) do not fit this machine; give smaller ones",
            2,
        )
    except typer.TyperException as error:  # click's usage errors: a bad option or command
        message = error.format_message()
        if message:  # (a group run without a subcommand has printed its help already)
            context = getattr(error, "ctx", None)
            command = context.command_path if context is not None else "myopia"
            _fail(f"{message} (see '{command} --help')", 2)
        sys.exit(2)
    if code == INTERRUPTED:
        _fail("interrupted; nothing half-written was kept (writes are atomic)", INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


def _out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says an allocation failed: Python's MemoryError, torch's
    OutOfMemoryError (GPU) or its CPU allocator's RuntimeError."""
    if isinstance(error, MemoryError):
        return True
    torch = sys.modules.get("torch")  # not imported: nothing torch allocated failed
    if torch is not None and isinstance(error, torch.OutOfMemoryError):
        return True
    return "DefaultCPUAllocator: can't allocate memory" in str(error)


def _fail(message: str, status: int) -> None:
    err_console.print(f"error: {message}", highlight=False, soft_wrap=True)
    sys.exit(status)
