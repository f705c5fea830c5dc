"""The one generation path: continuations of many prompts from a loaded causal LM.

Every caller generates through ``generate`` (or ``generate_ids`` for prompts already
tokenised): the loom's ``LocalEngine``, the experiments' quotes, answers and samples, and
drift's self-generated continuations. So sampling, stop strings, end of text, seeding and
detokenisation follow one set of rules, and the same ``SamplingSettings`` give the same
continuation whoever asks. Where callers really differ, they say so with a named option
(``DecodeOptions``).

How a batch is decoded. Prompts of different lengths share a batch by left padding (an
attention mask hides the padding, and positions count only real tokens), so every
prompt's last token sits at the same index. Each distinct prompt is encoded once, by one
forward pass over the batch (consecutive prompts with a long common beginning, such as
C6's requests about one passage, encode it once and then each its own rest:
``shared_prefixes``); its key/value cache is then repeated for its ``n`` continuations,
and all rows decode together, one token per forward pass. A row that has finished (end
of text, a stop string) is dropped from the batch and from the cache, so the remaining
rows cost less.

The rules:

- **Choice** (``myopia.generation.sampling``): temperature 0 takes the argmax; otherwise
  the logits are divided by the temperature, cut to the top-p nucleus and drawn from.
- **Seeding**: one ``torch.Generator`` seeded with ``settings.seed`` per call, consumed
  by the batches in order. At every step one draw is made for every row of the batch,
  finished rows included (their draw is discarded), so a row's token depends only on the
  seed, the batch it is in and its place there, never on when the other rows finished or
  on the global random state. This is how transformers' ``generate(do_sample=True)``
  consumes ``torch.manual_seed(seed)``, and gives its tokens (tested).
- **End of text** (``end_of_text_ids``): a row ends at a token that ends a text for this
  model; the token is not part of the continuation (``finish_reason="eos"``).
  ``DecodeOptions(end_of_text=False)`` instead never draws it.
- **Stop strings** (``myopia.generation.stop_strings``): a row ends when its text holds a
  stop string (``"stop"``). By default the text is cut just before it, as
  OpenAI-compatible servers do; ``DecodeOptions(whole_token_stops=True)`` instead drops
  the whole token that completes the stop string, so the text is exactly the decoding of
  the kept tokens.
- **Detokenisation** (``myopia.generation.detokenize``): each token's text is decoded in
  place after the tokens before it; a continuation's token texts add up to its text.
- **Log-probabilities**: every chosen token carries its natural log-probability under
  the model (before temperature, top-p or end-of-text suppression). The ``alternatives``
  most likely tokens at each step are computed only when asked for.

>>> model, tokenizer = load_model("smollm2")                            # doctest: +SKIP
>>> settings = SamplingSettings(max_new_tokens=20, stop=("\\n",))
>>> [[c]] = generate(model, tokenizer, ["The capital of France is"], settings)
>>> c.text, c.token_ids, c.finish_reason                                 # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from myopia.errors import MyopiaError
from myopia.generation.detokenize import InPlaceDecoder
from myopia.generation.sampling import choose_next
from myopia.generation.settings import SamplingSettings
from myopia.generation.stop_strings import cut_pieces, find_stop, search_start
from myopia.generation.types import Continuation, FinishReason, GeneratedToken, TokenChoice
from myopia.models.loading import logits_kept
from myopia.progress import track


@dataclass(frozen=True)
class DecodeOptions:
    """Where callers of the one generation path differ on purpose."""

    alternatives: int = 0  # most likely tokens recorded at each step (the loom shows them)
    # C6, C7, C8: a stop string drops the whole token that completes it, so a continuation
    # is made of whole tokens whose decoding is its text. Default: cut the text before it.
    whole_token_stops: bool = False
    # C9: False never draws an end-of-text token, so every row runs to max_new_tokens.
    end_of_text: bool = True
    # Consecutive prompts of a batch with a long common beginning (C6's requests about one
    # passage) encode it once. False encodes each prompt whole: the same tokens up to
    # float rounding, the baseline the tests and bench/ compare it with.
    share_prefixes: bool = True

    def check(self) -> None:
        if self.alternatives < 0:
            raise MyopiaError(f"alternatives must be 0 or more, not {self.alternatives}")


def end_of_text_ids(model, tokenizer=None) -> frozenset[int]:
    """Every token that ends a text for this model: the tokenizer's end-of-sequence token
    and those of the model's config and generation config (chat models often add their
    own)."""
    ids: set[int] = set()
    sources = (
        getattr(tokenizer, "eos_token_id", None),
        getattr(model.config, "eos_token_id", None),
        getattr(model.generation_config, "eos_token_id", None),
    )
    for source in sources:
        if isinstance(source, int):
            ids.add(source)
        elif source is not None:
            ids.update(int(i) for i in source)
    return frozenset(ids)


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The prompt's token ids, without special tokens: the prompt is the text. An empty
    prompt starts a text (the beginning-of-text token), where the tokenizer has one."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if not ids:
        if tokenizer.bos_token_id is None:
            raise MyopiaError(
                "the prompt is empty and this tokenizer has no beginning-of-text token; "
                "give at least one character"
            )
        ids = [tokenizer.bos_token_id]
    return ids


def _pad_id(model, tokenizer) -> int:
    """Any id does for padding (the mask hides it); the tokenizer's own where it has one."""
    for candidate in (
        getattr(tokenizer, "pad_token_id", None),
        getattr(tokenizer, "eos_token_id", None),
        getattr(model.config, "pad_token_id", None),
    ):
        if isinstance(candidate, int):
            return candidate
    return 0


@dataclass
class _Row:
    """One continuation while it is being generated."""

    decoder: InPlaceDecoder | None  # None: token ids only (no tokenizer given)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    alternatives: list[tuple[TokenChoice, ...]] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)  # each token's text
    text: str = ""  # "".join(pieces)
    finish_reason: FinishReason | None = None

    def add(self, token_id: int, logprob: float, alternatives) -> None:
        self.token_ids.append(token_id)
        self.logprobs.append(logprob)
        self.alternatives.append(alternatives)
        if self.decoder is not None:
            piece = self.decoder.push(token_id)
            self.pieces.append(piece)
            self.text += piece

    def finish(self, reason: FinishReason) -> None:
        """End the row; held-back bytes (an unfinished character) go to the last token."""
        self.finish_reason = reason
        if self.decoder is not None:
            rest = self.decoder.flush()
            if rest and self.pieces:
                self.pieces[-1] += rest
                self.text += rest

    def stop_at(self, end: int, whole_tokens: bool) -> None:
        """End the row at a stop string that begins at ``end`` in its text, completed by
        its last token."""
        self.finish_reason = "stop"
        if whole_tokens:
            kept = len(self.token_ids) - 1
            # Re-decode the kept tokens, so that bytes the dropped token would have
            # completed are given back as they decode alone.
            decoder = InPlaceDecoder(self.decoder.tokenizer, self.decoder.context[: -kept - 1])
            self.pieces = [decoder.push(t) for t in self.token_ids[:kept]]
            if self.pieces:
                self.pieces[-1] += decoder.flush()
            self.text = "".join(self.pieces)
        else:
            self.pieces = cut_pieces(self.pieces, end)
            kept = len(self.pieces)
            self.text = self.text[:end]
        del self.token_ids[kept:], self.logprobs[kept:], self.alternatives[kept:]

    def continuation(self) -> Continuation:
        tokens = tuple(
            GeneratedToken(chosen=TokenChoice(text=p, logprob=lp, token_id=t), alternatives=a)
            for t, lp, a, p in zip(
                self.token_ids, self.logprobs, self.alternatives, self.pieces, strict=True
            )
        )
        return Continuation(text=self.text, tokens=tokens, finish_reason=self.finish_reason)


def _left_padded(prompts: Sequence[Sequence[int]], pad: int, device):
    """``(ids, mask)``, each ``(B, T)``: the prompts right-aligned, the padding masked."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)  # (B, T)
    for i, row in enumerate(prompts):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


# Prompts share the encoding of their common beginning when at least this many tokens
# of it are shared: below that, the second forward pass costs more than it saves.
MIN_SHARED_PREFIX = 16


def _positions(mask: torch.Tensor, start: torch.Tensor | int = 0) -> torch.Tensor:
    """Position ids that count real tokens only, from ``start``; 0 on padding."""
    return (start + mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)


def _prefill(model, prompts: Sequence[Sequence[int]], pad: int, device):
    """``(cache, logits (B, V), mask (B, T))``: the prompts left-padded, one forward pass."""
    ids, mask = _left_padded(prompts, pad, device)  # (B, T) each
    # Without padding the mask is left out, as transformers' generate() does: the model
    # then takes its plain causal path.
    masked = {} if bool(mask.all()) else {"attention_mask": mask}
    keep = logits_kept(model, 1)  # a prompt pass reads the next token's logits only
    out = model(input_ids=ids, position_ids=_positions(mask), use_cache=True, **masked, **keep)
    return out.cache, out.logits[:, -1], mask


def _can_share(model) -> bool:
    """Whether a prompt's rest may follow its shared beginning after padding. A sliding
    window counts cache slots, padding included, so padding between the two would move
    real tokens out of the window: those models encode every prompt whole."""
    config = model.config
    return not any(
        getattr(config, name, None) for name in ("sliding_window", "attention_chunk_size")
    )


def shared_prefixes(prompts: Sequence[Sequence[int]]) -> list[tuple[int, int]] | None:
    """Consecutive prompts with a common beginning of at least ``MIN_SHARED_PREFIX``
    tokens, as ``(members, prefix length)`` per group in order (a prompt alone is a group
    of one, its prefix all but its last token); None when no group shares anything, or a
    prompt has a single token. Every prompt keeps at least one token of its own, whose
    logits give its first new token."""
    if any(len(p) < 2 for p in prompts):
        return None
    groups: list[tuple[int, int]] = []
    first = 0
    while first < len(prompts):
        stop, common = first + 1, len(prompts[first]) - 1
        while stop < len(prompts):
            joined = min(
                common,
                common_prefix_length((prompts[first], prompts[stop])),
                len(prompts[stop]) - 1,
            )
            if joined < MIN_SHARED_PREFIX:
                break
            stop, common = stop + 1, joined
        groups.append((stop - first, common))
        first = stop
    if all(members == 1 for members, _ in groups):
        return None
    return groups


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """The number of leading tokens every row of ``rows`` has in common."""
    shortest = min(len(r) for r in rows)
    for k in range(shortest):
        if any(r[k] != rows[0][k] for r in rows):
            return k
    return shortest


def _prefill_shared(
    model, prompts: Sequence[Sequence[int]], groups: list[tuple[int, int]], pad: int, device
):
    """``_prefill`` with each group's common beginning encoded once: a pass over the
    prefixes, their caches repeated for the group's members, then a pass over each
    prompt's own rest. A row is laid out ``[pad, prefix, pad, rest]``; the mask hides
    both paddings and positions count real tokens, so each prompt is computed as alone."""
    owner = torch.tensor(
        [g for g, (members, _) in enumerate(groups) for _ in range(members)], device=device
    )
    starts = [sum(members for members, _ in groups[:g]) for g in range(len(groups))]
    prefixes = [prompts[start][:length] for start, (_, length) in zip(starts, groups, strict=True)]
    ids, prefix_mask = _left_padded(prefixes, pad, device)  # (G, P) each
    out = model(
        input_ids=ids,
        attention_mask=prefix_mask,
        position_ids=_positions(prefix_mask),
        use_cache=True,
        **logits_kept(model, 1),
    )
    cache = out.cache
    cache.batch_select_indices(owner)  # (B, ..., P): each prompt's group prefix
    prefix_mask = prefix_mask[owner]  # (B, P)
    rests = [prompts[i][groups[int(g)][1] :] for i, g in enumerate(owner.tolist())]
    ids, rest_mask = _left_padded(rests, pad, device)  # (B, R) each
    mask = torch.cat([prefix_mask, rest_mask], dim=-1)  # (B, P + R)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=_positions(rest_mask, prefix_mask.sum(-1, keepdim=True)),
        cache=cache,
        use_cache=True,
        **logits_kept(model, 1),
    )
    return out.cache, out.logits[:, -1], mask


class _Batch:
    """The model's state for the rows still being decoded: cache, mask and positions."""

    def __init__(
        self,
        model,
        prompts: Sequence[Sequence[int]],
        n: int,
        max_new_tokens: int,
        pad: int,
        share_prefixes: bool = True,
    ):
        self.model = model
        device = next(model.parameters()).device
        groups = shared_prefixes(prompts) if share_prefixes and _can_share(model) else None
        if groups is None:
            cache, logits, mask = _prefill(model, prompts, pad, device)
        else:
            cache, logits, mask = _prefill_shared(model, prompts, groups, pad, device)
        self.padded = not bool(mask.all())
        self.cache = cache
        if n > 1:  # each prompt was encoded once; its n rows share that cache
            self.cache.batch_repeat_interleave(n)
            logits = logits.repeat_interleave(n, dim=0)  # (B*n, V)
            mask = mask.repeat_interleave(n, dim=0)  # (B*n, T)
        self.logits = logits  # (rows, V): the next token's logits for each active row
        self.next_position = mask.sum(-1, keepdim=True)  # (rows, 1)
        # The mask for every step at once, so that a step only takes a view of it.
        ones = torch.ones((mask.shape[0], max_new_tokens), dtype=mask.dtype, device=device)
        self.mask = torch.cat([mask, ones], dim=-1)  # (rows, T + max_new_tokens)
        self.length = mask.shape[1]  # columns of the mask in use

    def keep(self, rows: torch.Tensor) -> None:
        """Go on with the batch rows ``rows`` only, ``(B',)`` long."""
        self.cache.batch_select_indices(rows)
        self.mask = self.mask[rows]
        self.next_position = self.next_position[rows]

    def step(self, next_ids: torch.Tensor) -> None:
        """Feed one token to each active row, ``(B,)`` long; update ``logits``."""
        self.length += 1
        masked = {"attention_mask": self.mask[:, : self.length]} if self.padded else {}
        out = self.model(
            input_ids=next_ids[:, None],  # (B, 1)
            position_ids=self.next_position,  # (B, 1)
            cache=self.cache,
            use_cache=True,
            **masked,
        )
        self.next_position = self.next_position + 1
        self.logits = out.logits[:, -1]  # (B, V)


def _choose(
    logits: torch.Tensor,
    slots: int,
    active: torch.Tensor,
    settings: SamplingSettings,
    generator: torch.Generator,
    banned: list[int] | None,
) -> torch.Tensor:
    """The next token of each active row, ``(B,)``, from its logits ``(B, V)``.

    ``active`` says which of the batch's ``slots`` rows each one is: sampling draws for
    every slot, so that the generator is consumed the same way whenever rows finish.
    """
    if banned:
        logits = logits.float().index_fill(
            -1, torch.tensor(banned, device=logits.device), -torch.inf
        )
    if settings.temperature == 0:
        return logits.argmax(dim=-1)  # (B,)
    if len(active) < slots:  # finished slots draw from a uniform row, then are dropped
        every = logits.new_zeros((slots, logits.shape[-1]))  # (slots, V)
        every[active] = logits
        return choose_next(every, settings.temperature, settings.top_p, generator)[active]
    return choose_next(logits, settings.temperature, settings.top_p, generator)  # (B,)


@dataclass(frozen=True)
class _Job:
    """What every batch of one call shares."""

    model: object
    tokenizer: object | None
    settings: SamplingSettings
    n: int
    options: DecodeOptions
    end_ids: frozenset[int]
    generator: torch.Generator
    # The loom's streaming: called with (row, token) as each token is kept; returning
    # False stops every row where it is (finish reason "length").
    on_token: Callable[[int, GeneratedToken], bool] | None = None


@torch.inference_mode()
def _decode_batch(job: _Job, prompts: Sequence[Sequence[int]]) -> list[_Row]:
    """The rows of one batch, prompt by prompt: row ``i * n + j`` is prompt i's j-th."""
    settings = job.settings
    pad = _pad_id(job.model, job.tokenizer)
    batch = _Batch(
        job.model, prompts, job.n, settings.max_new_tokens, pad, job.options.share_prefixes
    )
    rows = [
        _Row(decoder=InPlaceDecoder(job.tokenizer, p) if job.tokenizer is not None else None)
        for p in prompts
        for _ in range(job.n)
    ]
    active = list(range(len(rows)))  # which row each batch row of the cache belongs to
    device = batch.logits.device
    banned = None if job.options.end_of_text else sorted(job.end_ids)
    k = min(job.options.alternatives, batch.logits.shape[-1])
    for step in range(settings.max_new_tokens):
        logits = batch.logits.float()  # (B, V)
        where = torch.tensor(active, device=device)  # (B,): each active row's slot
        next_ids = _choose(logits, len(rows), where, settings, job.generator, banned)  # (B,)
        if k:
            logprobs = torch.log_softmax(logits, dim=-1)  # (B, V)
            chosen = logprobs.gather(-1, next_ids[:, None]).squeeze(-1)  # (B,)
            top_logprobs, top_ids = logprobs.topk(k, dim=-1)  # (B, k) each
            top = list(zip(top_ids.tolist(), top_logprobs.tolist(), strict=True))
        else:  # the chosen token's log-probability alone: no (B, V) log-softmax
            chosen = logits.gather(-1, next_ids[:, None]).squeeze(-1) - logits.logsumexp(-1)
            top = [([], [])] * len(active)
        still_going = [
            b
            for b, (r, token_id, logprob, (ids, values)) in enumerate(
                zip(active, next_ids.tolist(), chosen.tolist(), top, strict=True)
            )
            if _advance(job, rows[r], token_id, logprob, ids, values)
        ]
        if job.on_token is not None and not _stream(job, rows, [active[b] for b in still_going]):
            break
        if not still_going or step == settings.max_new_tokens - 1:
            break
        if len(still_going) < len(active):
            keep = torch.tensor(still_going, device=device)  # (B',)
            batch.keep(keep)
            next_ids = next_ids[keep]
            active = [active[b] for b in still_going]
        batch.step(next_ids)
    for row in rows:
        if row.finish_reason is None:
            row.finish("length")
    return rows


def _advance(job: _Job, row: _Row, token_id: int, logprob: float, top_ids, top_logprobs) -> bool:
    """Give ``row`` its next token; False when that ended it."""
    if token_id in job.end_ids and job.options.end_of_text:
        row.finish("eos")
        return False
    texts = [""] * len(top_ids)
    if row.decoder is not None and top_ids:
        texts = row.decoder.texts_of_candidates(top_ids)
    alternatives = tuple(
        TokenChoice(text=t, logprob=lp, token_id=i)
        for t, lp, i in zip(texts, top_logprobs, top_ids, strict=True)
    )
    length_before = len(row.text)
    row.add(token_id, logprob, alternatives)
    stop = job.settings.stop
    if stop:
        end = find_stop(row.text, stop, search_start(length_before, stop))
        if end is not None:
            row.stop_at(end, job.options.whole_token_stops)
            return False
    return True


def _stream(job: _Job, rows: list[_Row], kept: list[int]) -> bool:
    """Hand each row's newest token to ``job.on_token``; False when it asks to stop."""
    for r in kept:
        row = rows[r]
        piece = row.pieces[-1] if row.pieces else ""
        token = GeneratedToken(
            TokenChoice(piece, row.logprobs[-1], row.token_ids[-1]), row.alternatives[-1]
        )
        if not job.on_token(r, token):
            return False
    return True


def _check(model, tokenizer, prompts, settings, n, options) -> None:
    settings.check()
    options.check()
    if n < 1:
        raise MyopiaError(f"n must be at least 1, not {n}")
    if any(not p for p in prompts):
        raise MyopiaError("a prompt is empty; every prompt needs at least one token")
    if settings.stop and tokenizer is None:
        raise MyopiaError("stop strings need the tokenizer, to read the text")
    limit = getattr(model.config, "max_position_embeddings", None)
    longest = max((len(p) for p in prompts), default=0)
    if limit is not None and longest + settings.max_new_tokens > limit:
        raise MyopiaError(
            f"prompt ({longest} tokens) + max_new_tokens ({settings.max_new_tokens}) "
            f"exceeds the model's context of {limit} tokens; shorten one of them"
        )


def _decode_all(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    settings: SamplingSettings,
    n: int,
    options: DecodeOptions,
    batch_size: int,
    end_ids: frozenset[int] | None,
    show_progress: bool,
    on_token: Callable[[int, GeneratedToken], bool] | None = None,
) -> list[list[_Row]]:
    _check(model, tokenizer, prompts, settings, n, options)
    if batch_size < 1:
        raise MyopiaError(f"batch_size must be at least 1, not {batch_size}")
    end_ids = end_of_text_ids(model, tokenizer) if end_ids is None else end_ids
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    job = _Job(model, tokenizer, settings, n, options, end_ids, generator, on_token)
    results: list[list[_Row]] = []
    starts = range(0, len(prompts), batch_size)
    for start in track(starts, "generating", enabled=show_progress):
        chunk = prompts[start : start + batch_size]
        rows = _decode_batch(job, chunk)
        results.extend(rows[i * n : (i + 1) * n] for i in range(len(chunk)))
    return results


def generate_ids(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    settings: SamplingSettings,
    n: int = 1,
    options: DecodeOptions = DecodeOptions(),
    batch_size: int = 8,
    end_ids: frozenset[int] | None = None,
    show_progress: bool = False,
    on_token: Callable[[int, GeneratedToken], bool] | None = None,
) -> list[list[Continuation]]:
    """``n`` continuations of each tokenised prompt: ``result[i][j]`` is prompt i's j-th.

    ``batch_size`` prompts share a batch (``batch_size * n`` rows); ``end_ids`` defaults
    to ``end_of_text_ids(model, tokenizer)``. ``on_token(row, token)``, if given, sees
    each token as it is kept (``row`` counts the rows of its batch; the text of a token
    that a stop string later cuts may differ from what it saw: the continuations
    returned are the authority); returning False ends every row where it is.
    """
    rows = _decode_all(
        model,
        tokenizer,
        prompts,
        settings,
        n,
        options,
        batch_size,
        end_ids,
        show_progress,
        on_token,
    )
    return [[row.continuation() for row in group] for group in rows]


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    settings: SamplingSettings,
    n: int = 1,
    options: DecodeOptions = DecodeOptions(),
    batch_size: int = 8,
    show_progress: bool = False,
) -> list[list[Continuation]]:
    """``n`` continuations of each prompt's text (see ``generate_ids``)."""
    ids = [prompt_ids(tokenizer, p) for p in prompts]
    return generate_ids(
        model, tokenizer, ids, settings, n, options, batch_size, show_progress=show_progress
    )


def sample_token_ids(
    model,
    prompts: torch.Tensor,
    settings: SamplingSettings,
    options: DecodeOptions = DecodeOptions(),
    batch_size: int = 8,
    show_progress: bool = False,
) -> list[list[int]]:
    """One continuation's token ids for each row of ``prompts`` ``(N, T)``, for callers
    that hold token ids and no tokenizer (no texts are decoded, so no stop strings)."""
    rows = _decode_all(
        model, None, prompts.tolist(), settings, 1, options, batch_size, None, show_progress
    )
    return [group[0].token_ids for group in rows]
