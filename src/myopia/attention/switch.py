"""Switch a loaded Hugging Face model into and out of a myopic attention mode.

The myopic functions are registered by name in transformers' ``AttentionInterface`` (and
their masks in ``AttentionMaskInterface``, without which the mask would arrive as None),
so switching is transformers' own ``set_attn_implementation``. Names:

====================  =====================================
``myopic_kv``         fast path (fused attention kernel)
``myopic_kv_eager``   eager path (materialises and returns the attention matrix)
``myopic_residual``   and ``myopic_residual_eager``: need ``set_myopic`` for their hooks
``myopic_bigram``     and ``myopic_bigram_eager``
====================  =====================================

>>> import myopia
>>> model, tok = myopia.load_model("fresh-llama")
>>> with myopia.myopic(model, "kv"):
...     loss = myopia.mean_token_loss(model, tok("some text", return_tensors="pt"))
...     loss.backward()          # the exact myopic gradient, in one pass
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from myopia.attention import functions, residual_channels
from myopia.errors import MyopiaError

BACKENDS = ("fast", "eager")

_FUNCTIONS = {
    ("kv", "fast"): functools.partial(functions.myopic_sdpa, mode="kv"),
    ("kv", "eager"): functools.partial(functions.myopic_eager, mode="kv"),
    ("residual", "fast"): functools.partial(functions.myopic_sdpa, mode="residual"),
    ("residual", "eager"): functools.partial(functions.myopic_eager, mode="residual"),
    ("bigram", "fast"): functions.bigram_fast,
    ("bigram", "eager"): functions.bigram_eager,
}


def implementation_name(mode: str, backend: str = "fast") -> str:
    """The registered attention-implementation name for a mode and backend."""
    _check(mode, backend)
    return f"myopic_{mode}" if backend == "fast" else f"myopic_{mode}_eager"


def _check(mode: str, backend: str) -> None:
    if mode not in functions.MODES:
        raise MyopiaError(
            f"unknown myopic mode {mode!r}: choose one of {', '.join(functions.MODES)}"
        )
    if backend not in BACKENDS:
        raise MyopiaError(
            f"unknown attention backend {backend!r}: choose one of {', '.join(BACKENDS)}"
        )


def register() -> None:
    """Register every myopic attention function (idempotent; done on import of myopia)."""
    for (mode, backend), function in _FUNCTIONS.items():
        name = implementation_name(mode, backend)
        AttentionInterface.register(name, function)
        # Boolean masks (or None for plain causal), as sdpa uses; our functions accept both.
        AttentionMaskInterface.register(name, sdpa_mask)


# Per model: the implementation to restore and the hooks of the residual channel.
_ORIGINAL_IMPLEMENTATION: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_HOOKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def current_mode(model: nn.Module) -> str | None:
    """The model's myopic mode, or None when its attention is ordinary."""
    name = model.config._attn_implementation or ""
    if not name.startswith("myopic_"):
        return None
    return name.removeprefix("myopic_").removesuffix("_eager")


def set_myopic(model: nn.Module, mode: str | None, backend: str = "fast") -> None:
    """Put ``model`` in myopic ``mode`` (``kv``, ``residual``, ``bigram``), or back with None.

    ``backend`` picks the fast path (``fast``) or the eager reference (``eager``).
    """
    if model in _HOOKS:
        residual_channels.remove(model, _HOOKS.pop(model))
    if mode is None:
        if model in _ORIGINAL_IMPLEMENTATION:
            model.set_attn_implementation(_ORIGINAL_IMPLEMENTATION.pop(model))
        return
    _check(mode, backend)
    # Hooks first: a model residual mode refuses is left as it was.
    hooks = residual_channels.install(model) if mode == "residual" else None
    if model not in _ORIGINAL_IMPLEMENTATION:
        _ORIGINAL_IMPLEMENTATION[model] = model.config._attn_implementation
    if hooks is not None:
        _HOOKS[model] = hooks
    model.set_attn_implementation(implementation_name(mode, backend))
    if model.config._attn_implementation != implementation_name(mode, backend):
        set_myopic(model, None)
        raise MyopiaError(
            f"{type(model).__name__} does not take attention functions from transformers' "
            "AttentionInterface, so it has no myopic mode"
        )


@contextmanager
def myopic(model: nn.Module, mode: str = "kv", backend: str = "fast") -> Iterator[nn.Module]:
    """Context manager: the model is in myopic ``mode`` inside, as it was outside."""
    previous_mode = current_mode(model)
    previous_backend = (
        "eager" if (model.config._attn_implementation or "").endswith("_eager") else "fast"
    )
    set_myopic(model, mode, backend)
    try:
        yield model
    finally:
        set_myopic(model, previous_mode, previous_backend)
