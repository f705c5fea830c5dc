"""How to sample: the settings every generation backend takes.

Kept apart from the backends so that code that only passes settings around (the loom's
web server) does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from myopia.errors import MyopiaError


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int = 32
    temperature: float = 0.0  # 0 means greedy decoding
    top_p: float = 1.0
    stop: tuple[str, ...] = ()  # the text is cut before the first of these
    seed: int = 0

    def check(self) -> None:
        if self.max_new_tokens < 1:
            raise MyopiaError(f"max_new_tokens must be at least 1, not {self.max_new_tokens}")
        if self.temperature < 0:
            raise MyopiaError(f"temperature must be 0 (greedy) or positive, not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise MyopiaError(f"top_p must be in (0, 1], not {self.top_p}")
