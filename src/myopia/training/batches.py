"""Deterministic training batches: batch i depends only on the seed and i.

Windows are drawn epoch by epoch, each epoch a fresh permutation seeded by (seed,
epoch), so a resumed run needs nothing but the step number to continue the same stream.
"""

from __future__ import annotations

import torch

from myopia.errors import MyopiaError


class WindowBatches:
    def __init__(self, windows: torch.Tensor, batch_size: int, seed: int):
        if len(windows) < batch_size:
            raise MyopiaError(
                f"the training text has {len(windows)} windows, fewer than one batch of "
                f"{batch_size}: give more text or lower --batch-size / --seq-len"
            )
        self.windows, self.batch_size, self.seed = windows, batch_size, seed
        self.per_epoch = len(windows) // batch_size
        self._epoch, self._order = -1, None

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        epoch, index = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = torch.randperm(len(self.windows), generator=generator)
            self._epoch = epoch
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        return {"input_ids": self.windows[rows]}  # (B, T)
