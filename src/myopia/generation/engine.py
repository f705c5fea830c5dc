"""The local generation engine: n continuations of one prompt from a loaded causal LM.

The prompt is encoded once, by one forward pass with batch 1; its key/value cache is
then repeated to n rows, and all rows decode together, one token per forward pass. As
rows finish (end of text, a stop string) they are dropped from the batch and from the
cache (``DynamicCache.batch_select_indices``), so the remaining rows cost less. All rows
share one prompt, so they always have the same length and need no padding or mask.

What each token carries:

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

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from myopia.errors import MyopiaError
from myopia.generation.detokenize import InPlaceDecoder
from myopia.generation.sampling import choose_next, model_logprobs
from myopia.generation.settings import SamplingSettings
from myopia.generation.stop_strings import cut_pieces, find_stop, search_start
from myopia.generation.types import Continuation, FinishReason, GeneratedToken, TokenChoice


def end_of_text_ids(model, tokenizer) -> frozenset[int]:
    """Every token that ends a text for this model: the tokenizer's end-of-sequence token
    and those of the model's generation config (chat models often add their own)."""
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif source is not None:
            ids.update(int(i) for i in source)
    return frozenset(ids)


@dataclass
class _Row:
    """One continuation while it is being generated."""

    decoder: InPlaceDecoder
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    alternatives: list[tuple[TokenChoice, ...]] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)  # each token's text
    text: str = ""  # "".join(pieces)
    finish_reason: FinishReason | None = None

    def add(self, token_id: int, logprob: float, alternatives, piece: str) -> None:
        self.token_ids.append(token_id)
        self.logprobs.append(logprob)
        self.alternatives.append(alternatives)
        self.pieces.append(piece)
        self.text += piece

    def flush(self) -> None:
        """Give held-back bytes (an unfinished character) to the last token."""
        rest = self.decoder.flush()
        if rest and self.pieces:
            self.pieces[-1] += rest
            self.text += rest

    def cut(self, end: int) -> None:
        """Keep the text before ``end`` and exactly the tokens that make it up."""
        self.pieces = cut_pieces(self.pieces, end)
        kept = len(self.pieces)
        del self.token_ids[kept:], self.logprobs[kept:], self.alternatives[kept:]
        self.text = self.text[:end]

    def continuation(self) -> Continuation:
        tokens = tuple(
            GeneratedToken(chosen=TokenChoice(text=p, logprob=lp, token_id=t), alternatives=a)
            for t, lp, a, p in zip(
                self.token_ids, self.logprobs, self.alternatives, self.pieces, strict=True
            )
        )
        return Continuation(text=self.text, tokens=tokens, finish_reason=self.finish_reason)


class LocalEngine:
    """A ``Backend`` over a loaded Hugging Face causal LM and its tokenizer."""

    def __init__(self, model, tokenizer, name: str = "local"):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.end_ids = end_of_text_ids(model, tokenizer)
        self.device = next(model.parameters()).device
        # The prompt pass needs logits at the last position only; most models can skip
        # computing the others (a (T, V) tensor for a long prompt).
        accepted = inspect.signature(model.forward).parameters
        self._last_only = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}
        self._on_token = None  # set only while complete_streaming runs

    def complete_streaming(
        self,
        prompt: str,
        settings: SamplingSettings,
        n: int,
        alternatives: int,
        on_token: Callable[[int, GeneratedToken], bool],
    ) -> list[Continuation]:
        """``complete``, calling ``on_token(row, token)`` as each token is kept (its text as
        decoded so far: the continuations returned are the authority); when it returns
        False every row stops where it is, with finish reason "length". Not for two
        threads at once (the loom serialises its backend calls)."""
        self._on_token = on_token
        try:
            return self.complete(prompt, settings, n, alternatives)
        finally:
            self._on_token = None

    def _prompt_ids(self, prompt: str) -> list[int]:
        # No special tokens, as in ``myopia.generation.batched``: the prompt is the text.
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if not ids:
            if self.tokenizer.bos_token_id is None:
                raise MyopiaError(
                    "the prompt is empty and this tokenizer has no beginning-of-text token; "
                    "give at least one character"
                )
            ids = [self.tokenizer.bos_token_id]  # an empty prompt starts a text
        return ids

    def _check_length(self, n_prompt: int, settings: SamplingSettings) -> None:
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and n_prompt + settings.max_new_tokens > limit:
            raise MyopiaError(
                f"prompt ({n_prompt} tokens) + max_new_tokens ({settings.max_new_tokens}) "
                f"exceeds the model's context of {limit} tokens; shorten one of them"
            )

    @torch.inference_mode()
    def complete(
        self, prompt: str, settings: SamplingSettings, n: int = 1, alternatives: int = 5
    ) -> list[Continuation]:
        """``n`` continuations of ``prompt`` (see the module docstring for what they hold)."""
        settings.check()
        if n < 1:
            raise MyopiaError(f"n must be at least 1, not {n}")
        if alternatives < 0:
            raise MyopiaError(f"alternatives must be 0 or more, not {alternatives}")
        prompt_ids = self._prompt_ids(prompt)
        self._check_length(len(prompt_ids), settings)
        vocab = self.model.get_output_embeddings().weight.shape[0]
        alternatives = min(alternatives, vocab)
        generator = torch.Generator(device=self.device).manual_seed(settings.seed)

        # The prompt, once, with batch 1; then its cache serves all n rows.
        input_ids = torch.tensor([prompt_ids], device=self.device)  # (1, T)
        out = self.model(input_ids=input_ids, use_cache=True, **self._last_only)
        cache = out.cache
        cache.batch_repeat_interleave(n)
        logits = out.logits[:, -1].expand(n, -1)  # (n, V)

        rows = [_Row(decoder=InPlaceDecoder(self.tokenizer, prompt_ids)) for _ in range(n)]
        active = list(range(n))  # which row each batch row of the cache belongs to
        for step in range(settings.max_new_tokens):
            logprobs = model_logprobs(logits)  # (B, V)
            next_ids = choose_next(logits, settings.temperature, settings.top_p, generator)  # (B,)
            chosen_logprobs = logprobs.gather(-1, next_ids[:, None]).squeeze(-1)  # (B,)
            top_logprobs, top_ids = logprobs.topk(alternatives, dim=-1)  # (B, k) each
            still_going = self._advance(
                rows,
                active,
                next_ids.tolist(),
                chosen_logprobs.tolist(),
                top_ids.tolist(),
                top_logprobs.tolist(),
                settings.stop,
            )
            if not still_going or step == settings.max_new_tokens - 1:
                break
            if len(still_going) < len(active):
                keep = torch.tensor(still_going, device=self.device)  # (B',)
                cache.batch_select_indices(keep)
                next_ids = next_ids[keep]
                active = [active[b] for b in still_going]
            out = self.model(input_ids=next_ids[:, None], cache=cache, use_cache=True)
            logits = out.logits[:, -1]  # (B, V)

        for row in rows:
            if row.finish_reason is None:
                row.flush()
                row.finish_reason = "length"
        return [row.continuation() for row in rows]

    def _advance(
        self, rows, active, next_ids, chosen_logprobs, top_ids, top_logprobs, stop
    ) -> list[int]:
        """Append one token to every active row; return the batch rows still going."""
        still_going = []
        for b, (r, token_id) in enumerate(zip(active, next_ids, strict=True)):
            row = rows[r]
            if token_id in self.end_ids:
                row.flush()
                row.finish_reason = "eos"
                continue
            texts = row.decoder.texts_of_candidates(top_ids[b])
            alternatives = tuple(
                TokenChoice(text=t, logprob=lp, token_id=i)
                for t, lp, i in zip(texts, top_logprobs[b], top_ids[b], strict=True)
            )
            length_before = len(row.text)
            row.add(token_id, chosen_logprobs[b], alternatives, row.decoder.push(token_id))
            if stop:
                end = find_stop(row.text, stop, search_start(length_before, stop))
                if end is not None:
                    row.cut(end)
                    row.finish_reason = "stop"
                    continue
            still_going.append(b)
            if self._on_token is not None:
                token = GeneratedToken(
                    TokenChoice(row.pieces[-1], chosen_logprobs[b], token_id), alternatives
                )
                if not self._on_token(r, token):
                    return []  # stopped: every row ends where it is
        return still_going

    def complete_many(
        self,
        prompts: list[str],
        settings: SamplingSettings,
        n: int = 1,
        alternatives: int = 5,
    ) -> list[list[Continuation]]:
        """``n`` continuations of each prompt, one prompt after the other (each with the
        same seed): ``result[i][j]`` is the j-th continuation of prompt i."""
        return [self.complete(p, settings, n, alternatives) for p in prompts]
