"""Generating text from a loaded model or from an OpenAI-compatible server.

- ``settings``: ``SamplingSettings``, what every backend takes;
- ``batched``: ``generate``, many prompts through transformers' ``generate()`` (experiments);
- ``engine``: ``LocalEngine``, n continuations of one prefix with a shared KV cache,
  per-token log-probabilities and alternatives (the loom);
- ``openai_backend``: ``OpenAIBackend``, the same for an OpenAI-compatible server;
- ``types``: what a backend returns, and the ``Backend`` protocol.

Names are imported on first use, so that importing the settings does not import torch.
"""

import importlib

_PUBLIC = {
    "SamplingSettings": "myopia.generation.settings",
    "Generation": "myopia.generation.batched",
    "generate": "myopia.generation.batched",
    "LocalEngine": "myopia.generation.engine",
    "OpenAIBackend": "myopia.generation.openai_backend",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'myopia.generation' has no attribute {name!r}")
