"""A tiny deterministic word sampler that speaks the ``Backend`` protocol, without a model.

It lets the loom be tried, and tested end to end, on any machine in milliseconds. The
"model" scores a small vocabulary with pseudo-random logits drawn from a hash of the
text so far, so the distribution depends on the context the way a model's does: the
same prefix always gives the same log-probabilities (greedy decoding gives ``n``
identical continuations), and sampling draws from it with a generator seeded by
``settings.seed`` and the continuation's index. Temperature, top-p, max tokens and stop
strings behave as in the real engine; ``delay_s`` per token imitates a slow model (the
tests kill a server in the middle of such a generation). It streams
(``complete_streaming``, the loom's ``StreamingBackend``): the rows are written one
after the other, each token reported as it is drawn.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

from myopia.generation.settings import SamplingSettings
from myopia.generation.types import Continuation, GeneratedToken, TokenChoice

VOCABULARY = (
    " the", " a", " loom", " thread", " weaver", " river", " night", " light", " said",
    " and", " of", " to", " in", " was", " she", " he", " it", " story", " branch",
    " dream", " silver", " quietly", ".", ",", "\n",
)  # fmt: skip


def _log_softmax(scores: list[float]) -> list[float]:
    top = max(scores)
    log_total = top + math.log(sum(math.exp(s - top) for s in scores))
    return [s - log_total for s in scores]


class DemoBackend:
    """Continuations of any prompt from :data:`VOCABULARY`; see the module docstring."""

    name = "demo"

    def __init__(self, delay_s: float = 0.0, vocabulary: tuple[str, ...] = VOCABULARY):
        self.delay_s = delay_s
        self.vocabulary = vocabulary

    def _logprobs(self, context: str) -> list[float]:
        # str seeds go through SHA-512 in random.seed, so this is stable across runs
        # (unlike hash(), which PYTHONHASHSEED randomises).
        scorer = random.Random(context[-200:])
        return _log_softmax([scorer.gauss(0.0, 2.0) for _ in self.vocabulary])

    def _sample(self, logprobs: list[float], settings: SamplingSettings, rng: random.Random):
        if settings.temperature == 0:
            return max(range(len(logprobs)), key=logprobs.__getitem__)
        tempered = _log_softmax([lp / settings.temperature for lp in logprobs])
        order = sorted(range(len(tempered)), key=lambda i: -tempered[i])
        kept, mass = [], 0.0
        for i in order:  # the smallest set of best tokens whose mass reaches top_p
            kept.append(i)
            mass += math.exp(tempered[i])
            if mass >= settings.top_p:
                break
        return rng.choices(kept, weights=[math.exp(tempered[i]) for i in kept])[0]

    def _one(
        self,
        prompt: str,
        settings: SamplingSettings,
        index: int,
        alternatives: int,
        on_token: Callable[[int, GeneratedToken], bool] | None = None,
    ) -> tuple[Continuation, bool]:
        """The ``index``-th continuation, and whether ``on_token`` asked to go on."""
        rng = random.Random(f"{settings.seed}|{index}|{prompt}")
        tokens: list[GeneratedToken] = []
        text = ""
        for _ in range(settings.max_new_tokens):
            if self.delay_s:
                time.sleep(self.delay_s)
            logprobs = self._logprobs(prompt + text)
            chosen = self._sample(logprobs, settings, rng)
            best = sorted(range(len(logprobs)), key=lambda i: -logprobs[i])[:alternatives]
            tokens.append(
                GeneratedToken(
                    chosen=TokenChoice(self.vocabulary[chosen], logprobs[chosen], chosen),
                    alternatives=tuple(
                        TokenChoice(self.vocabulary[i], logprobs[i], i) for i in best
                    ),
                )
            )
            text += self.vocabulary[chosen]
            if on_token is not None and not on_token(index, tokens[-1]):
                return Continuation(text, tuple(tokens), "length"), False
            if any(stop in text for stop in settings.stop):
                # Like the engine: keep the tokens whose text ends before the stop string.
                cut = min(text.find(s) for s in settings.stop if s in text)
                kept, length = [], 0
                for token in tokens:
                    if length + len(token.chosen.text) > cut:
                        break
                    kept.append(token)
                    length += len(token.chosen.text)
                kept_text = "".join(t.chosen.text for t in kept)
                return Continuation(kept_text, tuple(kept), "stop"), True
        return Continuation(text, tuple(tokens), "length"), True

    def complete(
        self, prompt: str, settings: SamplingSettings, n: int = 1, alternatives: int = 5
    ) -> list[Continuation]:
        settings.check()
        return [self._one(prompt, settings, i, alternatives)[0] for i in range(n)]

    def complete_streaming(
        self,
        prompt: str,
        settings: SamplingSettings,
        n: int,
        alternatives: int,
        on_token: Callable[[int, GeneratedToken], bool],
    ) -> list[Continuation]:
        """``complete``, reporting each token; rows after a stop are not begun."""
        settings.check()
        rows = []
        for i in range(n):
            continuation, go_on = self._one(prompt, settings, i, alternatives, on_token)
            rows.append(continuation)
            if not go_on:
                break
        return rows
