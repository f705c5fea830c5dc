"""Batched sampling from any Hugging Face causal LM, through transformers' own ``generate``.

Prompts of different lengths share a batch by left padding, so every prompt's last token
sits at the same position and the first new token of each row is predicted from it. A
continuation ends at the end-of-sequence token, at ``max_new_tokens``, or just before the
first stop string, and keeps the token ids that make up its text: experiments that read
activations over generated tokens need exactly those.

>>> settings = SamplingSettings(max_new_tokens=20, stop=("\\n",))       # doctest: +SKIP
>>> [[g]] = generate(model, tokenizer, ["The capital of France is"], settings)
>>> g.text, g.token_ids                                                  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GenerationConfig

from myopia.errors import MyopiaError
from myopia.generation.settings import SamplingSettings
from myopia.progress import track


@dataclass(frozen=True)
class Generation:
    prompt: str
    text: str  # the decoded continuation, cut before any stop string
    token_ids: tuple[int, ...]  # the generated tokens whose decoding is ``text``


def _pad_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def _left_padded(tokenizer, prompts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if any(not r for r in rows):
        raise MyopiaError("a prompt is empty; every prompt needs at least one token")
    width = max(len(r) for r in rows)
    pad = _pad_id(tokenizer)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def _cut(tokenizer, prompt: str, ids: list[int], stop: tuple[str, ...], eos: int | None):
    """The longest prefix of ``ids`` before end-of-sequence whose text holds no stop string."""
    if eos is not None and eos in ids:
        ids = ids[: ids.index(eos)]
    keep = len(ids)
    if stop:
        text = tokenizer.decode(ids)
        if any(s in text for s in stop):
            keep = 0
            while keep < len(ids):
                piece = tokenizer.decode(ids[: keep + 1])
                if any(s in piece for s in stop):
                    break
                keep += 1
    kept = tuple(int(i) for i in ids[:keep])
    return Generation(prompt=prompt, text=tokenizer.decode(list(kept)), token_ids=kept)


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    settings: SamplingSettings | None = None,
    n: int = 1,
    batch_size: int = 8,
    show_progress: bool = False,
) -> list[list[Generation]]:
    """``n`` continuations of each prompt: ``result[i][j]`` is the j-th of prompt i."""
    settings = settings or SamplingSettings()
    settings.check()
    config = GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        do_sample=settings.temperature > 0,
        temperature=settings.temperature if settings.temperature > 0 else None,
        top_p=settings.top_p if settings.temperature > 0 else None,
        top_k=None,
        num_return_sequences=n,
        pad_token_id=_pad_id(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
    )
    device = next(model.parameters()).device
    torch.manual_seed(settings.seed)
    results: list[list[Generation]] = []
    starts = range(0, len(prompts), batch_size)
    for start in track(starts, "generating", enabled=show_progress):
        chunk = prompts[start : start + batch_size]
        ids, mask = _left_padded(tokenizer, chunk, device)
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        new = out[:, ids.shape[1] :].tolist()
        for i, prompt in enumerate(chunk):
            rows = new[i * n : (i + 1) * n]
            results.append(
                [
                    _cut(tokenizer, prompt, row, settings.stop, tokenizer.eos_token_id)
                    for row in rows
                ]
            )
    return results
