"""myopia: measure what autoregressive transformers compute for the future.

>>> import myopia
>>> model, tokenizer = myopia.load_model("smollm2")            # doctest: +SKIP
>>> with myopia.myopic(model, "kv"):                           # doctest: +SKIP
...     myopia.mean_token_loss(model, batch).backward()        # the exact myopic gradient
>>> split = myopia.split_gradient(model, batch)                # doctest: +SKIP
"""

import importlib

__version__ = "0.1.0"

# Public names and the modules that define them. They are imported on first use, so that
# `myopia --help` and `import myopia.errors` do not pay for importing torch/transformers.
_PUBLIC = {
    "MODES": "myopia.attention",
    "current_mode": "myopia.attention",
    "myopic": "myopia.attention",
    "set_myopic": "myopia.attention",
    "MyopiaError": "myopia.errors",
    "mean_token_loss": "myopia.gradients.loss",
    "GradientSplit": "myopia.gradients.split",
    "split_gradient": "myopia.gradients.split",
    "describe_model": "myopia.models.loading",
    "load_model": "myopia.models.loading",
    "attribute": "myopia.attribution",
    "detect_heads": "myopia.heads",
    "induction_stripe_scores": "myopia.heads",
    "TrainConfig": "myopia.training",
    "train": "myopia.training",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'myopia' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_PUBLIC])
