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

import torch

from myopia.errors import MyopiaError
from myopia.generation.decode import DecodeOptions, end_of_text_ids, generate_ids, prompt_ids
from myopia.generation.detokenize import InPlaceDecoder
from myopia.generation.settings import SamplingSettings
from myopia.generation.types import Continuation, GeneratedToken, TokenChoice


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

    def score(self, prompt: str, text: str) -> tuple[TokenChoice, ...]:
        """The model's log-probability of each token of ``text`` after ``prompt``, read in
        one teacher-forced pass: what the model thinks of text it did not choose (a
        branch written or edited by hand). ``text`` is tokenised on its own and follows
        the prompt's ids, as generated tokens do; the tokens' texts are decoded in place."""
        context = prompt_ids(self.tokenizer, prompt)
        own = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not own:
            return ()
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and len(context) + len(own) > limit:
            raise MyopiaError(
                f"the branch has {len(context) + len(own)} tokens, more than the model's "
                f"context of {limit}: it cannot be scored"
            )
        device = next(self.model.parameters()).device
        ids = torch.tensor([context + own], device=device)  # (1, T)
        with torch.inference_mode():
            logits = self.model(input_ids=ids).logits[0, len(context) - 1 : -1].float()  # (t, V)
        targets = torch.tensor(own, device=device)[:, None]  # (t, 1)
        logprobs = logits.log_softmax(-1).gather(-1, targets).squeeze(-1).tolist()
        decoder = InPlaceDecoder(self.tokenizer, context)
        pieces = [decoder.push(token_id) for token_id in own]
        pieces[-1] += decoder.flush()
        return tuple(
            TokenChoice(text=piece, logprob=logprob, token_id=token_id)
            for piece, logprob, token_id in zip(pieces, logprobs, own, strict=True)
        )

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
