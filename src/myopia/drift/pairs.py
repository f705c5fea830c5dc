"""Natural and self-generated continuations of the same prompts.

Each row of ``windows`` is ``prompt_len`` tokens of prompt followed by the natural
continuation. The model continues each prompt by pure sampling (temperature 1, no top-p:
its own distribution) for exactly as many tokens as the natural continuation, so both
versions of a prompt have the same length and every position can be compared. The
end-of-text token is never drawn (``DecodeOptions(end_of_text=False)``): a natural window
never ends early, and a row that did would leave nothing to compare at later positions;
the renormalised distribution differs from the model's only by the end-of-text token's
probability. Sampling goes through the one generation path (``myopia.generation``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from myopia.errors import MyopiaError
from myopia.generation.decode import DecodeOptions, sample_token_ids
from myopia.generation.settings import SamplingSettings


@dataclass(frozen=True)
class ContinuationPairs:
    prompt_len: int
    natural: torch.Tensor  # (N, prompt_len + L): prompt + the text's own continuation
    generated: torch.Tensor  # (N, prompt_len + L): the same prompt + the model's sample

    @property
    def continuation_len(self) -> int:
        return self.natural.shape[1] - self.prompt_len


def sample_pairs(
    model,
    windows: torch.Tensor,
    prompt_len: int,
    seed: int = 0,
    batch_size: int = 16,
    show_progress: bool = False,
) -> ContinuationPairs:
    """Sample one continuation per window's prompt, as long as the window's own."""
    n, width = windows.shape
    new_tokens = width - prompt_len
    if prompt_len < 1 or new_tokens < 1:
        raise MyopiaError(
            f"windows of {width} tokens cannot hold a {prompt_len}-token prompt and a "
            "continuation: make the windows longer or the prompt shorter"
        )
    prompts = windows[:, :prompt_len]
    settings = SamplingSettings(max_new_tokens=new_tokens, temperature=1.0, seed=seed)
    sampled = sample_token_ids(
        model, prompts, settings, DecodeOptions(end_of_text=False), batch_size, show_progress
    )
    generated = torch.cat([prompts, torch.tensor(sampled, dtype=prompts.dtype)], dim=1)
    return ContinuationPairs(prompt_len, windows.clone(), generated)
