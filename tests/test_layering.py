"""Imports point one way: core → measurements → experiments → report → CLI.

Every module of ``src/myopia`` is parsed with ``ast`` (imports inside functions and under
``TYPE_CHECKING`` included, since a lazy import is still a dependency) and mapped to a
layer. A module may import its own layer or lower ones, never a higher one. Core packages
may import each other only without cycles, so each can be understood (and tested) from
the ones below it. The test fails naming the importing file, the line and the target.
"""

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

CORE, MEASUREMENT, EXPERIMENT, REPORT, CLI = range(5)
LAYER_NAMES = ("core", "measurement", "experiment", "report", "CLI")

# The first component under ``myopia`` decides the layer; the exceptions follow.
PACKAGE_LAYERS = {
    **dict.fromkeys(
        [
            "models",
            "attention",
            "gradients",
            "data",
            "stats",
            "io",
            "plots",
            "errors",
            "installed",
            "progress",
            "probes",
            "protocol",
            "checks",
            "threads",
            "jobs",
            "memory",
        ],
        CORE,
    ),
    **dict.fromkeys(
        [
            "training",
            "heads",
            "attribution",
            "lookahead",
            "faithfulness",
            "drift",
            "generation",
            "loom",
        ],
        MEASUREMENT,
    ),
    "experiments": EXPERIMENT,
    "report": REPORT,
    "cli": CLI,
    "__main__": CLI,
}
# What an experiment plugs into: the section registry, verdicts and the context a section
# is given. They sit with the experiments (and import nothing above them); the rest of the
# report (claims, running, HTML) sits above and finds the experiments by discovery.
REPORT_INTERFACE = {
    "myopia.report",
    "myopia.report.registry",
    "myopia.report.verdicts",
    "myopia.report.context",
}
# A measurement's command-line front end belongs to the CLI layer, whatever its folder.
COMMAND_MODULE_NAMES = {"command", "cli"}

# Upward imports that other work in progress removes. Each entry is (importing module,
# imported module). The list may only shrink: an entry that no longer occurs fails the
# test, so whoever fixes one deletes it here.
PENDING_UPWARD_IMPORTS: set[tuple[str, str]] = set()


def layer_of(module: str) -> int:
    parts = module.split(".")
    if module in REPORT_INTERFACE:
        return EXPERIMENT
    if len(parts) > 2 and parts[-1] in COMMAND_MODULE_NAMES:
        return CLI
    if len(parts) == 1:  # the package root: its version, and a facade imported lazily
        return CORE
    return PACKAGE_LAYERS[parts[1]]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported myopia module) for every import statement in ``path``."""
    module = module_name(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, path.name == "__init__.py")
            # ``from myopia.x import y`` may name a submodule y: count it as one.
            targets = [f"{target}.{alias.name}" for alias in node.names]
            targets = [t if _is_module(t) else target for t in targets]
        else:
            continue
        for target in targets:
            if target == "myopia" or target.startswith("myopia."):
                yield node.lineno, target


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (SRC / relative).with_suffix(".py").is_file() or (SRC / relative).is_dir()


def all_modules() -> list[Path]:
    return sorted((SRC / "myopia").rglob("*.py"))


def upward_imports() -> list[tuple[str, str, int, str]]:
    """(importing module, its file:line, imported module's layer, imported module)."""
    found = []
    for path in all_modules():
        module = module_name(path)
        for line, target in imports_of(path):
            if layer_of(target) > layer_of(module):
                found.append((module, f"{path.relative_to(SRC.parent)}:{line}", target))
    return found


def test_every_module_has_a_layer():
    for path in all_modules():
        layer_of(module_name(path))  # a KeyError names a package missing from the map


def test_imports_point_one_way():
    problems = [
        f"{where} imports {target} ({LAYER_NAMES[layer_of(target)]} layer) from the "
        f"{LAYER_NAMES[layer_of(module)]} layer {module}"
        for module, where, target in upward_imports()
        if (module, target) not in PENDING_UPWARD_IMPORTS
    ]
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_pending_upward_imports_still_exist():
    """A fixed pending import must leave the list, so the list only shrinks."""
    current = {(module, target) for module, _, target in upward_imports()}
    fixed = PENDING_UPWARD_IMPORTS - current
    assert not fixed, f"no longer imported, remove from PENDING_UPWARD_IMPORTS: {sorted(fixed)}"


def _package_graph(layer: int) -> dict[str, set[str]]:
    """Imports between the top-level units of one layer (``myopia.models``...)."""
    graph: dict[str, set[str]] = {}
    for path in all_modules():
        module = module_name(path)
        if module.count(".") < 1 or layer_of(module) != layer:
            continue
        unit = ".".join(module.split(".")[:2])
        for _, target in imports_of(path):
            other = ".".join(target.split(".")[:2])
            if other != unit and layer_of(target) == layer:
                graph.setdefault(unit, set()).add(other)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_core_packages_import_each_other_without_cycles():
    cycle = _cycle(_package_graph(CORE))
    assert cycle is None, "core import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}}) is None


def test_an_upward_import_is_found(tmp_path, monkeypatch):
    """The test itself sees a lazy upward import inside a function, by file and line."""
    package = tmp_path / "myopia"
    (package / "stats").mkdir(parents=True)
    (package / "experiments").mkdir()
    (package / "experiments" / "c1.py").write_text("")
    (package / "stats" / "__init__.py").write_text(
        "import numpy\n\n\ndef f():\n    from myopia.experiments import c1\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    [(module, where, target)] = upward_imports()
    assert (module, target) == ("myopia.stats", "myopia.experiments.c1")
    assert where.endswith("myopia/stats/__init__.py:5")


def test_the_figures_module_does_not_import_torch():
    """The figures module sits at the bottom: drawing a plot must not load torch or
    transformers (seconds of import time and gigabytes of libraries)."""
    code = "import sys, myopia.plots; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
