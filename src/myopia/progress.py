"""Progress bars for long work, on stderr so that stdout stays clean for results."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")

_console = Console(stderr=True)


def _progress() -> Progress:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=_console, transient=True)


def track(
    items: Iterable[T], description: str, total: int | None = None, enabled: bool = True
) -> Iterator[T]:
    """Yield ``items`` while showing a bar (``enabled=False``: no output at all)."""
    if not enabled:
        yield from items
        return
    with _progress() as progress:
        yield from progress.track(items, total=total, description=description)


class Bar:
    """A bar whose text changes as work goes (loss, throughput): ``bar.advance(text)``."""

    def __init__(self, total: int, description: str, completed: int = 0, enabled: bool = True):
        self._progress = None
        if enabled:
            self._progress = _progress()
            self._task = self._progress.add_task(description, total=total, completed=completed)

    def __enter__(self) -> Bar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, description: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, description=description)
