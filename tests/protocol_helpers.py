"""One check for every claim: a CLI command run with its defaults measures what the
report's full budget measures (myopia.protocol).

Both front-ends are run as they are, with the measurement's ``measure`` replaced by a
recorder that stops at the call: the CLI in-process with typer's ``CliRunner``, the report
section with a context that holds no model (nothing runs before ``measure``).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from typer.testing import CliRunner

from myopia.cli import app
from myopia.report.context import ReportConfig, ReportContext

TINY = "fresh-llama:d_model=32,n_layers=2,n_heads=2"


class Recorded(Exception):
    """Raised by the recorder in place of a measurement: carries the config it was given."""

    def __init__(self, config):
        super().__init__(repr(config))
        self.config = config


def record_measure(monkeypatch, *targets: str) -> None:
    """Replace each ``module.name`` in ``targets`` (a measurement's ``measure`` where a
    front-end looks it up) by a recorder that raises ``Recorded(config)``."""

    def recorder(model, tokenizer, config, *args, **kwargs):
        raise Recorded(config)

    # Import every module first: one imported while another's ``measure`` is already
    # replaced would bind the recorder under its own name for good (``from m import
    # measure``), and monkeypatch would then "restore" the recorder there.
    for target in targets:
        importlib.import_module(target.rsplit(".", 1)[0])
    for target in targets:
        monkeypatch.setattr(target, recorder)


def cli_config(*args: str):
    """The config that ``myopia ARGS`` passes to ``measure`` (run in-process)."""
    result = CliRunner().invoke(app, list(args))
    assert isinstance(result.exception, Recorded), result.output + repr(result.exception)
    return result.exception.config


def section_config(run, tmp_path: Path, n_layers: int = 2, seed: int = 0):
    """The config that the report section ``run`` passes to ``measure`` on the full budget."""
    config = ReportConfig(model=TINY, out=tmp_path, quick=False, seed=seed, show_progress=False)
    ctx = ReportContext(config, None, None, {"n_layers": n_layers}, _documents=[])
    try:
        run(ctx)
    except Recorded as recorded:
        return recorded.config
    raise AssertionError(f"{run.__name__} did not call measure")
