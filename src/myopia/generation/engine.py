"""The local generation engine: the loom's ``Backend`` over a loaded causal LM.

``complete`` gives n continuations of one prompt through the one generation path
(``myopia.generation.decode``): the prompt is encoded once and its key/value cache serves
all n rows, which decode together. What each token carries:

- ``logprob``: the natural log-probability of the token under the *model's*
  distribution, the log-softmax of the raw logits, before temperature and top-p. It is
  what the model thinks, whatever the sampling settings; the settings only decide which
  token is drawn (``myopia.generation.sampling``).
- ``alternatives``: the ``alternatives`` most likely tokens at that step, best first,
  with the same kind of log-probability (the chosen token is among them when it is that
  likely).
- ``text``: the token's text decoded in place after the preceding tokens; the texts of a
  continuation's tokens concatenate to its text (``myopia.generation.detokenize``).

A continuation ends at an end-of-text token (not included; ``finish_reason="eos"``), at
a stop string (the text is cut just before it; ``"stop"``, see
``myopia.generation.stop_strings``) or after ``max_new_tokens`` tokens (``"length"``).
Sampling draws from a ``torch.Generator`` seeded with ``settings.seed``: the same
prompt, settings and n give the same continuations, whatever the global random state.

>>> engine = LocalEngine(*load_model("smollm2"), name="smollm2")        # doctest: +SKIP
>>> [c] = engine.complete("The capital of France is", SamplingSettings(max_new_tokens=5))
>>> c.text, [t.chosen.logprob for t in c.tokens]                         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

from myopia.generation.decode import DecodeOptions, end_of_text_ids, generate_ids, prompt_ids
from myopia.generation.settings import SamplingSettings
from myopia.generation.types import Continuation, GeneratedToken


class LocalEngine:
    """A ``Backend`` over a loaded Hugging Face causal LM and its tokenizer."""

    def __init__(self, model, tokenizer, name: str = "local"):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.end_ids = end_of_text_ids(model, tokenizer)

    def complete(
        self, prompt: str, settings: SamplingSettings, n: int = 1, alternatives: int = 5
    ) -> list[Continuation]:
        """``n`` continuations of ``prompt`` (see the module docstring for what they hold)."""
        return self.complete_many([prompt], settings, n, alternatives)[0]

    def complete_streaming(
        self,
        prompt: str,
        settings: SamplingSettings,
        n: int,
        alternatives: int,
        on_token: Callable[[int, GeneratedToken], bool],
    ) -> list[Continuation]:
        """``complete``, calling ``on_token(row, token)`` as each token is kept (the
        continuations returned are the authority on the final text); when it returns
        False every row stops where it is, with finish reason "length"."""
        ids = [prompt_ids(self.tokenizer, prompt)]
        options = DecodeOptions(alternatives=alternatives)
        return generate_ids(
            self.model,
            self.tokenizer,
            ids,
            settings,
            n,
            options,
            end_ids=self.end_ids,
            on_token=on_token,
        )[0]

    def complete_many(
        self,
        prompts: list[str],
        settings: SamplingSettings,
        n: int = 1,
        alternatives: int = 5,
        batch_size: int = 8,
    ) -> list[list[Continuation]]:
        """``n`` continuations of each prompt, ``batch_size`` prompts decoded together:
        ``result[i][j]`` is the j-th continuation of prompt i."""
        ids = [prompt_ids(self.tokenizer, p) for p in prompts]
        options = DecodeOptions(alternatives=alternatives)
        return generate_ids(
            self.model, self.tokenizer, ids, settings, n, options, batch_size, self.end_ids
        )
