"""Natural and self-generated continuations of the same prompts.

Each row of ``windows`` is ``prompt_len`` tokens of prompt followed by the natural
continuation. The model continues each prompt by pure sampling (temperature 1, no top-p:
its own distribution) for exactly as many tokens as the natural continuation, so both
versions of a prompt have the same length and every position can be compared. The
end-of-text token is suppressed (``min_new_tokens``): a natural window never ends early,
and a row that did would leave nothing to compare at later positions; the renormalised
distribution differs from the model's only by the end-of-text token's probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GenerationConfig

from myopia.errors import MyopiaError
from myopia.progress import track


@dataclass(frozen=True)
class ContinuationPairs:
    prompt_len: int
    natural: torch.Tensor  # (N, prompt_len + L): prompt + the text's own continuation
    generated: torch.Tensor  # (N, prompt_len + L): the same prompt + the model's sample

    @property
    def continuation_len(self) -> int:
        return self.natural.shape[1] - self.prompt_len


@torch.no_grad()
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
    config = GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=None,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        pad_token_id=model.config.eos_token_id or 0,
        eos_token_id=model.config.eos_token_id,
    )
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    prompts = windows[:, :prompt_len]
    generated = []
    for start in track(range(0, n, batch_size), "sampling continuations", enabled=show_progress):
        batch = prompts[start : start + batch_size].to(device)
        out = model.generate(
            input_ids=batch, attention_mask=torch.ones_like(batch), generation_config=config
        )
        generated.append(out.cpu())  # (b, prompt_len + new_tokens)
    return ContinuationPairs(prompt_len, windows.clone(), torch.cat(generated))
