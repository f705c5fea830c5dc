"""Generating text from a loaded model or from an OpenAI-compatible server.

- ``settings``: ``SamplingSettings``, what every backend takes;
- ``decode``: ``generate``, the one generation path: n continuations of many prompts with
  a shared KV cache, one rule each for sampling, seeding, stop strings and end of text;
  ``DecodeOptions`` names where callers differ;
- ``engine``: ``LocalEngine``, the loom's backend over that path;
- ``openai_backend``: ``OpenAIBackend``, the same for an OpenAI-compatible server;
- ``types``: what a backend returns, and the ``Backend`` protocol.

Names are imported on first use, so that importing the settings does not import torch.
"""

import importlib

_PUBLIC = {
    "SamplingSettings": "myopia.generation.settings",
    "Continuation": "myopia.generation.types",
    "DecodeOptions": "myopia.generation.decode",
    "generate": "myopia.generation.decode",
    "LocalEngine": "myopia.generation.engine",
    "OpenAIBackend": "myopia.generation.openai_backend",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'myopia.generation' has no attribute {name!r}")
