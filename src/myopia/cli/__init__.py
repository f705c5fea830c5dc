"""The ``myopia`` command line. Each command is a thin wrapper over an importable function;
each module of this package holds one command or a few related ones."""

from __future__ import annotations

import importlib
import sys

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


def main() -> None:
    """Entry point: user mistakes become one line on stderr and exit status 2."""
    try:
        app()
    except MyopiaError as error:
        err_console.print(f"error: {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
