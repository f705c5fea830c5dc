"""The ``myopia attribute`` command as a function: load a model and text, attribute, plot.

>>> data = attribute_text("fresh-llama", text="notes.txt", seq_len=32, n_sequences=2,
...                       out=Path("attr"))                                  # doctest: +SKIP
>>> data["files"]["heatmap"]                                                 # doctest: +SKIP
PosixPath('attr/future_share_heatmap.png')
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from myopia.attribution import METHODS, attribute
from myopia.attribution.plots import plot_effect_by_position, plot_share_heatmap
from myopia.errors import MyopiaError
from myopia.io import atomic_write_json

__all__ = ["attribute_text"]


def attribute_text(
    model: str = "smollm2",
    text: str | Path | None = None,
    seq_len: int = 128,
    n_sequences: int = 4,
    method: str = "first_order",
    ablation: str = "mean",
    out: Path = Path("myopia-attribution"),
    seed: int = 0,
    components: Sequence[str] | None = None,
    positions: Sequence[int] | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Attribute every head and MLP (or ``components``) at every position (or
    ``positions``) of ``n_sequences`` windows of ``seq_len`` tokens from ``text`` (default:
    the Shakespeare corpus, eval split). Writes into ``out``: ``future_share_heatmap.png``
    (layer × head, MLP column), ``effect_by_position.png``, each with its JSON, and
    ``attribution.json`` (everything, per-position effects included). ``method``:
    ``first_order`` (or ``first-order``) or ``ablation`` (sample with ``components`` and
    ``positions``: the full sweep is one forward pass per pair). Returns
    ``{"attribution": Attribution, "data": summary dict, "files": {name: path}}``."""
    from myopia.data.text import load_corpus, token_chunks
    from myopia.models.loading import load_model

    method = method.replace("-", "_")  # the CLI spells it first-order
    if method not in METHODS:
        raise MyopiaError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    if seq_len < 2:
        raise MyopiaError(f"--seq-len must be at least 2, not {seq_len}")
    torch.manual_seed(seed)
    loaded, tokenizer = load_model(model)
    sequences = token_chunks(
        load_corpus(text), tokenizer, seq_len, n_sequences, seed=seed, split="eval"
    )
    start = time.perf_counter()
    result = attribute(
        loaded,
        sequences,
        method=method,
        ablation=ablation,
        components=components,
        positions=positions,
        show_progress=show_progress,
    )
    duration = time.perf_counter() - start
    out = Path(out)
    label = f"{model}: {method.replace('_', '-')}, {ablation} ablation, {n_sequences} × {seq_len}"
    files = {
        "heatmap": plot_share_heatmap(
            result, out / "future_share_heatmap.png", f"{label}\nfuture share per component"
        ),
        "by_position": plot_effect_by_position(
            result, out / "effect_by_position.png", f"{label}\ncurrent and future effect"
        ),
    }
    data = {"model": model, "seed": seed, "duration_s": round(duration, 3)}
    files["json"] = atomic_write_json(out / "attribution.json", {**data, **result.to_dict()})
    data.update(result.to_dict(per_position=False))
    return {"attribution": result, "data": data, "files": files}
