"""How experiments plug into the report: one module each, registered where it is written.

An experiment module in ``myopia.experiments`` declares its report section with
``@section`` and, if its numbers decide a claim, the claim's rule with ``@claim_rule``.
The report imports every module of that package, so adding an experiment is adding one
file; no central list is edited.

>>> @section("C5", claim="C5", title="Future-token probes")      # doctest: +SKIP
... def future_token_probes(ctx: ReportContext) -> SectionResult:
...     ...
>>> @claim_rule("C5")                                              # doctest: +SKIP
... def c5_rule(results: dict[str, SectionResult]) -> Verdict:
...     ...
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from myopia.report.verdicts import Verdict

if TYPE_CHECKING:
    from myopia.report.context import ReportContext

MEASURED, NOT_MEASURED, FAILED = "measured", "not run", "failed"


@dataclass
class Plot:
    path: str  # relative to the report folder
    caption: str


@dataclass
class SectionResult:
    """What one experiment measured, in the report's terms."""

    summary: str  # plain words: what was measured and what came out
    numbers: dict = field(default_factory=dict)  # JSON-able; intervals as dicts
    rows: list[dict] = field(default_factory=list)  # table rows to show: label, value, CI
    plots: list[Plot] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    budget: dict = field(default_factory=dict)  # sizes used (sequences, tokens, seeds...)
    status: str = MEASURED
    duration_s: float = 0.0
    # Where the section computed: a section that trains on another device than the model's
    # says so here; left empty, the report fills in the GPU(s) the section allocated
    # memory on, else the model's device.
    device: str = ""


@dataclass(frozen=True)
class Section:
    key: str
    claim: str
    title: str
    run: Callable[[ReportContext], SectionResult]


_SECTIONS: dict[str, Section] = {}
_RULES: dict[str, Callable[[dict[str, SectionResult]], Verdict]] = {}


def section(key: str, claim: str, title: str):
    """Register ``function(ctx) -> SectionResult`` as report section ``key`` of ``claim``."""

    def register(function):
        if key in _SECTIONS and _SECTIONS[key].run is not function:
            raise ValueError(f"report section {key!r} is registered twice")
        _SECTIONS[key] = Section(key, claim, title, function)
        return function

    return register


def claim_rule(claim: str):
    """Register ``rule(results_by_section_key) -> Verdict``: the claim's CLAIMS.md rule."""

    def register(function):
        _RULES[claim] = function
        return function

    return register


def discover(package: str = "myopia.experiments") -> None:
    """Import every experiment module so that its sections and rules register."""
    root = importlib.import_module(package)
    for info in pkgutil.iter_modules(root.__path__):
        importlib.import_module(f"{package}.{info.name}")


def sections_for(claim: str) -> list[Section]:
    return [s for s in sorted(_SECTIONS.values(), key=lambda s: s.key) if s.claim == claim]


def rule_for(claim: str):
    return _RULES.get(claim)


def all_sections() -> list[Section]:
    return sorted(_SECTIONS.values(), key=lambda s: s.key)
