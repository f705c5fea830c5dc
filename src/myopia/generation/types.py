"""What a generation backend returns, and the one method every backend has.

A backend (the local engine over a loaded model, or a client of an OpenAI-compatible
completions server) turns a prompt into ``n`` continuations, each with every sampled
token's log-probability and the most likely alternatives at that step: the loom shows
them and lets a person branch from any alternative; experiments read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from myopia.generation.settings import SamplingSettings

FinishReason = Literal["stop", "length", "eos"]  # a stop string, max tokens, end of text


@dataclass(frozen=True)
class TokenChoice:
    text: str  # the token's text as decoded in place
    logprob: float  # natural log-probability under the model (before temperature/top-p)
    token_id: int | None = None  # None where the server does not say


@dataclass(frozen=True)
class GeneratedToken:
    chosen: TokenChoice
    alternatives: tuple[TokenChoice, ...]  # the most likely tokens at this step, best first


@dataclass(frozen=True)
class Continuation:
    text: str  # the decoded continuation, cut before any stop string
    tokens: tuple[GeneratedToken, ...]  # the tokens whose texts make up ``text``
    finish_reason: FinishReason

    @property
    def token_ids(self) -> tuple[int | None, ...]:
        """The chosen tokens' ids (a local model always knows them)."""
        return tuple(t.chosen.token_id for t in self.tokens)


class Backend(Protocol):
    name: str  # what produced the text, e.g. "smollm2" or "openai:http://host/v1 model-x"

    def complete(
        self, prompt: str, settings: SamplingSettings, n: int = 1, alternatives: int = 5
    ) -> list[Continuation]:
        """``n`` continuations of ``prompt``."""
        ...
