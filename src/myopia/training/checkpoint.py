"""Checkpoints: everything a run needs to continue exactly, written atomically.

Saved as plain tensors, numbers and lists, so that loading uses torch's safe
``weights_only`` unpickler.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import torch

from myopia.errors import CorruptFileError
from myopia.io import atomic_write_bytes


def rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "python": [version, list(internal), gauss],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, weights_only=True)
    except Exception as error:
        raise CorruptFileError(
            f"checkpoint {path} is unreadable ({type(error).__name__}): delete it and "
            "train again without --resume"
        ) from None
