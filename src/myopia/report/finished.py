"""Finished report sections, kept in the output folder so that a report resumes.

A report that is killed (or crashes) after some sections have finished loses nothing:
each finished section is stored in ``<out>/sections/<key>.json`` beside the key it was
computed under, and the next run of the same command reuses it. The key holds everything
a section's numbers depend on: the section, the seed, the budget (``--quick``), the model,
the natural text (by its files' sha256) and the code (a sha256 over every file of the
installed ``myopia`` package: data tables, templates and code alike). A section is reused
only when every part of its key matches and every plot it lists is still on disk; a
failed section is never stored, so it runs again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, fields
from functools import cache
from pathlib import Path

import myopia
from myopia.io import atomic_write_json
from myopia.report.registry import MEASURED, Plot, SectionResult

FOLDER = "sections"


@cache
def code_version() -> str:
    """sha256 over the path and bytes of every file of the ``myopia`` package (caches
    excluded): any change to code, data tables or templates is a new version."""
    root = Path(myopia.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def section_key(section: str, *, seed: int, quick: bool, model: str, text: dict) -> dict:
    """Everything a section's numbers depend on (``text``: sha256 by document name)."""
    return {
        "section": section,
        "seed": seed,
        "quick": quick,
        "model": model,
        "text_sha256": text,
        "code_sha256": code_version(),
        "myopia_version": myopia.__version__,
    }


def _path(out: Path, section: str) -> Path:
    return Path(out) / FOLDER / f"{section}.json"


def load_finished(out: Path, key: dict) -> SectionResult | None:
    """The section stored under exactly ``key`` in ``out``, or None (absent, stale, from
    another setting, unreadable, or with a plot missing)."""
    path = _path(out, key["section"])
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored["key"] != key:
            return None
        names = {f.name for f in fields(SectionResult)}
        result = SectionResult(**{k: v for k, v in stored["result"].items() if k in names})
        result.plots = [Plot(**plot) for plot in result.plots]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if result.status != MEASURED:
        return None
    if not all((Path(out) / plot.path).exists() for plot in result.plots):
        return None
    return result


def store_finished(out: Path, key: dict, result: SectionResult) -> None:
    """Keep a measured section for the next run (atomically: a kill mid-write keeps the
    previous file or none)."""
    if result.status == MEASURED:
        atomic_write_json(_path(out, key["section"]), {"key": key, "result": asdict(result)})
