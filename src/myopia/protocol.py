"""The shape every claim's measurement takes, so that one implementation serves all.

A measurement is three things, in one module or small package of its own:

- a ``Config`` dataclass (frozen) holding every setting the measurement reads, with two
  presets: ``Config.full()`` (the report's budget) and ``Config.quick()`` (the smallest
  honest one, for ``myopia report --quick``);
- ``measure(model, tokenizer, config, ...) -> Result``: does the work and nothing else
  (no printing, no files, no verdict);
- a ``Result`` that turns into JSON (``to_dict``) and writes its JSON and plots
  (``write(out) -> list[Path]``).

The report section, the CLI command and the Python API call the same ``measure`` with the
same presets: a CLI command starts from ``Config.full()`` and each option the user sets
replaces one field (``with_options``), so a command run with its defaults is the
experiment whose verdict the report reads.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class ProbeConfig:
...     n_windows: int = 64
...     seed: int = 0
...     @classmethod
...     def full(cls): return cls()
...     @classmethod
...     def quick(cls): return cls(n_windows=8)
>>> with_options(ProbeConfig.full(), n_windows=None, seed=3)
ProbeConfig(n_windows=64, seed=3)
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar, runtime_checkable


@runtime_checkable
class MeasurementConfig(Protocol):
    """A measurement's settings, with the report's two budgets as presets."""

    @classmethod
    def full(cls) -> Self: ...

    @classmethod
    def quick(cls) -> Self: ...


@runtime_checkable
class MeasurementResult(Protocol):
    """What a measurement returns: JSON-able numbers, and files written on request."""

    def to_dict(self) -> dict: ...

    def write(self, out: Path) -> list[Path]: ...


ConfigT = TypeVar("ConfigT")

# CLAIMS.md version 2, rule 3: the seed of the report's verdicts. No design decision may be
# taken on it; design work uses other (pilot) seeds. Every measurement's full preset uses it,
# so that a command run with its defaults is the run whose verdict the report reads.
VERDICT_SEED = 20261201


def preset(config_class: type[ConfigT], quick: bool) -> ConfigT:
    """The report's preset of ``config_class``: ``quick()`` or ``full()``."""
    return config_class.quick() if quick else config_class.full()  # type: ignore[attr-defined]


def with_options(config: ConfigT, **options: Any) -> ConfigT:
    """``config`` with each option that was set (not None) replacing the field of that name.

    CLI options default to None so that an option the user leaves alone keeps the
    preset's value; a name that is not a field is a programming error, not a user one.
    """
    if not is_dataclass(config):
        raise TypeError(f"{type(config).__name__} is not a dataclass")
    names = {f.name for f in fields(config)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"{type(config).__name__} has no field(s) {', '.join(unknown)}")
    return replace(config, **{k: v for k, v in options.items() if v is not None})
